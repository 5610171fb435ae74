//! Coordinator and worker: a batch of tasks to run, and the worker's signed
//! results.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use chorus_core::jobs::Policy;

use crate::bundle::{BundleId, Limits};
use crate::identity::{self, Identity};
use crate::job::{JobId, sha256};
use crate::outcome::Outcome;

/// Most tasks in one [`RunTasks`] batch. A worker refuses a larger batch
/// (`batch_too_large`) whatever its load, and a coordinator never sends one.
pub const MAX_BATCH_TASKS: usize = 256;

/// Domain separation of a worker's signature over its results.
const RESULTS_CONTEXT: &[u8] = b"chorus results v1\0";

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
    /// The bundle to run; the worker fetches it from the batch's sender if
    /// it lacks it.
    pub bundle: BundleId,
    /// The coordinator's address as it names it (its identity is the
    /// caller's). Workers fetch from the address the batch's connection came
    /// from instead, which the sender cannot choose.
    pub coordinator: SocketAddr,
    /// Limits of every task.
    pub limits: Limits,
    /// The job's policy (part of what the worker attests).
    pub policy: Policy,
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
    /// The worker's attestation of this result ([`crate::attest::Claim`]):
    /// its signature over the job, task, input hash, bundle, terms and
    /// outcome digest. `None` for no verdict.
    pub attestation: Option<ByteBuf>,
    /// The first [`STDERR_SHIPPED`] bytes of what the task wrote to stderr,
    /// sent only when it ended in an error: diagnostics for the submitter,
    /// not compared and not attested.
    #[serde(default)]
    pub stderr: ByteBuf,
}

/// Most bytes of a failed task's stderr a worker sends back.
pub const STDERR_SHIPPED: usize = 4096;

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

#[cfg(test)]
mod tests {
    use chorus_core::RingPos;

    use super::*;

    #[test]
    fn results_are_signed() {
        let job = JobId(RingPos(9));
        let stranger = Identity::generate().unwrap();
        let worker = Identity::generate().unwrap();
        let r = WorkerResult {
            task: 0,
            outcome: Outcome::Ok,
            output: ByteBuf::from(b"42".to_vec()),
            digest: crate::outcome::digest(&Outcome::Ok, b"42"),
            fuel_used: 10,
            wall_us: 5,
            attestation: None,
            stderr: ByteBuf::new(),
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
            attestation: None,
            stderr: ByteBuf::new(),
        };
        let m = results_message(JobId(RingPos(9)), &[r]);
        assert_eq!(
            hex::encode(sha256(&m)),
            "1f05acf7a8b5406b2968a2d77f0bbc89067c5983637c6abf84f500075cf996ae"
        );
    }
}
