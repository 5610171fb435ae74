//! Deterministic simulators that run the real state machines in one process.
//!
//! - [`ring`]: up to 10^6 Chord [`crate::RingNode`]s with latency, failures,
//!   churn and invariant checks against an oracle (`chorus sim`). Its types
//!   are re-exported here.
//! - [`jobs`]: one [`crate::jobs::JobMachine`] against up to 10^5 modelled
//!   workers, honest or lying, in virtual time (`chorus sim jobs`).

pub mod jobs;
pub mod ring;

pub use ring::*;
