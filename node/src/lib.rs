//! The Chorus peer: a QUIC endpoint that drives the Chord ring of `chorus-core`,
//! the WebAssembly sandbox, and the `chorus` command line.
//!
//! # Layout
//!
//! - [`capacity`]: what this node donates and what it knows of others.
//! - [`cli`]: the `chorus` command line (one file per subcommand).
//! - [`jobs`]: coordinator, worker and store of jobs.
//! - [`metrics`]: every Prometheus metric, `/metrics` and `/sd`.
//! - [`net`]: the QUIC endpoint, RPC server and the actor driving the ring.
//! - [`sandbox`]: the wasmtime engine, limits and compiled-module cache.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![warn(missing_docs)]

pub mod capacity;
pub mod cli;
pub mod jobs;
pub mod metrics;
pub mod net;
pub mod sandbox;
// Temporary: built here until `jobs/mod.rs` declares it.
#[path = "jobs/store_redb.rs"]
pub mod store_redb;
