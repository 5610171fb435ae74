//! Chorus task: renders one tile of the Mandelbrot set.
//!
//! Input (MessagePack): a [`kernel::Tile`]. Output: raw RGB bytes, row by row,
//! `width * height * 3` of them; the client stitches the tiles into a PNG.

mod kernel;

fn main() {
    chorus_sdk::guest::run_to_bytes(|tile: kernel::Tile| kernel::render(&tile))
}
