//! The Chorus SDK: what a program needs to talk to the grid or to run inside it.
//!
//! # Layout
//!
//! - [`identity`] (feature `net`): Ed25519 keys, peer ids, ring positions.
//! - [`frame`] (feature `net`): the length-prefixed MessagePack codec with size caps.
//! - [`tls`] (feature `net`): mutual TLS 1.3 with self-signed Ed25519 certificates.
//! - [`transport`] (feature `net`): the QUIC endpoint, connection cache and RPC calls.
//! - [`wire`] (feature `net`): the messages nodes and clients exchange.
//! - [`capacity`] (feature `net`): signed, expiring capacity records nodes announce.
//! - [`bundle`] (feature `net`): signed task bundles, shared by client and node.
//! - [`outcome`] (feature `net`): how a task ended and the digest replicas vote with.
//! - [`job`] (feature `net`): jobs, their ids, and the job messages of the wire.
//! - [`client`] (feature `client`): connect through any node, submit jobs, watch them, fetch outputs.
//! - `mandelbrot` (feature `mandelbrot`): the Mandelbrot example's tiles and PNG, for the demo and the example submitter.
//! - `guest` (feature `guest`): helpers for task authors, built for `wasm32-wasip1`.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![warn(missing_docs)]

#[cfg(feature = "net")]
pub mod bundle;
#[cfg(feature = "net")]
pub mod capacity;
#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "net")]
pub mod frame;
#[cfg(feature = "guest")]
pub mod guest;
#[cfg(feature = "net")]
pub mod identity;
#[cfg(feature = "net")]
pub mod job;
#[cfg(feature = "mandelbrot")]
pub mod mandelbrot;
#[cfg(feature = "net")]
pub mod outcome;
#[cfg(feature = "net")]
pub mod tls;
#[cfg(feature = "net")]
pub mod transport;
#[cfg(feature = "net")]
pub mod wire;

#[cfg(feature = "net")]
pub use chorus_core::RingPos;
