//! Proof files: what `chorus submit` and `chorus results` write beside each
//! output `OUT/NAME` as `OUT/NAME.proof`, and the offline check of an output
//! against its proof (`chorus verify`), with no node running.
//!
//! # Format (version 1)
//!
//! One JSON object, UTF-8, hex in lower case:
//!
//! ```json
//! {
//!   "format": "chorus-proof/1",
//!   "job": "1f0c9a3e5d7b2a41",
//!   "task": 7,
//!   "input_sha256": "<64 hex>",
//!   "bundle": "<64 hex>",
//!   "policy": {"replicas": 3, "quorum": 2, "max_replicas": 6},
//!   "limits": {"fuel": 100000000000, "wall_ms": 60000, ...},
//!   "outcome": "Ok",
//!   "output_sha256": "<64 hex>",
//!   "attestations": [{"worker": "<64 hex: Ed25519 public key>", "signature": "<128 hex>"}]
//! }
//! ```
//!
//! Each attestation is an Ed25519 signature by `worker` over the
//! [`Claim`](crate::attest::Claim) message: the context
//! `"chorus attestation v1\0"`, the job id (8 bytes, big endian), the task
//! (4 bytes, big endian), `input_sha256`, `bundle`, the terms digest of
//! `limits` and `policy` ([`terms_digest`]), the outcome digest of
//! `outcome` and the output bytes ([`crate::outcome::digest`]), and the
//! worker's key. A proof holds when every signature does and at least
//! `policy.quorum` distinct workers signed. `output_sha256` is redundant (the
//! outcome digest covers the output) and only lets a checker tell "the output
//! changed" from "the proof was tampered with".
//!
//! What a proof cannot say offline is whether each signer was a member of
//! the ring: the client checked that when it fetched the result (see
//! `SECURITY.md`).

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use chorus_core::jobs::Policy;

use crate::attest::{AcceptRule, Attestation, Claim, ProofError, check_proof, terms_digest};
use crate::bundle::{BundleId, Limits};
use crate::job::{JobHeader, JobId, sha256};
use crate::outcome::{self, Outcome};

/// The `format` of version 1.
pub const PROOF_FORMAT: &str = "chorus-proof/1";

/// A proof file's content (see the [module docs](self)).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    /// Always [`PROOF_FORMAT`].
    pub format: String,
    /// The job id, 16 hex digits.
    pub job: String,
    /// The task index.
    pub task: u32,
    /// SHA-256 of the task's input, hex.
    pub input_sha256: String,
    /// The bundle id, hex.
    pub bundle: String,
    /// The job's policy (its quorum is what the proof must reach).
    pub policy: Policy,
    /// The limits the task ran under.
    pub limits: Limits,
    /// How the task ended (`"Ok"` for an output).
    pub outcome: Outcome,
    /// SHA-256 of the output, hex.
    pub output_sha256: String,
    /// The workers' signatures.
    pub attestations: Vec<ProofAttestation>,
    /// The rule that accepted the result: `"Quorum"` (at least the
    /// policy's quorum signed), or `{"Credibility": {"error": E}}`
    /// (adaptive verification: at least one signed, and the coordinator
    /// bounds the chance the result is wrong by E, at most the policy's
    /// `max_error`).
    #[serde(default)]
    pub rule: AcceptRule,
}

/// One attestation in a proof file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofAttestation {
    /// The worker's Ed25519 public key, hex.
    pub worker: String,
    /// Its signature, hex.
    pub signature: String,
}

/// Why an output does not hold against its proof.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ProofFileError {
    /// The proof is not a version-1 proof file.
    #[error("malformed proof: {0}")]
    Malformed(String),
    /// The output's bytes are not the ones the proof was made for.
    #[error("output changed (its SHA-256 is not the one the proof names)")]
    OutputChanged,
    /// A signature, the signers or their number do not hold.
    #[error("{0}")]
    Attestations(#[from] ProofError),
}

impl ProofFileError {
    /// A short stable name for scripts (`--json`).
    pub fn kind(&self) -> &'static str {
        match self {
            ProofFileError::Malformed(_) => "malformed_proof",
            ProofFileError::OutputChanged => "output_changed",
            ProofFileError::Attestations(ProofError::TooFewSigners { .. }) => "too_few_signers",
            ProofFileError::Attestations(ProofError::DuplicateSigner(_)) => "duplicate_signer",
            ProofFileError::Attestations(ProofError::RuleNotAllowed) => "rule_not_allowed",
            ProofFileError::Attestations(ProofError::ErrorAboveTarget { .. }) => {
                "error_above_target"
            }
            ProofFileError::Attestations(_) => "signature_invalid",
        }
    }
}

impl Proof {
    /// The proof of task `task` of `job` ending with `outcome` and `output`,
    /// as attested by `attestations`; `None` when the header has no such task.
    pub fn new(
        job: JobId,
        header: &JobHeader,
        task: u32,
        outcome: &Outcome,
        output: &[u8],
        attestations: &[Attestation],
        rule: AcceptRule,
    ) -> Option<Proof> {
        Some(Proof {
            format: PROOF_FORMAT.to_string(),
            job: job.to_string(),
            task,
            input_sha256: hex::encode(header.input(task)?),
            bundle: hex::encode(header.bundle.0),
            policy: header.policy,
            limits: header.limits,
            outcome: outcome.clone(),
            output_sha256: hex::encode(sha256(output)),
            attestations: attestations
                .iter()
                .map(|a| ProofAttestation {
                    worker: hex::encode(a.worker),
                    signature: hex::encode(&a.signature),
                })
                .collect(),
            rule,
        })
    }

    /// The proof as written to a file: pretty JSON and a newline.
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    /// A proof read from a file.
    pub fn from_json(bytes: &[u8]) -> Result<Proof, ProofFileError> {
        let p: Proof =
            serde_json::from_slice(bytes).map_err(|e| ProofFileError::Malformed(e.to_string()))?;
        if p.format != PROOF_FORMAT {
            return Err(ProofFileError::Malformed(format!(
                "format {:?}, expected {PROOF_FORMAT:?}",
                p.format
            )));
        }
        Ok(p)
    }

    /// Checks `output` against this proof; returns the number of distinct
    /// signers.
    pub fn check(&self, output: &[u8]) -> Result<usize, ProofFileError> {
        let malformed = |what: &str| ProofFileError::Malformed(what.to_string());
        if hex32(&self.output_sha256).ok_or_else(|| malformed("output_sha256"))? != sha256(output) {
            return Err(ProofFileError::OutputChanged);
        }
        let job: JobId = self.job.parse().map_err(|_| malformed("job"))?;
        let digest = outcome::digest(&self.outcome, output)
            .ok_or_else(|| malformed("outcome is not a verdict"))?;
        let claim = Claim {
            job,
            task: self.task,
            input: hex32(&self.input_sha256).ok_or_else(|| malformed("input_sha256"))?,
            bundle: BundleId(hex32(&self.bundle).ok_or_else(|| malformed("bundle"))?),
            terms: terms_digest(&self.limits, &self.policy),
            outcome: digest,
        };
        let mut attestations = Vec::with_capacity(self.attestations.len());
        for a in &self.attestations {
            attestations.push(Attestation {
                worker: hex32(&a.worker).ok_or_else(|| malformed("attestation worker"))?,
                signature: ByteBuf::from(
                    hex::decode(&a.signature).map_err(|_| malformed("attestation signature"))?,
                ),
            });
        }
        Ok(check_proof(&claim, &attestations, &self.policy, &self.rule)?.len())
    }
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    let v = hex::decode(s).ok()?;
    v.try_into().ok()
}

#[cfg(test)]
mod tests {
    use chorus_core::RingPos;

    use super::*;
    use crate::identity::Identity;

    fn header() -> JobHeader {
        header_with(Policy::new(3, Some(2), None).unwrap())
    }

    fn header_with(policy: Policy) -> JobHeader {
        JobHeader {
            bundle: BundleId([3; 32]),
            policy,
            limits: Limits::default(),
            nonce: 1,
            inputs: ByteBuf::from([[5u8; 32], [6u8; 32]].concat()),
        }
    }

    fn proof(signers: usize, output: &[u8]) -> Proof {
        proof_under(header(), AcceptRule::Quorum, signers, output)
    }

    fn proof_under(h: JobHeader, rule: AcceptRule, signers: usize, output: &[u8]) -> Proof {
        let job = JobId(RingPos(0x1234));
        let d = outcome::digest(&Outcome::Ok, output).unwrap();
        let claim = h.claim(job, 1, d).unwrap();
        let a: Vec<Attestation> = (0..signers)
            .map(|_| claim.sign(&Identity::generate().unwrap()))
            .collect();
        Proof::new(job, &h, 1, &Outcome::Ok, output, &a, rule).unwrap()
    }

    #[test]
    fn the_credibility_rule_holds_only_where_the_job_allows_it() {
        let adaptive = header_with(Policy::adaptive(1e-4, None).unwrap());
        let credible = AcceptRule::Credibility { error: 5e-5 };
        // Adaptive, one signer, a bound within the target: holds, and says
        // so in the file.
        let p = proof_under(adaptive.clone(), credible, 1, b"out");
        let back = Proof::from_json(&p.to_json()).unwrap();
        assert_eq!(back.rule, credible);
        assert_eq!(back.check(b"out"), Ok(1));
        // A bound above the job's target.
        let p = proof_under(
            adaptive.clone(),
            AcceptRule::Credibility { error: 2e-4 },
            1,
            b"out",
        );
        assert_eq!(p.check(b"out").unwrap_err().kind(), "error_above_target");
        // No signer at all.
        let p = proof_under(adaptive, credible, 0, b"out");
        assert_eq!(p.check(b"out").unwrap_err().kind(), "too_few_signers");
        // The rule claimed for a full-verification job, or edited into a
        // quorum proof: refused.
        let p = proof_under(header(), credible, 1, b"out");
        assert_eq!(p.check(b"out").unwrap_err().kind(), "rule_not_allowed");
        let mut p = proof(1, b"out");
        p.rule = credible;
        assert_eq!(p.check(b"out").unwrap_err().kind(), "rule_not_allowed");
    }

    #[test]
    fn a_proof_round_trips_and_holds_for_its_output_only() {
        let p = proof(2, b"out");
        let back = Proof::from_json(&p.to_json()).unwrap();
        assert_eq!(back, p);
        assert_eq!(back.check(b"out"), Ok(2));
        assert_eq!(back.check(b"oui"), Err(ProofFileError::OutputChanged));
    }

    #[test]
    fn a_tampered_or_thin_proof_fails_with_its_reason() {
        let p = proof(1, b"out");
        assert_eq!(p.check(b"out").unwrap_err().kind(), "too_few_signers");
        let mut p = proof(2, b"out");
        p.task = 0;
        assert_eq!(p.check(b"out").unwrap_err().kind(), "signature_invalid");
        let mut p = proof(2, b"out");
        p.policy.quorum = 3;
        p.policy.replicas = 3;
        assert_eq!(p.check(b"out").unwrap_err().kind(), "signature_invalid");
        assert!(matches!(
            Proof::from_json(b"{}"),
            Err(ProofFileError::Malformed(_))
        ));
    }
}
