//! The Chorus peer: a QUIC endpoint that drives the Chord ring of `chorus-core`,
//! the WebAssembly sandbox, and the `chorus` command line.
//!
//! # Layout
//!
//! Modules in dependency order: each imports only modules above it (a module
//! without a list imports none of this crate).
//!
//! - [`capacity`]: what this node donates and what it knows of others.
//! - [`metrics`]: every Prometheus metric, `/metrics` and `/sd`.
//! - [`sandbox`]: the wasmtime engine, limits and compiled-module cache.
//!   - `sandbox::config`: the engine config, limit constants and the
//!     deterministic wasmtime configuration.
//!   - `sandbox::cache`: compiled modules in memory and in a bounded on-disk cache.
//!   - `sandbox::exec`: running one task (store, limiter, fuel, epoch deadline, WASI).
//! - [`blobs`]: content-addressed blobs in chunks: the bounded on-disk
//!   store, the chunked fetcher, serving and uploads (metrics).
//! - [`ring_actor`]: the one owner of the ring state machine, behind a bounded
//!   inbox and a cheap [`RingHandle`](ring_actor::RingHandle) (capacity, metrics).
//! - [`jobs`]: coordinator, worker and store of jobs (capacity, metrics,
//!   sandbox, ring_actor, blobs):
//!   - `jobs::routing`: owner lookup and forwarding, written once; submit,
//!     status, watch, results, cancel.
//!   - `jobs::coordinator`: the driver of one job's `chorus_core::jobs::JobMachine`:
//!     performs its actions (batches, decisions, checkpoints) and records
//!     metrics from them.
//!   - `jobs::replication`: copies of other coordinators' jobs, takeover,
//!     expiry of copies.
//!   - `jobs::worker`: running a batch in the sandbox, serving bundles.
//!   - `jobs::store`: the redb job store (`DATA_DIR/jobs.redb`).
//! - `rpc::server`: the QUIC accept and serve loops within the
//!   [`ServeLimits`](rpc::ServeLimits), answering through a handler trait.
//! - `rpc::dispatch`: the one dispatch table from a request to the service
//!   that answers it (rpc::server, capacity, ring_actor, jobs).
//! - [`rpc`]: those two, and the one-shot client [`call_node`](rpc::call_node).
//! - [`node`]: a node's config, start-up that wires the services together,
//!   the metrics it scrapes, and leave (capacity, metrics, sandbox,
//!   ring_actor, jobs, rpc).
//! - [`net`]: the old paths of node, ring_actor and rpc items, re-exported.
//! - [`author`]: a task author's project: templates, the reproducible wasm
//!   build and the toolchain it needs, a task's output shown as JSON.
//! - [`cli`]: the `chorus` command line, one file per subcommand (capacity,
//!   sandbox, jobs, rpc, node, author).
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![warn(missing_docs)]

pub mod author;
pub mod blobs;
pub mod capacity;
pub mod cli;
pub mod jobs;
pub mod metrics;
pub mod net;
pub mod node;
pub mod ring_actor;
pub mod rpc;
pub mod sandbox;
