//! Capacity records as the gossip takes them (`capacity.rs` in the node:
//! decode, then `SignedCapacity::verify`: signature, age, future skew).
//! Round trip: decode, encode, decode.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chorus_fuzz::targets::capacity(data));
