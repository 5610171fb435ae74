//! Job-store records as a node reads them back on start and on every
//! update (`jobs/store.rs` through `chorus_sdk::stored`): a kind byte picks
//! the record (0 spec, 1 flags, 2 decided task with a 4-byte key, 3 the
//! trust records), the rest is the stored value. A record that decodes is
//! then used as the node uses it: a spec is verified, flags are updated,
//! a decided task is checked, trust records take votes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chorus_fuzz::targets::store(data));
