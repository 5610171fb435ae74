//! Deterministic simulators that run the real state machines in one process.
//!
//! - [`ring`]: up to 10^6 Chord [`crate::RingNode`]s with latency, failures,
//!   churn and invariant checks against an oracle (`chorus sim`). Its types
//!   are re-exported here.
//! - [`churn`]: lookups while nodes join and crash, the Chord paper's
//!   Table III (`chorus sim lookups-under-churn`).
//! - [`jobs`]: one [`crate::jobs::JobMachine`] against up to 10^5 modelled
//!   workers, honest or lying, in virtual time (`chorus sim jobs`).

pub mod churn;
pub mod jobs;
pub mod ring;

pub use ring::*;
