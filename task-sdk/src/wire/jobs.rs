//! What a client sees of a job: its progress, its results, and the standing
//! of the workers that ran it.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::ring::Peer;
use crate::attest::{Attestation, ProofError, check_proof};
use crate::identity::PeerId;
use crate::job::{JobHeader, JobId};
use crate::outcome::Outcome;

/// Longest a [`JobRequest::Watch`](super::JobRequest::Watch) is held open, in ms.
pub const MAX_WATCH_MS: u64 = 10_000;

/// Where one task stands, as clients see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskState {
    /// Waiting for workers.
    Pending,
    /// Replicas are running.
    Running,
    /// A quorum agreed on the result (an output or an agreed task error).
    Verified,
    /// No result could be accepted (no quorum, no workers, cancelled).
    Failed,
}

/// A task's final result, as the client receives it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskResult {
    /// A quorum agreed the task succeeded with this output.
    Output(ByteBuf),
    /// A quorum agreed the task failed this way (a trap, a limit, a non-zero
    /// exit): an accepted task error, not a node fault.
    Error {
        /// The agreed outcome.
        outcome: Outcome,
        /// What the task printed before it failed (for `Exit`; empty otherwise).
        output: ByteBuf,
        /// The start of what one agreeing worker's run wrote to stderr
        /// (diagnostics: not compared, not covered by the attestations).
        #[serde(default)]
        stderr: ByteBuf,
    },
    /// No result could be accepted.
    Failed {
        /// Why, for people.
        reason: String,
    },
}

impl TaskResult {
    /// Whether a quorum verified this result (an output or an agreed error).
    pub fn is_verified(&self) -> bool {
        !matches!(self, TaskResult::Failed { .. })
    }

    /// The outcome digest its attestations sign ([`crate::outcome::digest`]);
    /// `None` for a failed task, or an outcome that is no verdict.
    pub fn outcome_digest(&self) -> Option<[u8; 32]> {
        match self {
            TaskResult::Output(b) => crate::outcome::digest(&Outcome::Ok, b),
            TaskResult::Error {
                outcome, output, ..
            } => crate::outcome::digest(outcome, output),
            TaskResult::Failed { .. } => None,
        }
    }
}

/// A result some worker returned that the quorum rejected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// The task.
    pub task: u32,
    /// The worker whose result disagreed with the accepted one.
    pub worker: PeerId,
}

/// A worker's standing with a coordinator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerReputation {
    /// The worker.
    pub worker: PeerId,
    /// Its score: +1 per agreement, −10 per disagreement.
    pub score: i32,
    /// Accepted results it agreed with.
    pub agreed: u64,
    /// Accepted results it disagreed with.
    pub disagreed: u64,
    /// Spot checks it passed.
    #[serde(default)]
    pub spot_passed: u64,
    /// Spot checks it failed.
    #[serde(default)]
    pub spot_failed: u64,
    /// Checks passed since its last proven lie (what its credibility rests
    /// on).
    #[serde(default)]
    pub streak: u64,
    /// Proven a liar within the distrust period.
    #[serde(default)]
    pub distrusted: bool,
}

/// A job's progress.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    /// The job.
    pub job: JobId,
    /// The node coordinating it.
    pub coordinator: Peer,
    /// Tasks in the job.
    pub tasks: u32,
    /// Tasks waiting for workers.
    pub pending: u32,
    /// Tasks with replicas running.
    pub running: u32,
    /// Tasks with an accepted result.
    pub verified: u32,
    /// Tasks that failed.
    pub failed: u32,
    /// Replicas that returned a vote, over all tasks.
    pub replicas_run: u64,
    /// Results that disagreed with the accepted one.
    pub disagreements: u64,
    /// Which results were rejected, and whose (at most the first 1000).
    pub rejected: Vec<Rejection>,
    /// Whether every task has a final result.
    pub done: bool,
    /// Whether the submitter cancelled the job.
    pub cancelled: bool,
    /// Times the job moved to a new coordinator because the previous one died.
    pub failovers: u32,
    /// Undecided tasks waiting for a worker in a network they do not use
    /// yet (replica diversity: at most one replica of a task per network).
    /// Non-zero means the grid has too few networks for the job's policy.
    #[serde(default)]
    pub waiting_for_networks: u32,
    /// Executions per task so far: every vote, spot checks and re-runs
    /// included, over the job's tasks.
    #[serde(default)]
    pub replicas_per_task: f64,
    /// Spot checks answered (tasks already accepted, run again by a worker
    /// not yet trusted; included in `replicas_run`).
    #[serde(default)]
    pub spot_checks: u64,
    /// Decided tasks opened again because a worker that helped accept them
    /// was proven a liar, or a spot check disputed them.
    #[serde(default)]
    pub reopened: u64,
    /// The coordinator's reputation table, best first.
    pub reputation: Vec<WorkerReputation>,
    /// Grows with every change of the job at its coordinator (a task
    /// decided, a cancel); [`JobRequest::Watch`](super::JobRequest::Watch)
    /// waits for it to differ from the client's. Versions are per
    /// coordinator: a job taken over starts again from 1.
    pub version: u64,
}

// `replicas_per_task` is a finite ratio; equality of statuses is equality
// of their fields.
impl Eq for JobStatus {}

/// A task's final result with the workers' attestations that prove it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvedResult {
    /// The task.
    pub task: u32,
    /// Its final result.
    pub result: TaskResult,
    /// At least `quorum` signatures of distinct workers over the accepted
    /// result ([`crate::attest`]); empty for a failed task.
    pub attestations: Vec<Attestation>,
    /// The rule that accepted it: a quorum of signers, or (adaptive
    /// verification) the coordinator's credibility bound with fewer.
    #[serde(default)]
    pub rule: crate::attest::AcceptRule,
}

/// Why a [`ProvedResult`] does not hold against its job's header.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ResultProofError {
    /// The result claims to be verified but its outcome is no verdict
    /// (nothing a worker could have attested).
    #[error("the result is not a verdict")]
    NotAVerdict,
    /// The task index is past the job's last task.
    #[error("task {0} is not in the job")]
    NoSuchTask(u32),
    /// The attestations do not prove the claim.
    #[error(transparent)]
    Proof(#[from] ProofError),
}

impl ProvedResult {
    /// Checks this result against the job's header, without the network
    /// (what a client does with every result it receives): the outcome
    /// digest, the input hash, the bundle and the terms make the claim,
    /// which the attestations must prove under the result's rule. Returns
    /// the signers' keys (none for a failed task, which carries no proof),
    /// for the membership check only the network can answer.
    pub fn check(&self, job: JobId, header: &JobHeader) -> Result<Vec<[u8; 32]>, ResultProofError> {
        if !self.result.is_verified() {
            return Ok(Vec::new());
        }
        let digest = self
            .result
            .outcome_digest()
            .ok_or(ResultProofError::NotAVerdict)?;
        let claim = header
            .claim(job, self.task, digest)
            .ok_or(ResultProofError::NoSuchTask(self.task))?;
        Ok(check_proof(
            &claim,
            &self.attestations,
            &header.policy,
            &self.rule,
        )?)
    }
}

/// A page of final results.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultsPage {
    /// The job's status when the page was cut.
    pub status: JobStatus,
    /// The job's header (input hashes, bundle, terms), on the page that
    /// starts at task 0: what a client checks attestations against.
    pub header: Option<Box<JobHeader>>,
    /// Final results of tasks in the requested range, by task index.
    pub results: Vec<ProvedResult>,
    /// The first task index after this page (the next `from`), or `None` when
    /// the requested range is exhausted.
    pub next: Option<u32>,
}
