//! The ring messages inside `Request::Ring` and `Response::Ring`
//! (`chorus_core::ring::{Request, Response}`) fed to the ring state machine
//! as the node's ring actor feeds it (`ring_actor.rs`:
//! `handle_request_from`, `handle_response`, `handle_failure`,
//! `handle_timeout`): the input is a script of steps, each a decoded ring
//! message or a tick. Whatever peers say, the node must not panic and its
//! successor list must stay within its configured length.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chorus_fuzz::targets::ring(data));
