//! Sans-IO decision logic for jobs: the per-job state machine, replication
//! policy, per-task quorum verification, worker reputation and placement.
//!
//! Nothing here sends a message or reads a clock. The node's coordinator and
//! the job simulator drive the same [`JobMachine`] (see its module docs for
//! the calling order); the machine drives one [`TaskVerifier`] per open task:
//!
//! 1. ask [`TaskVerifier::wanted_replicas`] how many new workers the task
//!    needs, pick each with a [`Placement`] policy (excluding
//!    [`TaskVerifier::excluded`]) and report it with [`TaskVerifier::assign`];
//! 2. feed what comes back: [`TaskVerifier::handle_result`] for an outcome
//!    digest (a vote), [`TaskVerifier::handle_no_verdict`] for a machine
//!    dependent outcome (wall-clock timeout, host error),
//!    [`TaskVerifier::handle_lost`] for a disconnect, and
//!    [`TaskVerifier::handle_busy`] for a worker that refused; call
//!    [`TaskVerifier::handle_timeout`] when [`TaskVerifier::poll_timeout`] says
//!    so;
//! 3. once [`TaskVerifier::verdict`] is `Some`, apply it to the
//!    [`Reputation`] table with [`Reputation::apply`] and stop the task.
//!
//! The outcome digest is whatever the caller hashes: the SHA-256 of the
//! serialized reproducible outcome (output bytes, exit code, or a named trap or
//! limit error). A trap that a quorum agrees on is therefore an accepted task
//! error, not a node fault.
//!
//! # Layout
//!
//! - [`machine`]: [`JobMachine`], one job's events in, actions out.
//! - [`policy`]: [`Policy`] (replicas, quorum, max replicas) and its checks.
//! - [`verifier`]: [`TaskVerifier`], quorum verification of one task.
//! - [`reputation`]: [`Reputation`], per-worker scores.
//! - [`fair`]: [`FairQueue`] and [`Admission`], a worker's fair shares of
//!   its slots and its queue among submitters and coordinators.
//! - [`placement`]: the [`Placement`] seam and its policies ([`TwoChoices`],
//!   [`Uniform`]); a new policy is one file there.

use std::fmt::Debug;
use std::hash::Hash;

pub mod fair;
pub mod machine;
pub mod placement;
pub mod policy;
pub mod reputation;
pub mod trust;
pub mod verifier;

pub use fair::{Admission, AdmitError, FairQueue};
pub use machine::{
    Action, Answer, BatchId, Decision, JobMachine, MachineConfig, ReplicaEnd, Restored,
};
pub use placement::{
    Candidate, Placement, PlacementPolicy, TwoChoices, Uniform, choose_worker, choose_workers,
};
pub use policy::{DEFAULT_MAX_ERROR, MAX_REPLICAS, Policy, PolicyError, Verify};
pub use reputation::{Record, Reputation, ReputationConfig, ReputationEntry};
pub use trust::Trust;
pub use verifier::{
    AssignError, FailReason, Replica, ReplicaState, ResultOutcome, TaskConfig, TaskVerifier,
    Verdict,
};

/// An outcome digest (SHA-256 of the reproducible outcome of one replica).
pub type Digest = [u8; 32];

/// Trait alias for worker identities: the node uses its peer ids, tests and
/// the simulator small integers.
pub trait WorkerId: Clone + Eq + Hash + Ord + Debug {}
impl<T: Clone + Eq + Hash + Ord + Debug> WorkerId for T {}

#[cfg(test)]
mod tests;
