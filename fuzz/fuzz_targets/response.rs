//! A response body as a client or a node reads it (`transport.rs`'s call:
//! `frame::decode::<Response>`), then what the reader checks
//! (`chorus_fuzz::check_response`: capacity records, each result's proof
//! against the job header, a worker's signed results, a fetched bundle
//! against its id, a job's signed terms, membership proofs). Round trip:
//! decode, encode, decode.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chorus_fuzz::targets::response(data));
