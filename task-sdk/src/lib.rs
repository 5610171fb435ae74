//! The Chorus SDK: what a program needs to talk to the grid or to run inside it.
//!
//! # Layout
//!
//! In dependency order: each module uses only modules above it. The one edge
//! that points down is [`job`]'s `pub use` of the job messages that live in
//! [`wire`], which keeps their old paths (`chorus_sdk::job::JobRequest`, ...);
//! `job` itself uses none of them. Sub-modules are private; their items are
//! re-exported by their parent.
//!
//! - [`identity`] (feature `net`): Ed25519 keys, peer ids, ring positions.
//! - [`frame`] (feature `net`): the length-prefixed MessagePack codec with size caps.
//! - [`tls`] (feature `net`): mutual TLS 1.3 with self-signed Ed25519 certificates.
//! - [`transport`] (feature `net`): the QUIC endpoint, connection cache and RPC calls.
//! - [`capacity`] (feature `net`): signed, expiring capacity records nodes announce.
//! - [`files`] (feature `net`): the directory trees and environment a job ships with its tasks.
//! - [`bundle`] (feature `net`, uses `files`): signed task bundles, shared by client and node.
//! - [`runtime`] (feature `net`, uses `bundle`, `files`): signed runtime bundles (an interpreter and its files) that a bundle names by id.
//! - [`outcome`] (feature `net`): how a task ended and the digest replicas vote with.
//! - [`blob`] (feature `net`): content-addressed blobs in 1 MiB chunks: `BlobId`, `BlobIndex` and its canonical codec, the chunk check (sans-IO).
//! - [`job`] (feature `net`): what a job is: its spec, id and header, why one is refused, the submitter's signatures (of the spec, of a cancel).
//! - [`attest`] (feature `net`, uses `job`; `job` names its `Claim` for a header): what a worker signs for each task, and the pure check of a quorum of attestations.
//! - [`wire`] (feature `net`): the messages nodes and clients exchange, one file per concern:
//!   - `wire::error`: `WireError` and its `ErrorKind`s with their stable names.
//!   - `wire::ring`: `Peer`, `RingView`, `LookupAnswer`, `PeerList`, `MAX_GOSSIP`.
//!   - `wire::jobs` (uses `wire::ring`): what a client sees of a job: `JobStatus`, `ResultsPage`, `ProvedResult`, `TaskResult`, `TaskState`, `Rejection`, `WorkerReputation`, `MAX_WATCH_MS`.
//!   - `wire::work`: coordinator and worker: `RunTasks`, `Assignment`, `WorkerResult`, `SignedResults` and its signature.
//!   - `wire::replica` (uses `wire::jobs`): coordinator and backups: `DecidedTask`, `JobSnapshot`, `JobUpdate`, `JobCopy`.
//!   - `wire` itself (uses all of the above): the dispatch enums `Request`/`Response` and the job sub-protocol `JobRequest`/`JobResponse`.
//! - [`members`] (feature `net`, uses `attest`, `transport`, `wire`): whether an attestation's signer is a member of the ring (a lookup and a signed challenge), cached.
//! - [`proof`] (feature `client`, uses `attest` and `job`): the proof files written beside outputs, their documented JSON format, and their offline check.
//! - [`stored`] (feature `net`, uses `job` and `wire`): the records a node keeps in its job store (spec, flags, decided tasks, trust records) and their codec.
//! - [`client`] (feature `client`): connect through any node, submit jobs, watch them, fetch outputs:
//!   - `client::error`: `ClientError`.
//!   - `client::builder`: `JobBuilder` and `sign_module`.
//!   - `client::results`: `JobResults`.
//!   - `client` itself (uses all of the above): `Client`, `ClientConfig`, the call, retry and failover logic.
//! - `mandelbrot` (feature `mandelbrot`): the Mandelbrot example's tiles and PNG, for the demo and the example submitter.
//! - `guest` (feature `guest`): helpers for task authors, built for `wasm32-wasip1`.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![warn(missing_docs)]

#[cfg(feature = "net")]
pub mod attest;
#[cfg(feature = "net")]
pub mod blob;
#[cfg(feature = "net")]
pub mod bundle;
#[cfg(feature = "net")]
pub mod capacity;
#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "net")]
pub mod files;
#[cfg(feature = "net")]
pub mod frame;
#[cfg(feature = "guest")]
pub mod guest;
#[cfg(feature = "net")]
pub mod identity;
#[cfg(feature = "net")]
pub mod job;
#[cfg(feature = "net")]
pub mod link;
#[cfg(feature = "mandelbrot")]
pub mod mandelbrot;
#[cfg(feature = "net")]
pub mod members;
#[cfg(feature = "net")]
pub mod outcome;
#[cfg(feature = "client")]
pub mod proof;
#[cfg(feature = "net")]
pub mod runtime;
#[cfg(feature = "net")]
pub mod stored;
#[cfg(feature = "net")]
pub mod tls;
#[cfg(feature = "net")]
pub mod transport;
#[cfg(feature = "net")]
pub mod wire;

#[cfg(feature = "net")]
pub use chorus_core::RingPos;
