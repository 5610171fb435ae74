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
        for px in (0..tile.width).step_by(LANES) {
            // LANES neighbouring pixels at once (the last group may run past the
            // row's end: those lanes are computed and dropped).
            let cr: [f64; LANES] =
                std::array::from_fn(|l| tile.x0 + f64::from(px + l as u32) * tile.step);
            let n = escape_times(cr, ci, tile.max_iter);
            let used = LANES.min((tile.width - px) as usize);
            for &n in &n[..used] {
                out.extend_from_slice(&color(n, tile.max_iter));
            }
        }
    }
    Ok(out)
}

/// Pixels iterated together: independent dependency chains that a CPU runs
/// in parallel. Each float operation sits on a chain of dependent ones; under
/// NaN canonicalization each also gets a compare and a select on that chain,
/// so interleaving chains hides much of that latency.
pub const LANES: usize = 8;

/// For each lane: iterations of z <- z^2 + c from 0 while |z| <= 2, at most
/// `max_iter` (the escape time).
///
/// All lanes iterate until every lane has escaped. A lane that has escaped
/// never counts again: |z| only grows once past 2, up to infinity and then NaN,
/// and every comparison with NaN is false. So each lane's count is exactly the
/// one-pixel-at-a-time escape time.
#[inline]
pub fn escape_times(cr: [f64; LANES], ci: f64, max_iter: u32) -> [u32; LANES] {
    let mut x = [0.0f64; LANES];
    let mut y = [0.0f64; LANES];
    let mut x2 = [0.0f64; LANES];
    let mut y2 = [0.0f64; LANES];
    let mut n = [0u32; LANES];
    for _ in 0..max_iter {
        let mut any = false;
        for l in 0..LANES {
            let inside = x2[l] + y2[l] <= 4.0;
            any |= inside;
            n[l] += u32::from(inside);
            y[l] = (x[l] + x[l]) * y[l] + ci;
            x[l] = x2[l] - y2[l] + cr[l];
            x2[l] = x[l] * x[l];
            y2[l] = y[l] * y[l];
        }
        if !any {
            break;
        }
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
