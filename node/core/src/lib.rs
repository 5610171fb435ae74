//! The sans-IO heart of Chorus.
//!
//! Nothing here does I/O or reads a clock: time and randomness are inputs, so the
//! same state machines run inside a `chorus node` (driven by tokio and quinn) and
//! inside the many-node simulator.
//!
//! # Layout
//!
//! - [`id`]: ring positions and interval arithmetic on the 64-bit circle.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![warn(missing_docs)]

pub mod id;

pub use id::RingPos;
