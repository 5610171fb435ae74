//! Job specs as a coordinator takes a submission (`routing.rs`:
//! `JobSpec::verify`: bundle, policy, task count, input and module caps,
//! the submitter's signature), then its id and header (`JobSpec::header`,
//! `JobHeader::matches`, `verify_signed`: what clients and workers check).
//! Round trip: decode, encode, decode.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chorus_fuzz::targets::job_spec(data));
