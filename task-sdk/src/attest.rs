//! Attestations: what a worker signs for every task it ran, and how anyone
//! checks that a result carries a quorum of them.
//!
//! A worker signs a [`Claim`] per task: the job, the task index, the SHA-256
//! of the task's input, the bundle id, the digest of the limits and policy
//! the task ran under ([`terms_digest`]), the outcome digest (which covers
//! the output bytes, [`crate::outcome::digest`]) and its own public key. A
//! decided task is its result plus at least `quorum` attestations of that
//! claim by distinct workers; the coordinator stores them with the job,
//! copies them to its backups and hands them to clients with every result.
//!
//! [`check_attestations`] is the pure part of the check (signatures, distinct
//! signers, their number against the quorum). Whether each signer is a member
//! of the ring is a network question, answered by the client and by backups
//! (a lookup of the signer's position finds that key, and it answers a signed
//! challenge: [`member_message`]).

use std::collections::BTreeSet;

use chorus_core::jobs::Policy;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::bundle::{BundleId, Limits};
use crate::identity::{self, Identity, PeerId};
use crate::job::{JobId, sha256};

/// Domain separation of attestations.
const ATTEST_CONTEXT: &[u8] = b"chorus attestation v1\0";
/// Domain separation of the terms digest.
const TERMS_CONTEXT: &[u8] = b"chorus terms v1\0";
/// Domain separation of membership challenges.
const MEMBER_CONTEXT: &[u8] = b"chorus member v1\0";

/// The digest of the limits and the policy a task ran under: part of what a
/// worker attests, so a result cannot be passed off as one run under other
/// terms (a smaller quorum, a larger fuel budget).
pub fn terms_digest(limits: &Limits, policy: &Policy) -> [u8; 32] {
    let mut m = TERMS_CONTEXT.to_vec();
    m.extend_from_slice(&rmp_serde::to_vec(&(limits, policy)).unwrap_or_default());
    sha256(&m)
}

/// What a worker attests about one task it ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Claim {
    /// The job.
    pub job: JobId,
    /// The task's index in the job.
    pub task: u32,
    /// SHA-256 of the task's input (its stdin).
    pub input: [u8; 32],
    /// The bundle that ran.
    pub bundle: BundleId,
    /// [`terms_digest`] of the limits and policy.
    pub terms: [u8; 32],
    /// The outcome digest ([`crate::outcome::digest`]), which covers the output bytes.
    pub outcome: [u8; 32],
}

/// One worker's signature over a [`Claim`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attestation {
    /// The worker's Ed25519 public key (its peer id is the SHA-256 of it).
    #[serde(with = "serde_bytes")]
    pub worker: [u8; 32],
    /// Its signature over the claim and its key.
    pub signature: ByteBuf,
}

impl Attestation {
    /// The signer's peer id.
    pub fn peer(&self) -> PeerId {
        PeerId::from_public_key(&self.worker)
    }
}

impl Claim {
    /// The bytes a worker signs: the claim and the worker's own key.
    pub fn message(&self, worker: &[u8; 32]) -> Vec<u8> {
        let mut m = Vec::with_capacity(ATTEST_CONTEXT.len() + 8 + 4 + 32 * 5);
        m.extend_from_slice(ATTEST_CONTEXT);
        m.extend_from_slice(&self.job.0.0.to_be_bytes());
        m.extend_from_slice(&self.task.to_be_bytes());
        m.extend_from_slice(&self.input);
        m.extend_from_slice(&self.bundle.0);
        m.extend_from_slice(&self.terms);
        m.extend_from_slice(&self.outcome);
        m.extend_from_slice(worker);
        m
    }

    /// Signs this claim with a worker's key.
    pub fn sign(&self, worker: &Identity) -> Attestation {
        let key = worker.public_key();
        Attestation {
            worker: key,
            signature: ByteBuf::from(worker.sign(&self.message(&key)).to_vec()),
        }
    }

    /// Whether `a` is a valid signature of this claim by its key.
    pub fn verify(&self, a: &Attestation) -> bool {
        identity::verify(&a.worker, &self.message(&a.worker), &a.signature)
    }
}

/// Why a set of attestations does not prove a claim.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ProofError {
    /// One attestation's signature does not hold for this claim (another
    /// input, bundle, limits, task or output was signed, or none at all).
    #[error("the attestation of {0} does not verify")]
    BadSignature(PeerId),
    /// The same worker signed twice: it counts once.
    #[error("{0} attests twice")]
    DuplicateSigner(PeerId),
    /// Fewer distinct valid signers than the quorum.
    #[error("{signers} distinct signers, the quorum is {quorum}")]
    TooFewSigners {
        /// Distinct signers that count.
        signers: usize,
        /// The job's quorum.
        quorum: u32,
    },
    /// A signer is not a member of the ring.
    #[error("signer {0} is not a member of the ring")]
    NotAMember(PeerId),
    /// The proof claims the credibility rule for a job with full
    /// verification, where only a quorum of signers proves a result.
    #[error("the result claims the credibility rule, but the job's verification is full")]
    RuleNotAllowed,
    /// The credibility rule's error bound is above the job's target.
    #[error("the result's error bound {error} is above the job's max_error {max}")]
    ErrorAboveTarget {
        /// The bound the coordinator stated.
        error: f64,
        /// The job's target.
        max: f64,
    },
}

/// By which rule a result was accepted: what its signers are checked
/// against.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum AcceptRule {
    /// At least the job's `quorum` distinct workers signed it (full
    /// verification).
    #[default]
    Quorum,
    /// Adaptive verification: the coordinator judged its signers' trust
    /// records and bounds the chance that the result is wrong by `error`,
    /// at most the job's `max_error` (see `chorus-core`'s `jobs::trust`).
    /// At least one worker signed it. The bound is the coordinator's
    /// word: the records it rests on are its own.
    Credibility {
        /// The bound on the chance the result is wrong.
        error: f64,
    },
}

// A rule that passes `signers_needed` has a finite bound.
impl Eq for AcceptRule {}

impl AcceptRule {
    /// The rule for an accepted task: credibility with this bound, or a
    /// quorum.
    pub fn from_error(error: Option<f64>) -> AcceptRule {
        match error {
            Some(error) => AcceptRule::Credibility { error },
            None => AcceptRule::Quorum,
        }
    }

    /// How many distinct signers the rule needs under `policy`, or why it
    /// cannot prove anything there.
    pub fn signers_needed(&self, policy: &Policy) -> Result<u32, ProofError> {
        match *self {
            AcceptRule::Quorum => Ok(policy.quorum),
            AcceptRule::Credibility { error } => {
                if !policy.is_adaptive() {
                    return Err(ProofError::RuleNotAllowed);
                }
                if !(error >= 0.0 && error <= policy.max_error) {
                    return Err(ProofError::ErrorAboveTarget {
                        error,
                        max: policy.max_error,
                    });
                }
                Ok(1)
            }
        }
    }

    /// A short description for people: `quorum` or `credibility (error ≤ E)`.
    pub fn describe(&self) -> String {
        match self {
            AcceptRule::Quorum => "quorum".into(),
            AcceptRule::Credibility { error } => format!("credibility (error bound {error:.1e})"),
        }
    }
}

/// Checks `attestations` against `claim` under `rule` for a job of
/// `policy` ([`AcceptRule::signers_needed`], then [`check_attestations`]).
pub fn check_proof(
    claim: &Claim,
    attestations: &[Attestation],
    policy: &Policy,
    rule: &AcceptRule,
) -> Result<Vec<[u8; 32]>, ProofError> {
    let needed = rule.signers_needed(policy)?;
    check_attestations(claim, attestations, needed)
}

/// Checks that `attestations` prove `claim` with `quorum` distinct signers:
/// every signature must hold (one forged attestation refuses the whole set:
/// whoever assembled it lied), no signer may appear twice, and there must be
/// at least `quorum` of them. Returns the signers' keys, for the membership
/// check that only the network can answer.
pub fn check_attestations(
    claim: &Claim,
    attestations: &[Attestation],
    quorum: u32,
) -> Result<Vec<[u8; 32]>, ProofError> {
    let mut seen = BTreeSet::new();
    for a in attestations {
        if !seen.insert(a.worker) {
            return Err(ProofError::DuplicateSigner(a.peer()));
        }
        if !claim.verify(a) {
            return Err(ProofError::BadSignature(a.peer()));
        }
    }
    if seen.len() < quorum as usize {
        return Err(ProofError::TooFewSigners {
            signers: seen.len(),
            quorum,
        });
    }
    Ok(seen.into_iter().collect())
}

/// The bytes a node signs to prove it holds its key: the challenger's nonce
/// under a context of its own, so the signature cannot be replayed as an
/// attestation or anything else.
pub fn member_message(nonce: &[u8; 32], key: &[u8; 32]) -> Vec<u8> {
    let mut m = MEMBER_CONTEXT.to_vec();
    m.extend_from_slice(nonce);
    m.extend_from_slice(key);
    m
}

#[cfg(test)]
mod tests {
    use chorus_core::RingPos;

    use super::*;
    use crate::outcome::{self, Outcome};

    fn claim() -> Claim {
        Claim {
            job: JobId(RingPos(7)),
            task: 3,
            input: sha256(b"input"),
            bundle: BundleId([1; 32]),
            terms: terms_digest(&Limits::default(), &Policy::new(3, None, None).unwrap()),
            outcome: outcome::digest(&Outcome::Ok, b"42").unwrap(),
        }
    }

    #[test]
    fn an_attestation_verifies_only_the_claim_it_signed() {
        let w = Identity::generate().unwrap();
        let c = claim();
        let a = c.sign(&w);
        assert!(c.verify(&a));
        let others = [
            Claim {
                input: sha256(b"other input"),
                ..c
            },
            Claim {
                bundle: BundleId([2; 32]),
                ..c
            },
            Claim {
                terms: terms_digest(
                    &Limits {
                        fuel: 1,
                        ..Limits::default()
                    },
                    &Policy::new(3, None, None).unwrap(),
                ),
                ..c
            },
            Claim {
                terms: terms_digest(&Limits::default(), &Policy::new(3, Some(3), None).unwrap()),
                ..c
            },
            Claim { task: 4, ..c },
            Claim {
                job: JobId(RingPos(8)),
                ..c
            },
            Claim {
                outcome: outcome::digest(&Outcome::Ok, b"43").unwrap(),
                ..c
            },
        ];
        for (i, other) in others.iter().enumerate() {
            assert!(
                !other.verify(&a),
                "claim {i} verified with another's signature"
            );
        }
        // Another key over the same signature.
        let mut stolen = a.clone();
        stolen.worker = Identity::generate().unwrap().public_key();
        assert!(!c.verify(&stolen));
    }

    #[test]
    fn a_quorum_needs_distinct_valid_signers() {
        let c = claim();
        let w: Vec<Identity> = (0..3).map(|_| Identity::generate().unwrap()).collect();
        let a: Vec<Attestation> = w.iter().map(|w| c.sign(w)).collect();
        assert_eq!(check_attestations(&c, &a[..2], 2).unwrap().len(), 2);
        assert_eq!(
            check_attestations(&c, &a[..1], 2),
            Err(ProofError::TooFewSigners {
                signers: 1,
                quorum: 2
            })
        );
        let twice = vec![a[0].clone(), a[0].clone()];
        assert!(matches!(
            check_attestations(&c, &twice, 2),
            Err(ProofError::DuplicateSigner(_))
        ));
        let mut forged = a.clone();
        forged[2].signature[0] ^= 1;
        assert!(matches!(
            check_attestations(&c, &forged, 2),
            Err(ProofError::BadSignature(_))
        ));
    }
}
