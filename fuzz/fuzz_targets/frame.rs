//! Whole frames (4-byte length prefix, MessagePack body) as the node's
//! stream reader and the client's reader take them: `frame::decode_frame`
//! under the job cap, as a `Request` (what a node reads) and as a
//! `Response` (what a client reads). A frame that decodes must encode back
//! to a frame that decodes to the same bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chorus_fuzz::targets::frame(data));
