//! Jobs: a signed bundle plus task inputs and a replication policy.
//!
//! A job's id is a ring position ([`JobId`]): the first 8 bytes of a SHA-256
//! over the bundle id, the policy, the limits, a nonce and the hash of every
//! input. The node that owns that position on the ring coordinates the job;
//! any node accepts a client's request and forwards it there.
//!
//! The messages that submit, watch, run, verify and replicate jobs live in
//! [`crate::wire`]; they are re-exported here under the paths they always had
//! (`chorus_sdk::job::JobRequest`, ...). This module uses none of them itself:
//! the wire depends on the job, not the other way round.

use std::fmt;
use std::str::FromStr;

use chorus_core::RingPos;
use chorus_core::jobs::Policy;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::attest::{Claim, terms_digest};
use crate::bundle::{Bundle, BundleError, BundleId, Limits, VerifiedBundle};
use crate::identity::{self, Identity};

pub use crate::wire::{
    Assignment, DecidedTask, JobCopy, JobRequest, JobResponse, JobSnapshot, JobStatus, JobUpdate,
    MAX_BATCH_TASKS, MAX_WATCH_MS, PeerList, ProvedResult, Rejection, ResultsPage, RunTasks,
    SignedResults, TaskResult, TaskState, WorkerReputation, WorkerResult,
};

/// Cap on one frame of job traffic (a submission with its bundle and inputs,
/// a page of results, a batch of tasks): 64 MiB.
pub const JOB_FRAME_CAP: usize = 64 << 20;
/// Most tasks in one job.
pub const MAX_TASKS: usize = 100_000;
/// Domain separation of job ids.
const ID_CONTEXT: &[u8] = b"chorus job v1\0";
/// Domain separation of cancel requests.
const CANCEL_CONTEXT: &[u8] = b"chorus cancel v1\0";
/// Domain separation of the submitter's signature over a job.
const SPEC_CONTEXT: &[u8] = b"chorus job spec v1\0";

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
    /// The spec carries no valid signature by the bundle's submitter.
    #[error("the job is not signed by its bundle's submitter")]
    BadSignature,
    /// Only the key that signed the bundle may sign a job of it.
    #[error("only the bundle's submitter may sign a job of it")]
    NotSubmitter,
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
    /// The submitter's Ed25519 signature over the job id ([`JobSpec::sign`]),
    /// by the key named in the bundle's manifest. The id covers every other
    /// field, so the signature covers the whole spec. Empty until signed.
    pub signature: ByteBuf,
}

/// What a client needs to check a job's results without its inputs: the
/// hash of every input, the bundle id, the policy and limits, the nonce.
/// It authenticates itself: [`JobHeader::id`] must be the job's id, so it
/// may come from any node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobHeader {
    /// The bundle's id.
    pub bundle: BundleId,
    /// Replicas, quorum and maximum replicas per task.
    pub policy: Policy,
    /// Limits of every task.
    pub limits: Limits,
    /// The spec's nonce.
    pub nonce: u64,
    /// SHA-256 of each task's input, 32 bytes per task in task order.
    pub inputs: ByteBuf,
}

impl JobHeader {
    /// The id of the job this header describes (as [`JobSpec::id`]).
    pub fn id(&self) -> JobId {
        job_id(
            &self.bundle,
            &self.policy,
            &self.limits,
            self.nonce,
            self.inputs.chunks(32),
        )
    }

    /// Tasks in the job.
    pub fn tasks(&self) -> usize {
        self.inputs.len() / 32
    }

    /// SHA-256 of task `task`'s input.
    pub fn input(&self, task: u32) -> Option<[u8; 32]> {
        let at = usize::try_from(task).ok()?.checked_mul(32)?;
        let mut h = [0u8; 32];
        h.copy_from_slice(self.inputs.get(at..at + 32)?);
        Some(h)
    }

    /// Whether this is the header of `job`.
    pub fn matches(&self, job: JobId) -> bool {
        self.inputs.len().is_multiple_of(32) && self.id() == job
    }

    /// The claim a worker signs for task `task` of `job` ending with the
    /// outcome digest `outcome`; `None` when the task is out of range.
    pub fn claim(&self, job: JobId, task: u32, outcome: [u8; 32]) -> Option<Claim> {
        Some(Claim {
            job,
            task,
            input: self.input(task)?,
            bundle: self.bundle,
            terms: terms_digest(&self.limits, &self.policy),
            outcome,
        })
    }
}

/// Why a job's terms ([`JobHeader`] and the submitter's signature, as a
/// worker fetches them before it runs a batch) were refused. Nothing is
/// cached when they are.
#[derive(Debug, thiserror::Error)]
pub enum TermsError {
    /// The header describes another job (its hash is not the job id).
    #[error("the header does not hash to job {0}")]
    NotThisJob(JobId),
    /// The header names another bundle than the one given.
    #[error("the header names bundle {header}, not {given}")]
    OtherBundle {
        /// The bundle the header names.
        header: BundleId,
        /// The bundle it was checked against.
        given: BundleId,
    },
    /// The signature is not the bundle's submitter's over the job id.
    #[error("the job is not signed by its bundle's submitter")]
    BadSignature,
}

impl JobHeader {
    /// Checks that this header and `signature` are the signed terms of `job`
    /// run with `bundle`: the header hashes to `job`, names `bundle`, and
    /// `signature` is the bundle's submitter's over the job id (as
    /// [`JobSpec::verify`] checks it). The submitter's key on success.
    pub fn verify_signed(
        &self,
        job: JobId,
        bundle: &VerifiedBundle,
        signature: &[u8],
    ) -> Result<[u8; 32], TermsError> {
        if !self.matches(job) {
            return Err(TermsError::NotThisJob(job));
        }
        if self.bundle != bundle.id() {
            return Err(TermsError::OtherBundle {
                header: self.bundle,
                given: bundle.id(),
            });
        }
        let key = bundle.manifest().submitter;
        if !verify_job_signature(job, &key, signature) {
            return Err(TermsError::BadSignature);
        }
        Ok(key)
    }
}

/// Whether `signature` is `submitter`'s signature of the job `job` (what
/// [`JobSpec::sign`] makes).
pub fn verify_job_signature(job: JobId, submitter: &[u8; 32], signature: &[u8]) -> bool {
    identity::verify(submitter, &spec_message(job), signature)
}

/// The id of a job from its parts (the bundle id, the terms, the nonce and
/// the hash of every input).
fn job_id<'a>(
    bundle: &BundleId,
    policy: &Policy,
    limits: &Limits,
    nonce: u64,
    inputs: impl ExactSizeIterator<Item = &'a [u8]>,
) -> JobId {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(ID_CONTEXT);
    ctx.update(&bundle.0);
    ctx.update(&rmp_serde::to_vec(&(policy, limits, nonce)).unwrap_or_default());
    ctx.update(&(inputs.len() as u64).to_le_bytes());
    for input in inputs {
        ctx.update(input);
    }
    let d = ctx.finish();
    let mut pos = [0u8; 8];
    pos.copy_from_slice(&d.as_ref()[..8]);
    JobId(RingPos(u64::from_be_bytes(pos)))
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
            signature: ByteBuf::new(),
        };
        spec.check_shape()?;
        Ok(spec)
    }

    /// The job's id (see the [module docs](self)).
    pub fn id(&self) -> JobId {
        let hashes: Vec<[u8; 32]> = self.inputs.iter().map(|i| sha256(i)).collect();
        job_id(
            &self.bundle_id(),
            &self.policy,
            &self.limits,
            self.nonce,
            hashes.iter().map(|h| &h[..]),
        )
    }

    /// The bundle's id (the hash of the encoding when it does not decode).
    fn bundle_id(&self) -> BundleId {
        Bundle::decode(&self.bundle)
            .and_then(|b| b.id())
            .unwrap_or_else(|_| BundleId(sha256(&self.bundle)))
    }

    /// What a client needs to check results ([`JobHeader`]).
    pub fn header(&self) -> JobHeader {
        let mut inputs = Vec::with_capacity(self.inputs.len() * 32);
        for i in &self.inputs {
            inputs.extend_from_slice(&sha256(i));
        }
        JobHeader {
            bundle: self.bundle_id(),
            policy: self.policy,
            limits: self.limits,
            nonce: self.nonce,
            inputs: ByteBuf::from(inputs),
        }
    }

    /// Signs the spec with the submitter's key, which must be the key that
    /// signed the bundle.
    pub fn sign(mut self, submitter: &Identity) -> Result<JobSpec, JobError> {
        if self.submitter() != Some(submitter.public_key()) {
            return Err(JobError::NotSubmitter);
        }
        self.signature = ByteBuf::from(submitter.sign(&spec_message(self.id())).to_vec());
        Ok(self)
    }

    /// Whether the spec carries its submitter's valid signature.
    pub fn is_signed(&self) -> bool {
        self.submitter()
            .is_some_and(|key| verify_job_signature(self.id(), &key, &self.signature))
    }

    /// Checks everything a node checks before it acknowledges the job, except
    /// the number of live workers: bundle hash and signature, policy, task
    /// count, input and module caps. Returns the verified bundle.
    pub fn verify(&self) -> Result<VerifiedBundle, JobError> {
        let bundle = Bundle::decode(&self.bundle)?.verify()?;
        self.check_shape()?;
        if !self.is_signed() {
            return Err(JobError::BadSignature);
        }
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

/// SHA-256 of `bytes`: the hash of inputs, outputs and bundles everywhere
/// in Chorus.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
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

fn spec_message(job: JobId) -> Vec<u8> {
    let mut m = SPEC_CONTEXT.to_vec();
    m.extend_from_slice(&job.0.0.to_be_bytes());
    m
}

fn cancel_message(job: JobId) -> Vec<u8> {
    let mut m = CANCEL_CONTEXT.to_vec();
    m.extend_from_slice(&job.0.0.to_be_bytes());
    m
}

/// The seed of task `task`'s `random_get`: the same on every replica,
/// different across tasks. With the bundle's seed `Some(s)` it is `s + task`
/// (wrapping: task 0 sees what `chorus run --seed s` sees); without one it
/// is derived from the job id. Workers compute it themselves from the bundle
/// and the job, so the seed is covered by what they attest.
pub fn task_seed(bundle_seed: Option<u64>, job: JobId, task: u32) -> u64 {
    if let Some(s) = bundle_seed {
        return s.wrapping_add(u64::from(task));
    }
    let mut x = job.0.0 ^ (u64::from(task)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
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
        let (me, b) = bundle();
        let a = JobSpec::new(&b, vec![b"1".to_vec(), b"2".to_vec()], None, None, 7)
            .unwrap()
            .sign(&me)
            .unwrap();
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
        // The header names the same job, and knows each input's hash.
        let h = a.header();
        assert!(h.matches(a.id()));
        assert_eq!(h.input(1), Some(sha256(b"2")));
        assert_eq!(h.input(2), None);
        let mut forged = h.clone();
        forged.inputs[0] ^= 1;
        assert!(!forged.matches(a.id()));
    }

    #[test]
    fn a_spec_is_signed_by_its_bundles_submitter_only() {
        let (me, b) = bundle();
        let unsigned = JobSpec::new(&b, vec![b"1".to_vec()], None, None, 7).unwrap();
        assert!(matches!(unsigned.verify(), Err(JobError::BadSignature)));
        let stranger = Identity::generate().unwrap();
        assert!(matches!(
            unsigned.clone().sign(&stranger),
            Err(JobError::NotSubmitter)
        ));
        let signed = unsigned.sign(&me).unwrap();
        assert!(signed.verify().is_ok());
        // The signature covers the id, which covers every field.
        let mut changed = signed.clone();
        changed.inputs[0] = ByteBuf::from(b"2".to_vec());
        assert!(matches!(changed.verify(), Err(JobError::BadSignature)));
        let mut changed = signed;
        changed.limits.fuel -= 1;
        assert!(matches!(changed.verify(), Err(JobError::BadSignature)));
    }

    #[test]
    fn signed_terms_are_checked_against_job_bundle_and_submitter() {
        let (me, b) = bundle();
        let spec = JobSpec::new(&b, vec![b"1".to_vec()], None, None, 7)
            .unwrap()
            .sign(&me)
            .unwrap();
        let job = spec.id();
        let h = spec.header();
        assert_eq!(
            h.verify_signed(job, &b, &spec.signature).unwrap(),
            me.public_key()
        );
        assert!(matches!(
            h.verify_signed(JobId(RingPos(job.0.0 ^ 1)), &b, &spec.signature),
            Err(TermsError::NotThisJob(_))
        ));
        let (other_key, other) = bundle();
        assert!(matches!(
            h.verify_signed(job, &other, &spec.signature),
            Err(TermsError::OtherBundle { .. })
        ));
        let forged = other_key.sign(&spec_message(job));
        assert!(matches!(
            h.verify_signed(job, &b, &forged),
            Err(TermsError::BadSignature)
        ));
        assert!(matches!(
            h.verify_signed(job, &b, &[]),
            Err(TermsError::BadSignature)
        ));
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
            ..Policy::default()
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
        let (me2, b) = bundle();
        let mut tampered = JobSpec::new(&b, vec![vec![]], None, None, 0)
            .unwrap()
            .sign(&me2)
            .unwrap();
        let n = tampered.bundle.len();
        tampered.bundle[n - 70] ^= 1;
        assert!(matches!(tampered.verify(), Err(JobError::Bundle(_))));
    }

    #[test]
    fn cancels_are_signed() {
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
    }
}
