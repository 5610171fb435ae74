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
//!   fingers, check predecessor, iterative lookups, graceful leave.
//! - [`sim`]: deterministic simulators: up to 10^6 [`RingNode`]s in one
//!   process, with latency, failures, churn and invariant checks against an
//!   oracle ([`sim::ring`]); and one job's state machine against 10^5
//!   modelled workers, honest, lying or colluding ([`sim::jobs`]).
//! - [`rng`]: a tiny seeded PRNG so that a seed replays the same run forever.
//! - [`jobs`]: the per-job state machine ([`jobs::JobMachine`]: events in,
//!   actions out), replication [`jobs::Policy`], per-task quorum verification
//!   ([`jobs::TaskVerifier`]), worker [`jobs::Reputation`] and placement
//!   policies behind one seam ([`jobs::Placement`]).
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![warn(missing_docs)]

pub mod id;
pub mod jobs;
pub mod ring;
pub mod rng;
pub mod sim;

pub use id::RingPos;
pub use ring::{
    Address, Config, Event, LookupDone, LookupError, LookupId, Peer, Request, RequestId, Response,
    RingNode, Step, Time, Transmit,
};
