//! Bundles as a worker receives them (`worker.rs`, `routing.rs`):
//! `Bundle::decode` (canonical form only), then `verify` (manifest ranges,
//! hash, submitter's signature) and `verify_as` an id. A bundle that decodes
//! is canonical: its encoding is the input, byte for byte.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chorus_fuzz::targets::bundle(data));
