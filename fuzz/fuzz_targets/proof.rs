//! Proof files as `chorus verify` reads them (`cli/verify.rs`:
//! `Proof::from_json`, then `Proof::check` of the output against it). The
//! input is a 2-byte big-endian output length, the output, then the JSON.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chorus_fuzz::targets::proof(data));
