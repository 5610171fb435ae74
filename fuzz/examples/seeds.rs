//! Writes the seed corpus: `cargo run --example seeds [DIR]` (default
//! `corpus/` beside this crate). Each file is named after the message it
//! holds; a file already there with other bytes is replaced (signatures are
//! deterministic, so a rerun changes nothing unless a format did).

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus"));
    let mut n = 0;
    for (target, name, bytes) in chorus_fuzz::seeds::all() {
        let d = dir.join(target);
        std::fs::create_dir_all(&d)?;
        std::fs::write(d.join(format!("seed_{name}")), bytes)?;
        n += 1;
    }
    println!("wrote {n} seeds under {}", dir.display());
    Ok(())
}
