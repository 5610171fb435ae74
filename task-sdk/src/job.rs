//! Jobs: a signed bundle plus task inputs and a replication policy, and the
//! messages that submit, watch, run, verify and replicate them.
//!
//! A job's id is a ring position ([`JobId`]): the first 8 bytes of a SHA-256
//! over the bundle id, the policy, the limits, a nonce and the hash of every
//! input. The node that owns that position on the ring coordinates the job;
//! any node accepts a client's request and forwards it there.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use chorus_core::RingPos;
use chorus_core::jobs::Policy;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::bundle::{Bundle, BundleError, BundleId, Limits, VerifiedBundle};
use crate::capacity::SignedCapacity;
use crate::identity::{self, Identity, PeerId};
use crate::outcome::Outcome;
use crate::wire::Peer;

/// Cap on one frame of job traffic (a submission with its bundle and inputs,
/// a page of results, a batch of tasks): 64 MiB.
pub const JOB_FRAME_CAP: usize = 64 << 20;
/// Longest a [`JobRequest::Watch`] is held open, in ms.
pub const MAX_WATCH_MS: u64 = 10_000;
/// Most tasks in one job.
pub const MAX_TASKS: usize = 100_000;
/// Domain separation of job ids.
const ID_CONTEXT: &[u8] = b"chorus job v1\0";
/// Domain separation of cancel requests.
const CANCEL_CONTEXT: &[u8] = b"chorus cancel v1\0";
/// Domain separation of a worker's signature over its results.
const RESULTS_CONTEXT: &[u8] = b"chorus results v1\0";

/// A job's id: a ring position, so `chorus lookup` finds its coordinator.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct JobId(pub RingPos);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobId({})", self.0)
    }
}

impl FromStr for JobId {
    type Err = <RingPos as FromStr>::Err;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(JobId)
    }
}

/// Why a job was refused or could not be built. Nothing is stored when one is.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The bundle is malformed, tampered or unsigned.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// The policy cannot be met on its own terms.
    #[error("policy: {0}")]
    Policy(#[from] chorus_core::jobs::PolicyError),
    /// A job needs at least one task.
    #[error("a job needs at least one task input")]
    NoTasks,
    /// Too many tasks.
    #[error("{0} tasks is over the cap of {MAX_TASKS}")]
    TooManyTasks(usize),
    /// One input is over the input cap of the job's limits.
    #[error("input of task {task} is {bytes} bytes, over the cap of {cap} bytes")]
    InputTooLarge {
        /// The task.
        task: u32,
        /// Its size.
        bytes: u64,
        /// The cap (`limits.input_bytes`).
        cap: u64,
    },
    /// The module is over the module cap of the job's limits.
    #[error("module is {bytes} bytes, over the cap of {cap} bytes")]
    ModuleTooLarge {
        /// Its size.
        bytes: u64,
        /// The cap (`limits.module_bytes`).
        cap: u64,
    },
}

/// What a client submits: a signed bundle, one input per task, a policy and
/// the limits every replica runs under.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    /// The bundle in its canonical, signed encoding ([`Bundle::decode`]).
    pub bundle: ByteBuf,
    /// One stdin per task, in task order.
    pub inputs: Vec<ByteBuf>,
    /// Replicas, quorum and maximum replicas per task.
    pub policy: Policy,
    /// Limits of every task (the manifest's unless the submitter overrode them).
    pub limits: Limits,
    /// Makes two submissions of the same work two jobs; resubmitting the same
    /// spec (a retry) names the same job.
    pub nonce: u64,
}

impl JobSpec {
    /// A job of `bundle` over `inputs`: the policy from the manifest's
    /// replicas and quorum unless given, limits from the manifest unless given.
    pub fn new(
        bundle: &VerifiedBundle,
        inputs: Vec<Vec<u8>>,
        policy: Option<Policy>,
        limits: Option<Limits>,
        nonce: u64,
    ) -> Result<JobSpec, JobError> {
        let m = bundle.manifest();
        let policy = match policy {
            Some(p) => p,
            None => Policy::new(m.replicas, Some(m.quorum), None)?,
        };
        let spec = JobSpec {
            bundle: ByteBuf::from(bundle.encode()?),
            inputs: inputs.into_iter().map(ByteBuf::from).collect(),
            policy,
            limits: limits.unwrap_or(m.limits),
            nonce,
        };
        spec.check_shape()?;
        Ok(spec)
    }

    /// The job's id (see the [module docs](self)).
    pub fn id(&self) -> JobId {
        let bundle_id = Bundle::decode(&self.bundle)
            .and_then(|b| b.id())
            .map(|id| id.0)
            .unwrap_or_else(|_| sha256(&self.bundle));
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(ID_CONTEXT);
        ctx.update(&bundle_id);
        ctx.update(&rmp_serde::to_vec(&(self.policy, self.limits, self.nonce)).unwrap_or_default());
        ctx.update(&(self.inputs.len() as u64).to_le_bytes());
        for input in &self.inputs {
            ctx.update(&sha256(input));
        }
        let d = ctx.finish();
        let mut pos = [0u8; 8];
        pos.copy_from_slice(&d.as_ref()[..8]);
        JobId(RingPos(u64::from_be_bytes(pos)))
    }

    /// Checks everything a node checks before it acknowledges the job, except
    /// the number of live workers: bundle hash and signature, policy, task
    /// count, input and module caps. Returns the verified bundle.
    pub fn verify(&self) -> Result<VerifiedBundle, JobError> {
        let bundle = Bundle::decode(&self.bundle)?.verify()?;
        self.check_shape()?;
        let bytes = bundle.module().len() as u64;
        if bytes > self.limits.module_bytes {
            return Err(JobError::ModuleTooLarge {
                bytes,
                cap: self.limits.module_bytes,
            });
        }
        Ok(bundle)
    }

    fn check_shape(&self) -> Result<(), JobError> {
        self.policy.validate()?;
        if self.inputs.is_empty() {
            return Err(JobError::NoTasks);
        }
        if self.inputs.len() > MAX_TASKS {
            return Err(JobError::TooManyTasks(self.inputs.len()));
        }
        let cap = self.limits.input_bytes;
        for (i, input) in self.inputs.iter().enumerate() {
            let bytes = input.len() as u64;
            if bytes > cap {
                return Err(JobError::InputTooLarge {
                    task: u32::try_from(i).unwrap_or(u32::MAX),
                    bytes,
                    cap,
                });
            }
        }
        Ok(())
    }

    /// The submitter's public key, from the bundle's manifest (unverified).
    pub fn submitter(&self) -> Option<[u8; 32]> {
        Bundle::decode(&self.bundle)
            .ok()
            .map(|b| b.manifest().submitter)
    }
}

pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref());
    out
}

/// The signature that lets a submitter cancel its job.
pub fn sign_cancel(job: JobId, submitter: &Identity) -> Vec<u8> {
    submitter.sign(&cancel_message(job)).to_vec()
}

/// Whether `signature` cancels `job` for the submitter `key`.
pub fn verify_cancel(job: JobId, key: &[u8; 32], signature: &[u8]) -> bool {
    identity::verify(key, &cancel_message(job), signature)
}

fn cancel_message(job: JobId) -> Vec<u8> {
    let mut m = CANCEL_CONTEXT.to_vec();
    m.extend_from_slice(&job.0.0.to_be_bytes());
    m
}

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
}

/// A job's progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
    /// The coordinator's reputation table, best first.
    pub reputation: Vec<WorkerReputation>,
    /// Grows with every change of the job at its coordinator (a task
    /// decided, a cancel); [`JobRequest::Watch`] waits for it to pass a value.
    pub version: u64,
}

/// A page of final results.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultsPage {
    /// The job's status when the page was cut.
    pub status: JobStatus,
    /// Final results of tasks in the requested range, by task index.
    pub results: Vec<(u32, TaskResult)>,
    /// The first task index after this page (the next `from`), or `None` when
    /// the requested range is exhausted.
    pub next: Option<u32>,
}

/// One task sent to a worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The task's index in its job.
    pub task: u32,
    /// The task's seed for `random_get` (the same on every replica).
    pub seed: u64,
    /// The task's stdin.
    pub input: ByteBuf,
}

/// A batch of tasks of one job for one worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunTasks {
    /// The job.
    pub job: JobId,
    /// The bundle to run; the worker fetches it from `coordinator` if it lacks it.
    pub bundle: BundleId,
    /// The coordinator's address (its identity is the caller's).
    pub coordinator: SocketAddr,
    /// Limits of every task.
    pub limits: Limits,
    /// The tasks.
    pub tasks: Vec<Assignment>,
}

/// What a worker returns for one task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerResult {
    /// The task.
    pub task: u32,
    /// How it ended.
    pub outcome: Outcome,
    /// Its stdout.
    pub output: ByteBuf,
    /// SHA-256 vote digest ([`crate::outcome::digest`]); `None` for no verdict.
    pub digest: Option<[u8; 32]>,
    /// Fuel it used.
    pub fuel_used: u64,
    /// Microseconds it ran on the worker.
    pub wall_us: u64,
}

/// A worker's signed answer to [`RunTasks`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedResults {
    /// The worker's public key (its peer id is the SHA-256 of it).
    pub worker: [u8; 32],
    /// The job.
    pub job: JobId,
    /// One result per task of the batch.
    pub results: Vec<WorkerResult>,
    /// Ed25519 signature by `worker` over the job id and the results.
    pub signature: ByteBuf,
}

impl SignedResults {
    /// Signs `results` for `job` with the worker's key.
    pub fn sign(job: JobId, results: Vec<WorkerResult>, worker: &Identity) -> SignedResults {
        let signature = worker.sign(&results_message(job, &results)).to_vec();
        SignedResults {
            worker: worker.public_key(),
            job,
            results,
            signature: ByteBuf::from(signature),
        }
    }

    /// Whether the signature holds and the key is `expected`'s.
    pub fn verify(&self, expected: &identity::PeerId) -> bool {
        identity::PeerId::from_public_key(&self.worker) == *expected
            && identity::verify(
                &self.worker,
                &results_message(self.job, &self.results),
                &self.signature,
            )
    }
}

fn results_message(job: JobId, results: &[WorkerResult]) -> Vec<u8> {
    let mut m = RESULTS_CONTEXT.to_vec();
    m.extend_from_slice(&job.0.0.to_be_bytes());
    m.extend_from_slice(&sha256(&rmp_serde::to_vec(results).unwrap_or_default()));
    m
}

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
}

/// Everything a job is at a coordinator, in one shape: what the store keeps,
/// what a successor's copy holds, and what a successor takes the job over from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSnapshot {
    /// The job as submitted.
    pub spec: JobSpec,
    /// Decided tasks by index.
    pub decided: BTreeMap<u32, DecidedTask>,
    /// Whether the submitter cancelled it.
    pub cancelled: bool,
    /// Times the job moved to a new coordinator because the previous one died.
    pub failovers: u32,
}

impl JobSnapshot {
    /// A job just submitted: nothing decided.
    pub fn new(spec: JobSpec) -> JobSnapshot {
        JobSnapshot {
            spec,
            decided: BTreeMap::new(),
            cancelled: false,
            failovers: 0,
        }
    }

    /// Whether every task is decided.
    pub fn is_done(&self) -> bool {
        self.cancelled || self.decided.len() >= self.spec.inputs.len()
    }

    /// Applies an update from the coordinator.
    pub fn apply(&mut self, update: JobUpdate) {
        for d in update.decided {
            if (d.task as usize) < self.spec.inputs.len() {
                self.decided.insert(d.task, d);
            }
        }
        self.cancelled |= update.cancelled;
        self.failovers = self.failovers.max(update.failovers);
    }
}

/// What changed in a job since a backup's last copy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobUpdate {
    /// Tasks decided since the last copy.
    pub decided: Vec<DecidedTask>,
    /// Whether the job was cancelled.
    pub cancelled: bool,
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

/// Job traffic: client requests (forwarded to the coordinator) and node-to-node work.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum JobRequest {
    /// Submit a job. Answered with [`JobResponse::Accepted`] once the
    /// coordinator stored it.
    Submit {
        /// The job.
        spec: Box<JobSpec>,
        /// Set by the node that forwards it to the coordinator, which then
        /// takes it without forwarding again.
        forwarded: bool,
    },
    /// A job's progress.
    Status {
        /// The job.
        job: JobId,
        /// As in `Submit`.
        forwarded: bool,
    },
    /// A job's progress once it has changed: answered with
    /// [`JobResponse::Status`] as soon as the job's `version` is above
    /// `after`, or after `wait_ms` (at most [`MAX_WATCH_MS`]) with the status
    /// as it is. Progress is pushed, not polled.
    Watch {
        /// The job.
        job: JobId,
        /// The last version the client saw.
        after: u64,
        /// How long to wait for a change, in ms.
        wait_ms: u64,
        /// As in `Submit`.
        forwarded: bool,
    },
    /// Final results of tasks `from..` (as many as fit in a page).
    Results {
        /// The job.
        job: JobId,
        /// First task index wanted.
        from: u32,
        /// As in `Submit`.
        forwarded: bool,
    },
    /// Cancel a job; signed by its submitter ([`sign_cancel`]).
    Cancel {
        /// The job.
        job: JobId,
        /// The submitter's signature.
        signature: ByteBuf,
        /// As in `Submit`.
        forwarded: bool,
    },
    /// Coordinator to worker: run these tasks.
    Run(Box<RunTasks>),
    /// Worker to coordinator: the bundle of a job it was given.
    FetchBundle {
        /// The bundle.
        bundle: BundleId,
    },
    /// Coordinator to its successors: keep a copy of this job.
    Replicate {
        /// The coordinator sending the copy (asked whether it is alive before
        /// a backup takes the job over).
        coordinator: Peer,
        /// The job.
        job: JobId,
        /// The whole job, or what changed.
        copy: JobCopy,
    },
}

/// Answers to [`JobRequest`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum JobResponse {
    /// The coordinator stored the job.
    Accepted {
        /// The job's id.
        job: JobId,
        /// The coordinator.
        coordinator: Peer,
    },
    /// A job's progress.
    Status(Box<JobStatus>),
    /// A page of results.
    Results(Box<ResultsPage>),
    /// The worker ran the batch. (A worker with no room answers
    /// [`crate::wire::ErrorKind::Busy`].)
    Ran(Box<SignedResults>),
    /// The bundle asked for, in its canonical encoding.
    Bundle(ByteBuf),
    /// The backup needs the full spec before it can take the update.
    NeedSpec,
    /// Done.
    Ok,
}

/// Capacity records a node knows, for `chorus peers`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerList {
    /// Verified, unexpired records, the node's own first.
    pub records: Vec<SignedCapacity>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::Manifest;

    fn bundle() -> (Identity, VerifiedBundle) {
        let id = Identity::generate().unwrap();
        let m = Manifest::new("t", "1", id.public_key());
        let b = Bundle::sign(m, b"\0asm\x01\0\0\0".to_vec(), &id).unwrap();
        (id, b)
    }

    #[test]
    fn ids_are_stable_and_cover_every_part() {
        let (_, b) = bundle();
        let a = JobSpec::new(&b, vec![b"1".to_vec(), b"2".to_vec()], None, None, 7).unwrap();
        assert_eq!(a.id(), a.clone().id());
        assert_eq!(a.policy, Policy::new(3, Some(2), None).unwrap());
        let mut other = a.clone();
        other.nonce = 8;
        assert_ne!(a.id(), other.id());
        let mut other = a.clone();
        other.inputs[1] = ByteBuf::from(b"3".to_vec());
        assert_ne!(a.id(), other.id());
        let mut other = a.clone();
        other.policy.quorum = 3;
        assert_ne!(a.id(), other.id());
        assert_eq!(a.id().to_string().parse::<JobId>().unwrap(), a.id());
        assert!(a.verify().is_ok());
    }

    #[test]
    fn bad_jobs_are_refused_with_their_reason() {
        let (_, b) = bundle();
        assert!(matches!(
            JobSpec::new(&b, vec![], None, None, 0),
            Err(JobError::NoTasks)
        ));
        let bad = Policy {
            replicas: 2,
            quorum: 3,
            max_replicas: 4,
        };
        assert!(matches!(
            JobSpec::new(&b, vec![vec![]], Some(bad), None, 0),
            Err(JobError::Policy(_))
        ));
        let limits = Limits {
            input_bytes: 4,
            ..Limits::default()
        };
        assert!(matches!(
            JobSpec::new(&b, vec![vec![0; 5]], None, Some(limits), 0),
            Err(JobError::InputTooLarge {
                task: 0,
                bytes: 5,
                cap: 4
            })
        ));
        let mut tampered = JobSpec::new(&b, vec![vec![]], None, None, 0).unwrap();
        let n = tampered.bundle.len();
        tampered.bundle[n - 70] ^= 1;
        assert!(matches!(tampered.verify(), Err(JobError::Bundle(_))));
    }

    #[test]
    fn results_and_cancels_are_signed() {
        let (submitter, b) = bundle();
        let spec = JobSpec::new(&b, vec![vec![]], None, None, 0).unwrap();
        let job = spec.id();
        let sig = sign_cancel(job, &submitter);
        assert!(verify_cancel(job, &spec.submitter().unwrap(), &sig));
        let stranger = Identity::generate().unwrap();
        assert!(!verify_cancel(
            job,
            &spec.submitter().unwrap(),
            &sign_cancel(job, &stranger)
        ));

        let worker = Identity::generate().unwrap();
        let r = WorkerResult {
            task: 0,
            outcome: Outcome::Ok,
            output: ByteBuf::from(b"42".to_vec()),
            digest: crate::outcome::digest(&Outcome::Ok, b"42"),
            fuel_used: 10,
            wall_us: 5,
        };
        let mut s = SignedResults::sign(job, vec![r], &worker);
        assert!(s.verify(&worker.peer_id()));
        assert!(!s.verify(&stranger.peer_id()));
        s.results[0].output[0] ^= 1;
        assert!(!s.verify(&worker.peer_id()));
    }

    #[test]
    fn the_signed_results_message_does_not_change() {
        // Recorded before the wire module was split in files: workers and
        // coordinators of either layout must sign and check the same bytes.
        let r = WorkerResult {
            task: 3,
            outcome: Outcome::Exit(2),
            output: ByteBuf::from(b"42".to_vec()),
            digest: Some([1; 32]),
            fuel_used: 10,
            wall_us: 5,
        };
        let m = results_message(JobId(RingPos(9)), &[r]);
        assert_eq!(
            hex::encode(sha256(&m)),
            "29a20125ea6006a2dd69655719067cadc73df80a2586be7ddc449b8d251b7e95"
        );
    }
}
