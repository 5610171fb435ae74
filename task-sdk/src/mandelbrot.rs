//! The Mandelbrot example as a job: a picture cut into bands of rows, one
//! task per band (the input format of `examples/wasm/mandelbrot.wasm`), and
//! the bands' outputs stitched back into an RGB image and a PNG.
//!
//! Shared by `chorus demo` and the `mandelbrot-submit` example, so neither
//! carries its own copy of the tiling.

use serde::{Deserialize, Serialize};

/// One tile as the Mandelbrot task reads it from stdin (MessagePack; the same
/// fields in the same order as `examples/mandelbrot/src/kernel.rs`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tile {
    /// Pixels per row.
    pub width: u32,
    /// Rows.
    pub height: u32,
    /// Real part of the top-left pixel.
    pub x0: f64,
    /// Imaginary part of the top-left pixel (rows go down, towards smaller values).
    pub y0: f64,
    /// Distance between neighbouring pixels in the complex plane.
    pub step: f64,
    /// Iterations after which a point counts as inside the set.
    pub max_iter: u32,
}

/// Why a picture could not be cut or put together.
#[derive(Debug, thiserror::Error)]
pub enum MandelbrotError {
    /// The picture's size or band height is zero, or its view is not finite.
    #[error("bad picture: {0}")]
    BadPicture(String),
    /// The number of outputs is not the number of tiles.
    #[error("{got} tile outputs for a picture of {want} tiles")]
    TileCount {
        /// Outputs given.
        got: usize,
        /// Tiles in the picture.
        want: usize,
    },
    /// A tile's output is not `width * height * 3` bytes of RGB.
    #[error("tile {tile} output is {got} bytes, expected {want}")]
    TileSize {
        /// The tile.
        tile: usize,
        /// Its output's size.
        got: usize,
        /// The size of its RGB pixels.
        want: usize,
    },
    /// A tile could not be encoded, or the PNG could not be written.
    #[error("encoding: {0}")]
    Encode(String),
}

/// A view of the Mandelbrot set rendered as `width` × `height` pixels, cut
/// into bands of `rows_per_tile` full rows (the last may be shorter).
#[derive(Clone, Debug, PartialEq)]
pub struct Picture {
    /// Pixels per row.
    pub width: u32,
    /// Rows.
    pub height: u32,
    /// Real part of the picture's centre.
    pub center_re: f64,
    /// Imaginary part of the picture's centre.
    pub center_im: f64,
    /// Width of the view in the complex plane.
    pub span: f64,
    /// Iterations after which a point counts as inside the set.
    pub max_iter: u32,
    /// Rows per band, i.e. per task.
    pub rows_per_tile: u32,
}

impl Default for Picture {
    /// The whole set, 640 × 480, 1000 iterations, 30 bands of 16 rows.
    fn default() -> Self {
        Picture {
            width: 640,
            height: 480,
            center_re: -0.75,
            center_im: 0.0,
            span: 3.5,
            max_iter: 1000,
            rows_per_tile: 16,
        }
    }
}

impl Picture {
    /// The tiles, top band first.
    pub fn tiles(&self) -> Result<Vec<Tile>, MandelbrotError> {
        self.check()?;
        let step = self.span / f64::from(self.width);
        let left = self.center_re - step * f64::from(self.width - 1) / 2.0;
        let top = self.center_im + step * f64::from(self.height - 1) / 2.0;
        Ok((0..self.height)
            .step_by(self.rows_per_tile as usize)
            .map(|row| Tile {
                width: self.width,
                height: self.rows_per_tile.min(self.height - row),
                x0: left,
                y0: top - f64::from(row) * step,
                step,
                max_iter: self.max_iter,
            })
            .collect())
    }

    /// One task input per tile (MessagePack), in tile order.
    pub fn inputs(&self) -> Result<Vec<Vec<u8>>, MandelbrotError> {
        self.tiles()?
            .iter()
            .map(|t| rmp_serde::to_vec(t).map_err(|e| MandelbrotError::Encode(e.to_string())))
            .collect()
    }

    /// The picture's RGB bytes (row by row) from the tiles' outputs in tile order.
    pub fn assemble<'a>(
        &self,
        outputs: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Vec<u8>, MandelbrotError> {
        let tiles = self.tiles()?;
        let outputs: Vec<&[u8]> = outputs.into_iter().collect();
        if outputs.len() != tiles.len() {
            return Err(MandelbrotError::TileCount {
                got: outputs.len(),
                want: tiles.len(),
            });
        }
        let mut rgb = Vec::with_capacity(self.width as usize * self.height as usize * 3);
        for (i, (tile, out)) in tiles.iter().zip(outputs).enumerate() {
            let want = tile.width as usize * tile.height as usize * 3;
            if out.len() != want {
                return Err(MandelbrotError::TileSize {
                    tile: i,
                    got: out.len(),
                    want,
                });
            }
            rgb.extend_from_slice(out);
        }
        Ok(rgb)
    }

    /// The picture as a PNG, from its RGB bytes ([`Picture::assemble`]).
    pub fn png(&self, rgb: &[u8]) -> Result<Vec<u8>, MandelbrotError> {
        encode_png(self.width, self.height, rgb)
    }

    fn check(&self) -> Result<(), MandelbrotError> {
        if self.width == 0 || self.height == 0 || self.rows_per_tile == 0 {
            return Err(MandelbrotError::BadPicture(
                "width, height and rows per tile must be positive".into(),
            ));
        }
        if !(self.center_re.is_finite()
            && self.center_im.is_finite()
            && self.span.is_finite()
            && self.span > 0.0)
        {
            return Err(MandelbrotError::BadPicture(
                "the centre and span must be finite, the span positive".into(),
            ));
        }
        Ok(())
    }
}

/// An 8-bit RGB PNG of `width` × `height` pixels from `rgb` (row by row).
pub fn encode_png(width: u32, height: u32, rgb: &[u8]) -> Result<Vec<u8>, MandelbrotError> {
    let want = width as usize * height as usize * 3;
    if rgb.len() != want {
        return Err(MandelbrotError::Encode(format!(
            "{} bytes of RGB for {width}x{height} pixels ({want} expected)",
            rgb.len()
        )));
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder
        .write_header()
        .map_err(|e| MandelbrotError::Encode(e.to_string()))?;
    writer
        .write_image_data(rgb)
        .map_err(|e| MandelbrotError::Encode(e.to_string()))?;
    writer
        .finish()
        .map_err(|e| MandelbrotError::Encode(e.to_string()))?;
    Ok(out)
}

/// The task's own kernel, compiled natively to check the tiles against it.
#[cfg(test)]
#[allow(dead_code)]
#[path = "../../examples/mandelbrot/src/kernel.rs"]
mod kernel;

#[cfg(test)]
mod tests {
    use super::*;

    use super::kernel;

    fn small() -> Picture {
        Picture {
            width: 37,
            height: 23,
            rows_per_tile: 5,
            max_iter: 200,
            ..Picture::default()
        }
    }

    #[test]
    fn bands_cover_every_row_once_and_the_view_is_centred() {
        let p = small();
        let tiles = p.tiles().unwrap();
        assert_eq!(tiles.len(), 5);
        assert_eq!(tiles.iter().map(|t| t.height).sum::<u32>(), 23);
        assert_eq!(tiles[4].height, 3);
        let step = tiles[0].step;
        assert_eq!(step, 3.5 / 37.0);
        // Centre column and row sit on the centre of the view.
        assert!((tiles[0].x0 + 18.0 * step - p.center_re).abs() < 1e-12);
        assert!((tiles[0].y0 - 11.0 * step - p.center_im).abs() < 1e-12);
        for w in tiles.windows(2) {
            let rows = f64::from(w[0].height);
            assert!((w[0].y0 - rows * step - w[1].y0).abs() < 1e-12);
        }
        assert!(
            Picture {
                rows_per_tile: 0,
                ..small()
            }
            .tiles()
            .is_err()
        );
    }

    #[test]
    fn inputs_decode_as_the_task_reads_them() {
        let p = small();
        for (input, tile) in p.inputs().unwrap().iter().zip(p.tiles().unwrap()) {
            let k: kernel::Tile = rmp_serde::from_slice(input).unwrap();
            assert_eq!(
                (k.width, k.height, k.x0, k.y0, k.step, k.max_iter),
                (
                    tile.width,
                    tile.height,
                    tile.x0,
                    tile.y0,
                    tile.step,
                    tile.max_iter
                )
            );
        }
    }

    #[test]
    fn assembled_bands_equal_the_bands_rendered_natively_in_place() {
        let p = small();
        let outs: Vec<Vec<u8>> = p
            .inputs()
            .unwrap()
            .iter()
            .map(|i| kernel::render(&rmp_serde::from_slice(i).unwrap()).unwrap())
            .collect();
        let rgb = p.assemble(outs.iter().map(Vec::as_slice)).unwrap();
        assert_eq!(rgb.len(), 37 * 23 * 3);
        // Row 7 is row 2 of band 1.
        let row = 37 * 3;
        assert_eq!(&rgb[7 * row..8 * row], &outs[1][2 * row..3 * row]);
        // The picture is not blank: the set and its outside differ.
        assert!(rgb.iter().any(|&b| b != rgb[0]));

        let err = p.assemble(outs.iter().take(4).map(Vec::as_slice));
        assert!(matches!(
            err,
            Err(MandelbrotError::TileCount { got: 4, want: 5 })
        ));
        let mut bad = outs.clone();
        bad[2].pop();
        assert!(matches!(
            p.assemble(bad.iter().map(Vec::as_slice)),
            Err(MandelbrotError::TileSize { tile: 2, .. })
        ));
    }

    #[test]
    fn png_has_the_signature_and_the_size() {
        let rgb = vec![200u8; 4 * 3 * 3];
        let png = encode_png(4, 3, &rgb).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        // IHDR: width and height, big-endian, after the chunk length and type.
        assert_eq!(&png[16..24], &[0, 0, 0, 4, 0, 0, 0, 3]);
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(&buf[..info.buffer_size()], &rgb[..]);
        assert!(encode_png(4, 3, &rgb[1..]).is_err());
    }
}
