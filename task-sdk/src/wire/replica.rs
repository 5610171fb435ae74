//! Coordinator and backups: the job as the coordinator keeps it, and the
//! copies that let a successor take it over.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use serde_bytes::ByteBuf;

use super::jobs::TaskResult;
use crate::attest::Attestation;
use crate::identity::PeerId;
use crate::job::JobSpec;

/// A decided task as the coordinator stores and replicates it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecidedTask {
    /// The task.
    pub task: u32,
    /// The final result.
    pub result: TaskResult,
    /// Workers whose vote was accepted.
    pub agreeing: Vec<PeerId>,
    /// Workers whose vote disagreed.
    pub disagreeing: Vec<PeerId>,
    /// Replicas that voted.
    pub votes: u32,
    /// The agreeing workers' signatures over the accepted result (at least
    /// `quorum` for an accepted task; none for a failed one).
    pub attestations: Vec<Attestation>,
    /// The rule that accepted it (what its signers are checked against).
    #[serde(default)]
    pub rule: crate::attest::AcceptRule,
}

/// Everything a job is at a coordinator, in one shape: what the store keeps,
/// what a successor's copy holds, and what a successor takes the job over from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSnapshot {
    /// The job as submitted.
    pub spec: JobSpec,
    /// Decided tasks by index.
    pub decided: BTreeMap<u32, DecidedTask>,
    /// The submitter's cancel signature ([`crate::job::sign_cancel`]) when
    /// it cancelled the job.
    pub cancel: Option<ByteBuf>,
    /// Times the job moved to a new coordinator because the previous one died.
    pub failovers: u32,
}

impl JobSnapshot {
    /// A job just submitted: nothing decided.
    pub fn new(spec: JobSpec) -> JobSnapshot {
        JobSnapshot {
            spec,
            decided: BTreeMap::new(),
            cancel: None,
            failovers: 0,
        }
    }

    /// Whether every task is decided.
    pub fn is_done(&self) -> bool {
        self.cancel.is_some() || self.decided.len() >= self.spec.inputs.len()
    }

    /// Whether the submitter cancelled it.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_some()
    }

    /// Applies an update from the coordinator.
    pub fn apply(&mut self, update: JobUpdate) {
        for d in update.decided {
            if (d.task as usize) < self.spec.inputs.len() {
                self.decided.insert(d.task, d);
            }
        }
        if self.cancel.is_none() {
            self.cancel = update.cancel;
        }
        self.failovers = self.failovers.max(update.failovers);
    }
}

/// What changed in a job since a backup's last copy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobUpdate {
    /// Tasks decided since the last copy.
    pub decided: Vec<DecidedTask>,
    /// The submitter's cancel signature, when the job was cancelled.
    pub cancel: Option<ByteBuf>,
    /// Failovers so far.
    pub failovers: u32,
}

/// A copy sent to a backup: the whole job the first time, then updates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobCopy {
    /// The whole job (a backup that has not seen it).
    Full(Box<JobSnapshot>),
    /// What changed since the last copy the backup acknowledged.
    Update(JobUpdate),
}
