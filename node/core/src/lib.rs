//! The sans-IO heart of Chorus.
//!
//! Nothing here does I/O or reads a clock: time and randomness are inputs, so the
//! same state machines run inside a `chorus node` (driven by tokio and quinn) and
//! inside the many-node simulator.
//!
//! # Layout
//!
//! - [`id`]: ring positions and interval arithmetic on the 64-bit circle.
//! - [`ring`]: the Chord state machine ([`RingNode`]) and its messages
//!   ([`Request`], [`Response`], [`Step`]): join, stabilize, rectify, fix
//!   fingers, check predecessor, iterative lookups, graceful leave; one file
//!   per concern, each adding an `impl RingNode` block:
//!   - `ring` (`mod.rs`): [`RingNode`], [`Config`], [`Time`] and the
//!     `handle_*` / `poll_*` entry points, the in-flight request table;
//!   - `ring::messages`: the wire types and outputs ([`Request`],
//!     [`Response`], [`Step`], [`Peer`], ids, [`Transmit`], [`Event`],
//!     [`LookupDone`], [`LookupError`]), re-exported as `ring::*`;
//!   - `ring::lookup`: iterative lookups with fallback and owner checks, and
//!     their state;
//!   - `ring::maintenance`: stabilize, notify, rectify, check predecessor,
//!     fix fingers;
//!   - `ring::membership`: join, rejoin, leave, a neighbour's leave, and the
//!     successor list and finger table bookkeeping;
//!   - `ring::tests`: unit tests of a few [`RingNode`]s driven in memory.
//! - [`sim`]: deterministic simulators:
//!   - [`sim::churn`]: lookups under churn, the Chord paper's Table III;
//!   - [`sim::ring`]: up to 10^6 [`RingNode`]s in one process, with latency,
//!     failures, churn and invariant checks against an oracle;
//!   - [`sim::jobs`]: one job's state machine against 10^5 modelled workers,
//!     honest, lying or colluding, in virtual time.
//! - [`rng`]: a tiny seeded PRNG so that a seed replays the same run forever.
//! - [`jobs`]: the job layer's decisions:
//!   - [`jobs::machine`]: [`jobs::JobMachine`], one job, events in, actions out;
//!   - [`jobs::policy`]: replicas, quorum, max replicas and their checks;
//!   - [`jobs::verifier`]: [`jobs::TaskVerifier`], the quorum of one task;
//!   - [`jobs::reputation`]: per-worker scores;
//!   - [`jobs::placement`]: the [`jobs::Placement`] seam and its policies,
//!     one file each (two choices, uniform).
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![warn(missing_docs)]

pub mod id;
pub mod jobs;
pub mod ring;
pub mod rng;
pub mod sim;

pub use id::RingPos;
pub use ring::{
    Address, Config, Event, Jitter, LookupDone, LookupError, LookupId, Peer, Request, RequestId,
    Response, RingNode, Step, Time, Transmit,
};
