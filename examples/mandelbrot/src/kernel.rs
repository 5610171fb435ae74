//! Mandelbrot tile renderer: the pure computation, shared by the guest task and
//! by the native reference in the tests and benchmarks (same source, two targets).
//!
//! Only `+ - * /` and comparisons on `f64`: IEEE 754 makes them bit-exact on
//! every machine, so the wasm output equals the native output byte for byte.

use serde::{Deserialize, Serialize};

/// The largest tile, in pixels (16 Mi pixels, 48 MiB of RGB).
pub const MAX_PIXELS: u64 = 1 << 24;

/// One tile of the picture: `width` × `height` pixels starting at the complex
/// point (`x0`, `y0`) for the top-left pixel, `step` apart.
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

/// Renders `tile` as RGB bytes, row by row (`width * height * 3` bytes).
pub fn render(tile: &Tile) -> Result<Vec<u8>, String> {
    let pixels = u64::from(tile.width) * u64::from(tile.height);
    if pixels == 0 || pixels > MAX_PIXELS {
        return Err(format!("tile of {pixels} pixels: must be 1..={MAX_PIXELS}"));
    }
    if !(tile.x0.is_finite() && tile.y0.is_finite() && tile.step.is_finite() && tile.step > 0.0) {
        return Err("x0, y0 and step must be finite and step positive".into());
    }
    let mut out = Vec::with_capacity(pixels as usize * 3);
    for py in 0..tile.height {
        let ci = tile.y0 - f64::from(py) * tile.step;
        for px in 0..tile.width {
            let cr = tile.x0 + f64::from(px) * tile.step;
            out.extend_from_slice(&color(escape_time(cr, ci, tile.max_iter), tile.max_iter));
        }
    }
    Ok(out)
}

/// Iterations of z ← z² + c from 0 until |z| > 2, at most `max_iter`.
#[inline]
pub fn escape_time(cr: f64, ci: f64, max_iter: u32) -> u32 {
    let (mut x, mut y, mut x2, mut y2) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    let mut n = 0;
    while n < max_iter && x2 + y2 <= 4.0 {
        y = (x + x) * y + ci;
        x = x2 - y2 + cr;
        x2 = x * x;
        y2 = y * y;
        n += 1;
    }
    n
}

/// A 16-colour palette by escape time; points inside the set are black.
pub fn color(n: u32, max_iter: u32) -> [u8; 3] {
    const PALETTE: [[u8; 3]; 16] = [
        [66, 30, 15],
        [25, 7, 26],
        [9, 1, 47],
        [4, 4, 73],
        [0, 7, 100],
        [12, 44, 138],
        [24, 82, 177],
        [57, 125, 209],
        [134, 181, 229],
        [211, 236, 248],
        [241, 233, 191],
        [248, 201, 95],
        [255, 170, 0],
        [204, 128, 0],
        [153, 87, 0],
        [106, 52, 3],
    ];
    if n >= max_iter {
        [0, 0, 0]
    } else {
        PALETTE[(n % 16) as usize]
    }
}
