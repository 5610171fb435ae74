//! Peer certificates as the TLS verifier takes them in the handshake
//! (`tls.rs`: `PeerVerifier::verify_client_cert` and `verify_server_cert`,
//! which walk the DER to the Ed25519 key with `ed25519_key_of` and check the
//! proof of work and the pinned ring position).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chorus_fuzz::targets::tls_cert(data));
