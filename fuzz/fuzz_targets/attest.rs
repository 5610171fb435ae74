//! Attestations as a client checks a result (`client/verify.rs`:
//! `ProvedResult::check`: outcome digest, claim from the header, then
//! `attest::check_proof`: rule, signatures, distinct signers, quorum), and
//! each attestation alone as a coordinator checks a worker's vote
//! (`coordinator.rs`: `Claim::verify`). Round trip: decode, encode, decode.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chorus_fuzz::targets::attest(data));
