//! A request body as a node reads it from a stream (`rpc/server.rs`:
//! `frame::decode::<Request>` after the length prefix), then what the node
//! checks before it acts on it (`chorus_fuzz::check_request`: capacity
//! records, the ring state machine, signed specs, cancels, batches, job
//! copies with their attestations). Round trip: decode, encode, decode.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chorus_fuzz::targets::request(data));
