//! Building a job: sign a module into a bundle, then add inputs and choose
//! the replication policy and limits.

use chorus_core::jobs::{DEFAULT_MAX_ERROR, Policy, PolicyError, Verify};
use serde::Serialize;

use super::error::ClientError;
use crate::bundle::{Bundle, Limits, Manifest, VerifiedBundle};
use crate::identity::Identity;
use crate::job::{JobError, JobSpec};

/// Signs a raw WebAssembly module into a bundle named `name` (version "1",
/// default limits, 3 replicas and a quorum of 2 unless the job says otherwise).
pub fn sign_module(
    name: &str,
    module: Vec<u8>,
    submitter: &Identity,
) -> Result<VerifiedBundle, ClientError> {
    let manifest = Manifest::new(name, "1", submitter.public_key());
    Ok(Bundle::sign(manifest, module, submitter)?)
}

/// Builds a [`JobSpec`]: a bundle, one input per task, and optionally the
/// replication policy and limits (the manifest's by default).
#[derive(Clone, Debug)]
pub struct JobBuilder<'a> {
    bundle: &'a VerifiedBundle,
    inputs: Vec<Vec<u8>>,
    replicas: Option<u32>,
    quorum: Option<u32>,
    max_replicas: Option<u32>,
    verify: Option<Verify>,
    max_error: Option<f64>,
    limits: Option<Limits>,
    nonce: Option<u64>,
}

impl<'a> JobBuilder<'a> {
    /// A job of `bundle` with no tasks yet.
    pub fn new(bundle: &'a VerifiedBundle) -> Self {
        JobBuilder {
            bundle,
            inputs: Vec::new(),
            replicas: None,
            quorum: None,
            max_replicas: None,
            verify: None,
            max_error: None,
            limits: None,
            nonce: None,
        }
    }

    /// Adds one task with `input` as its stdin.
    pub fn input(mut self, input: Vec<u8>) -> Self {
        self.inputs.push(input);
        self
    }

    /// Adds one task per input, in order.
    pub fn inputs(mut self, inputs: impl IntoIterator<Item = Vec<u8>>) -> Self {
        self.inputs.extend(inputs);
        self
    }

    /// Adds one task whose stdin is `value` in MessagePack (what
    /// `chorus_sdk::guest::run` decodes).
    pub fn input_typed<T: Serialize + ?Sized>(self, value: &T) -> Result<Self, ClientError> {
        let bytes = rmp_serde::to_vec(value).map_err(|e| ClientError::Encode(e.to_string()))?;
        Ok(self.input(bytes))
    }

    /// Replicas per task. Without [`JobBuilder::quorum`] the quorum is then a
    /// majority of them.
    pub fn replicas(mut self, replicas: u32) -> Self {
        self.replicas = Some(replicas);
        self
    }

    /// Matching replicas needed to accept a result.
    pub fn quorum(mut self, quorum: u32) -> Self {
        self.quorum = Some(quorum);
        self
    }

    /// Most replicas per task, counting those sent on disagreement
    /// (default: twice the replicas).
    pub fn max_replicas(mut self, max_replicas: u32) -> Self {
        self.max_replicas = Some(max_replicas);
        self
    }

    /// How results are accepted: [`Verify::Adaptive`] (the default unless
    /// replicas or a quorum are set) adds replicas until the result's
    /// credibility meets [`JobBuilder::max_error`]; [`Verify::Full`] runs
    /// `replicas` and accepts on `quorum`.
    pub fn verify(mut self, verify: Verify) -> Self {
        self.verify = Some(verify);
        self
    }

    /// Adaptive verification: the largest acceptable chance that an
    /// accepted result is wrong (default [`DEFAULT_MAX_ERROR`]).
    pub fn max_error(mut self, max_error: f64) -> Self {
        self.max_error = Some(max_error);
        self
    }

    /// Limits of every task (default: the manifest's).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = Some(limits);
        self
    }

    /// The nonce that tells this job from an identical earlier one (default: random).
    pub fn nonce(mut self, nonce: u64) -> Self {
        self.nonce = Some(nonce);
        self
    }

    /// The spec, signed by `submitter` (the key that signed the bundle) and
    /// checked as a node would check it (but for the number of live workers).
    pub fn build(self, submitter: &Identity) -> Result<JobSpec, ClientError> {
        let m = self.bundle.manifest();
        let counted = self.replicas.is_some() || self.quorum.is_some();
        let verify = self.verify.unwrap_or(if counted {
            Verify::Full
        } else {
            Verify::Adaptive
        });
        let policy = match (verify, self.replicas, self.quorum, self.max_replicas) {
            (Verify::Adaptive, None, None, max) => Some(
                Policy::adaptive(self.max_error.unwrap_or(DEFAULT_MAX_ERROR), max)
                    .map_err(JobError::from)?,
            ),
            (Verify::Adaptive, ..) => {
                return Err(JobError::from(PolicyError::ReplicasWithAdaptive).into());
            }
            (Verify::Full, None, None, None) => None,
            (Verify::Full, Some(r), q, max) => {
                Some(Policy::new(r, q, max).map_err(JobError::from)?)
            }
            (Verify::Full, None, q, max) => Some(
                Policy::new(m.replicas, Some(q.unwrap_or(m.quorum)), max)
                    .map_err(JobError::from)?,
            ),
        };
        let nonce = self.nonce.unwrap_or_else(random_nonce);
        Ok(JobSpec::new(self.bundle, self.inputs, policy, self.limits, nonce)?.sign(submitter)?)
    }
}

fn random_nonce() -> u64 {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 8];
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_ok() {
        return u64::from_le_bytes(bytes);
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module() -> Vec<u8> {
        b"\0asm\x01\0\0\0".to_vec()
    }

    #[test]
    fn builder_policy_defaults_follow_the_manifest_or_a_majority() {
        let me = Identity::generate().unwrap();
        let b = sign_module("t", module(), &me).unwrap();
        // Nothing said: adaptive at the default error target.
        let spec = JobBuilder::new(&b).input(vec![1]).build(&me).unwrap();
        assert_eq!(
            spec.policy,
            Policy::adaptive(DEFAULT_MAX_ERROR, None).unwrap()
        );
        let spec = JobBuilder::new(&b)
            .input(vec![1])
            .max_error(1e-6)
            .build(&me)
            .unwrap();
        assert_eq!(spec.policy.max_error, 1e-6);
        assert!(matches!(
            JobBuilder::new(&b)
                .input(vec![1])
                .verify(Verify::Adaptive)
                .replicas(3)
                .build(&me),
            Err(ClientError::Job(JobError::Policy(
                PolicyError::ReplicasWithAdaptive
            )))
        ));
        // Full: the manifest's replicas and quorum.
        let spec = JobBuilder::new(&b)
            .input(vec![1])
            .verify(Verify::Full)
            .build(&me)
            .unwrap();
        assert_eq!(spec.policy, Policy::new(3, Some(2), None).unwrap());
        let spec = JobBuilder::new(&b)
            .input(vec![1])
            .replicas(5)
            .build(&me)
            .unwrap();
        assert_eq!(spec.policy.quorum, 3);
        assert_eq!(spec.policy.max_replicas, 10);
        let spec = JobBuilder::new(&b)
            .input(vec![1])
            .quorum(3)
            .max_replicas(4)
            .build(&me)
            .unwrap();
        assert_eq!((spec.policy.replicas, spec.policy.quorum), (3, 3));
        assert_eq!(spec.policy.max_replicas, 4);
        assert!(matches!(
            JobBuilder::new(&b)
                .input(vec![])
                .replicas(2)
                .quorum(3)
                .build(&me),
            Err(ClientError::Job(JobError::Policy(_)))
        ));
        assert!(matches!(
            JobBuilder::new(&b).build(&me),
            Err(ClientError::Job(JobError::NoTasks))
        ));
    }

    #[test]
    fn random_nonces_make_distinct_jobs_and_fixed_ones_the_same() {
        let me = Identity::generate().unwrap();
        let b = sign_module("t", module(), &me).unwrap();
        let a = JobBuilder::new(&b).input(vec![1]).build(&me).unwrap();
        let c = JobBuilder::new(&b).input(vec![1]).build(&me).unwrap();
        assert_ne!(a.id(), c.id());
        let a = JobBuilder::new(&b)
            .input(vec![1])
            .nonce(9)
            .build(&me)
            .unwrap();
        let c = JobBuilder::new(&b)
            .input(vec![1])
            .nonce(9)
            .build(&me)
            .unwrap();
        assert_eq!(a.id(), c.id());
        assert!(a.verify().is_ok());
    }
}
