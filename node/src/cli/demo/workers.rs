//! The verification picture of `chorus demo` (`<stem>-workers.png`): the
//! Mandelbrot picture with every band (one task) painted by what quorum
//! verification did to it. Pure: bands in, RGB out; the demo encodes it.
//!
//! - A band is cut into vertical stripes, one per node whose result was
//!   accepted for it (the signers of its attestations), each stripe the
//!   picture tinted in that node's [`node_colour`].
//! - A band where some result was rejected has a [`REJECTED`] outline, and
//!   its right end ([`mark_width`] columns) is a red-hatched stripe in the
//!   colour of each node whose result was rejected.
//! - A band without an accepted output is [`NO_RESULT`] grey.
//! - A legend (a swatch and a label per node, hex digits only) sits in the
//!   top-left corner when it fits in the left half of the picture.

/// The colour of rejection marks: a band's outline and hatch. No node has it.
pub const REJECTED: [u8; 3] = [255, 0, 0];

/// The colour of a band without an accepted output.
pub const NO_RESULT: [u8; 3] = [64, 64, 64];

/// What verification did to one band of the picture (one task).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Band<'a> {
    /// Rows in the band.
    pub rows: u32,
    /// The band's accepted RGB output (`width * rows * 3` bytes); anything
    /// else is drawn as [`NO_RESULT`].
    pub pixels: Option<&'a [u8]>,
    /// Nodes (indices into [`node_colour`]) whose results were accepted.
    pub accepted: Vec<usize>,
    /// Nodes whose results were rejected.
    pub rejected: Vec<usize>,
}

/// Node `index`'s colour: a fixed table of ten, then hues spread by the
/// golden ratio over all but the reds, in two saturations. Never
/// [`REJECTED`] nor [`NO_RESULT`]; the first 64 are distinct.
pub fn node_colour(index: usize) -> [u8; 3] {
    const TABLE: [[u8; 3]; 10] = [
        [31, 119, 180],  // blue
        [255, 127, 14],  // orange
        [44, 160, 44],   // green
        [148, 103, 189], // purple
        [227, 119, 194], // pink
        [23, 190, 207],  // cyan
        [188, 189, 34],  // olive
        [140, 86, 75],   // brown
        [255, 221, 0],   // yellow
        [0, 90, 60],     // dark green
    ];
    if let Some(c) = TABLE.get(index) {
        return *c;
    }
    // Hue in degrees, kept off red (below 30 and above 330).
    let hue = 30.0 + ((index as f64) * 0.618_033_988_75).fract() * 300.0;
    let saturation = if index.is_multiple_of(2) { 0.8 } else { 0.5 };
    hsv(hue, saturation, 0.9)
}

/// Columns of the rejection stripe at the right end of a band `width` wide.
pub fn mark_width(width: u32) -> u32 {
    (width / 6).max(3).min(width)
}

/// The verification picture: `width` × (sum of the bands' rows) RGB bytes,
/// row by row. `legend` names the nodes: `(index, label)`, labels in hex
/// digits, spaces and dots (other characters are drawn blank).
pub fn draw(width: u32, bands: &[Band<'_>], legend: &[(usize, String)]) -> Vec<u8> {
    let w = width as usize;
    let height: usize = bands.iter().map(|b| b.rows as usize).sum();
    let mut rgb = vec![0u8; w * height * 3];
    let mut y0 = 0usize;
    for band in bands {
        let rows = band.rows as usize;
        let region = &mut rgb[y0 * w * 3..(y0 + rows) * w * 3];
        draw_band(width, band, region);
        y0 += rows;
    }
    draw_legend(&mut rgb, w, height, legend);
    rgb
}

/// `#rrggbb`.
pub fn hex(c: [u8; 3]) -> String {
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

fn draw_band(width: u32, band: &Band<'_>, region: &mut [u8]) {
    let w = width as usize;
    let rows = band.rows as usize;
    let pixels = band.pixels.filter(|p| p.len() == region.len());
    let mark = if band.rejected.is_empty() {
        0
    } else {
        mark_width(width) as usize
    };
    let stripes = w - mark;
    for y in 0..rows {
        for x in 0..w {
            let at = (y * w + x) * 3;
            let colour = if x >= stripes {
                // The rejection stripe: one sub-stripe per rejected node,
                // hatched in red every sixth diagonal.
                let i = (x - stripes) * band.rejected.len() / mark.max(1);
                let liar = band.rejected.get(i).copied().unwrap_or(0);
                if (x + y) % 6 == 0 {
                    REJECTED
                } else {
                    node_colour(liar)
                }
            } else {
                match pixels {
                    Some(p) if !band.accepted.is_empty() => {
                        let i = x * band.accepted.len() / stripes.max(1);
                        let node = band.accepted.get(i).copied().unwrap_or(0);
                        tint(node_colour(node), [p[at], p[at + 1], p[at + 2]])
                    }
                    _ => NO_RESULT,
                }
            };
            region[at..at + 3].copy_from_slice(&colour);
        }
    }
    if mark > 0 && w > 0 && rows > 0 {
        for x in 0..w {
            put(region, w, x, 0, REJECTED);
            put(region, w, x, rows - 1, REJECTED);
        }
        for y in 0..rows {
            put(region, w, 0, y, REJECTED);
            put(region, w, w - 1, y, REJECTED);
        }
    }
}

/// `colour` scaled by the brightness of the picture's pixel `p`: the set
/// (black) dark, its outside brighter, so the shape shows through.
fn tint(colour: [u8; 3], p: [u8; 3]) -> [u8; 3] {
    let bright = f32::from(p[0].max(p[1]).max(p[2])) / 255.0;
    let f = 0.35 + 0.65 * bright.sqrt();
    colour.map(|c| (f32::from(c) * f).round().clamp(0.0, 255.0) as u8)
}

fn put(rgb: &mut [u8], w: usize, x: usize, y: usize, c: [u8; 3]) {
    let at = (y * w + x) * 3;
    if let Some(px) = rgb.get_mut(at..at + 3) {
        px.copy_from_slice(&c);
    }
}

/// 3×5 glyphs of `0-9a-f` and `.`, a row per byte, the low three bits
/// (left pixel highest).
fn glyph(c: char) -> [u8; 5] {
    match c.to_ascii_lowercase() {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 1, 1],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        'a' => [2, 5, 7, 5, 5],
        'b' => [6, 5, 6, 5, 6],
        'c' => [3, 4, 4, 4, 3],
        'd' => [6, 5, 5, 5, 6],
        'e' => [7, 4, 6, 4, 7],
        'f' => [7, 4, 6, 4, 4],
        '.' => [0, 0, 0, 0, 2],
        _ => [0; 5],
    }
}

/// The legend in the top-left corner on a black box: per node a swatch and
/// its label. Skipped when it would not fit in the left half.
fn draw_legend(rgb: &mut [u8], w: usize, h: usize, legend: &[(usize, String)]) {
    if legend.is_empty() {
        return;
    }
    let s = if w >= 480 { 2 } else { 1 };
    let pad = 2 * s;
    let line = 7 * s;
    let chars = legend
        .iter()
        .map(|(_, l)| l.chars().count())
        .max()
        .unwrap_or(0);
    let box_w = pad + 5 * s + 2 * s + chars * 4 * s + pad;
    let box_h = pad + legend.len() * line - 2 * s + pad;
    if box_w > w / 2 || box_h > h {
        return;
    }
    for y in 0..box_h {
        for x in 0..box_w {
            put(rgb, w, x, y, [0, 0, 0]);
        }
    }
    for (row, (node, label)) in legend.iter().enumerate() {
        let top = pad + row * line;
        for y in 0..5 * s {
            for x in 0..5 * s {
                put(rgb, w, pad + x, top + y, node_colour(*node));
            }
        }
        let left = pad + 7 * s;
        for (i, c) in label.chars().enumerate() {
            let g = glyph(c);
            for (gy, bits) in g.iter().enumerate() {
                for gx in 0..3 {
                    if bits & (4 >> gx) == 0 {
                        continue;
                    }
                    for dy in 0..s {
                        for dx in 0..s {
                            let x = left + i * 4 * s + gx * s + dx;
                            put(rgb, w, x, top + gy * s + dy, [255, 255, 255]);
                        }
                    }
                }
            }
        }
    }
}

/// An RGB colour from hue (degrees), saturation and value in 0..=1.
fn hsv(h: f64, s: f64, v: f64) -> [u8; 3] {
    let c = v * s;
    let hp = (h / 60.0).rem_euclid(6.0);
    let x = c * (1.0 - (hp % 2.0 - 1.0).abs());
    let (r, g, b) = match hp as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    [r, g, b].map(|k| ((k + m) * 255.0).round().clamp(0.0, 255.0) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn px(rgb: &[u8], w: usize, x: usize, y: usize) -> [u8; 3] {
        let at = (y * w + x) * 3;
        [rgb[at], rgb[at + 1], rgb[at + 2]]
    }

    #[test]
    fn colours_are_distinct_and_never_the_marks() {
        let colours: Vec<[u8; 3]> = (0..64).map(node_colour).collect();
        for (i, c) in colours.iter().enumerate() {
            assert_ne!(*c, REJECTED, "node {i}");
            assert_ne!(*c, NO_RESULT, "node {i}");
            assert!(!colours[..i].contains(c), "node {i} repeats {c:?}");
        }
        assert_eq!(hex([255, 0, 16]), "#ff0010");
    }

    #[test]
    fn bands_are_striped_by_signers_and_a_rejection_is_outlined_in_red_with_the_liars_colour() {
        let w = 60usize;
        let white = vec![255u8; w * 4 * 3];
        let bands = [
            Band {
                rows: 4,
                pixels: Some(&white),
                accepted: vec![0, 1],
                rejected: vec![],
            },
            Band {
                rows: 4,
                pixels: Some(&white),
                accepted: vec![2, 3],
                rejected: vec![7],
            },
            Band {
                rows: 3,
                pixels: None,
                accepted: vec![],
                rejected: vec![],
            },
        ];
        let rgb = draw(w as u32, &bands, &[]);
        assert_eq!(rgb.len(), w * 11 * 3);
        // Band 0: the left half is node 0's colour, the right half node 1's
        // (on white, the tint is the colour itself).
        assert_eq!(px(&rgb, w, 0, 0), node_colour(0));
        assert_eq!(px(&rgb, w, w - 1, 3), node_colour(1));
        // Band 1: a red outline, node 7's stripe at the right end.
        assert_eq!(px(&rgb, w, 0, 4), REJECTED);
        assert_eq!(px(&rgb, w, w - 1, 6), REJECTED);
        let mark = mark_width(w as u32) as usize;
        assert_eq!(px(&rgb, w, w - mark + 1, 6), node_colour(7));
        assert_eq!(px(&rgb, w, 1, 5), node_colour(2));
        // Band 2: no result.
        assert_eq!(px(&rgb, w, 5, 9), NO_RESULT);
        // A band whose pixels have the wrong size is drawn as no result.
        let short = [Band {
            rows: 1,
            pixels: Some(&white[..3]),
            accepted: vec![0],
            rejected: vec![],
        }];
        assert_eq!(px(&draw(w as u32, &short, &[]), w, 0, 0), NO_RESULT);
    }

    #[test]
    fn the_legend_shows_a_swatch_per_node_when_it_fits_and_is_skipped_when_not() {
        let w = 200usize;
        let white = vec![255u8; w * 40 * 3];
        let bands = [Band {
            rows: 40,
            pixels: Some(&white),
            accepted: vec![0],
            rejected: vec![],
        }];
        let legend = vec![(0, "0 8fb7".to_string()), (4, "4 7c78".to_string())];
        let rgb = draw(w as u32, &bands, &legend);
        // Scale 1: padding 2, a 5-pixel swatch per 7-pixel line.
        assert_eq!(px(&rgb, w, 2, 2), node_colour(0));
        assert_eq!(px(&rgb, w, 2, 9), node_colour(4));
        assert_eq!(px(&rgb, w, 0, 0), [0, 0, 0]);
        // Too narrow: no legend, and no panic.
        let narrow = vec![255u8; 8 * 40 * 3];
        let bands = [Band {
            pixels: Some(&narrow),
            ..bands[0].clone()
        }];
        assert_eq!(px(&draw(8, &bands, &legend), 8, 2, 2), node_colour(0));
        // Degenerate sizes do not panic.
        assert!(draw(0, &bands, &legend).is_empty());
        let one = [Band {
            rows: 1,
            pixels: None,
            accepted: vec![],
            rejected: vec![1, 2],
        }];
        assert_eq!(draw(1, &one, &legend).len(), 3);
    }
}
