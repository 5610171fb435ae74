//! Replication policy: how many replicas run each task and how many equal results accept it.

use serde::{Deserialize, Serialize};

/// A replication policy that cannot be met.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PolicyError {
    /// `replicas` was 0: a task must run somewhere.
    #[error("replicas must be at least 1")]
    ZeroReplicas,
    /// `quorum` was 0: acceptance needs at least one vote.
    #[error("quorum must be at least 1")]
    ZeroQuorum,
    /// `quorum` larger than `replicas`: the first round could never agree.
    #[error("quorum {quorum} is larger than replicas {replicas}")]
    QuorumAboveReplicas {
        /// The requested quorum.
        quorum: u32,
        /// The requested replicas.
        replicas: u32,
    },
    /// `max_replicas` above [`MAX_REPLICAS`]: every replica is a worker's
    /// CPU, and a job may not ask the grid for unbounded repeats.
    #[error("max_replicas {0} is above the limit of {MAX_REPLICAS}")]
    MaxAboveLimit(u32),
    /// Replicas or a quorum were asked of an adaptive policy, which adds
    /// replicas by credibility instead.
    #[error(
        "replicas and quorum apply to full verification; adaptive verification takes max_error (and max_replicas)"
    )]
    ReplicasWithAdaptive,
    /// An adaptive error target outside (0, 1).
    #[error("max_error must be above 0 and below 1, not {0}")]
    MaxError(f64),
    /// `max_replicas` smaller than `replicas`.
    #[error("max_replicas {max_replicas} is smaller than replicas {replicas}")]
    MaxBelowReplicas {
        /// The requested maximum.
        max_replicas: u32,
        /// The requested replicas.
        replicas: u32,
    },
    /// More replicas than distinct live workers known: a task never runs twice
    /// on the same worker, so the policy cannot be met.
    #[error("{replicas} replicas requested but only {live} live workers are known")]
    NotEnoughWorkers {
        /// The requested replicas.
        replicas: u32,
        /// Live workers known.
        live: usize,
    },
}

/// How a task's result is accepted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Verify {
    /// Every task runs `replicas` times and `quorum` equal results accept
    /// it, whoever the workers are.
    #[default]
    Full,
    /// Replicas are added one at a time until the credibility of the
    /// leading result (from its workers' trust records, see
    /// [`super::trust`]) meets the job's `max_error`: one result from a
    /// trusted worker may suffice, untrusted ones need company. A random
    /// fraction of single results is audited by a second replica.
    Adaptive,
}

impl Verify {
    /// The stable name (`full`, `adaptive`).
    pub fn as_str(self) -> &'static str {
        match self {
            Verify::Full => "full",
            Verify::Adaptive => "adaptive",
        }
    }
}

impl std::str::FromStr for Verify {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "full" => Ok(Verify::Full),
            "adaptive" => Ok(Verify::Adaptive),
            other => Err(format!(
                "unknown verification mode {other:?} (full, adaptive)"
            )),
        }
    }
}

/// The default error target of adaptive verification: at most one accepted
/// result in 10,000 wrong.
pub const DEFAULT_MAX_ERROR: f64 = 1e-4;

fn default_max_error() -> f64 {
    DEFAULT_MAX_ERROR
}

/// How many times each task runs and how many equal results accept it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    /// Replicas started for each task, on distinct workers. Default 2.
    pub replicas: u32,
    /// Equal outcome digests needed to accept a result. Default: a majority of
    /// `replicas`.
    pub quorum: u32,
    /// Upper bound on replicas that return a verdict for one task, including
    /// the extra ones sent on disagreement. Default `2 * replicas`.
    pub max_replicas: u32,
    /// How results are accepted. Default [`Verify::Full`]; jobs stored
    /// before adaptive verification existed read as full.
    #[serde(default)]
    pub verify: Verify,
    /// Adaptive mode: the largest acceptable probability that an accepted
    /// result is wrong, by the credibility rule. Ignored in full mode.
    /// Default [`DEFAULT_MAX_ERROR`].
    #[serde(default = "default_max_error")]
    pub max_error: f64,
}

// `max_error` is a float, but a policy that passes `validate` has a finite
// one, and equality of policies is equality of their fields.
impl Eq for Policy {}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            replicas: 2,
            quorum: Policy::majority(2),
            max_replicas: 4,
            verify: Verify::Full,
            max_error: DEFAULT_MAX_ERROR,
        }
    }
}

/// The most replicas any task may have (`max_replicas`, and so `replicas`).
pub const MAX_REPLICAS: u32 = 16;

/// The default `max_replicas` of an adaptive policy: room for a dispute
/// among untrusted workers to be settled by credibility.
pub const ADAPTIVE_MAX_REPLICAS: u32 = 8;

impl Policy {
    /// A strict majority of `replicas` (`replicas / 2 + 1`).
    pub fn majority(replicas: u32) -> u32 {
        replicas / 2 + 1
    }

    /// A validated policy; `quorum` defaults to [`Policy::majority`] and
    /// `max_replicas` to `2 * replicas` (at most [`MAX_REPLICAS`]).
    pub fn new(
        replicas: u32,
        quorum: Option<u32>,
        max_replicas: Option<u32>,
    ) -> Result<Policy, PolicyError> {
        let policy = Policy {
            replicas,
            quorum: quorum.unwrap_or_else(|| Policy::majority(replicas)),
            max_replicas: max_replicas
                .unwrap_or_else(|| replicas.saturating_mul(2).min(MAX_REPLICAS).max(replicas)),
            verify: Verify::Full,
            max_error: DEFAULT_MAX_ERROR,
        };
        policy.validate()?;
        Ok(policy)
    }

    /// An adaptive policy with error target `max_error`: replicas are added
    /// until the result's credibility meets it, at most `max_replicas`
    /// (default [`ADAPTIVE_MAX_REPLICAS`]). `replicas` and `quorum` stay
    /// 2 (what a proof signed by a quorum means).
    pub fn adaptive(max_error: f64, max_replicas: Option<u32>) -> Result<Policy, PolicyError> {
        let policy = Policy {
            replicas: 2,
            quorum: 2,
            max_replicas: max_replicas.unwrap_or(ADAPTIVE_MAX_REPLICAS),
            verify: Verify::Adaptive,
            max_error,
        };
        policy.validate()?;
        Ok(policy)
    }

    /// Whether results are accepted by credibility ([`Verify::Adaptive`]).
    pub fn is_adaptive(&self) -> bool {
        self.verify == Verify::Adaptive
    }

    /// Checks the policy on its own (see [`PolicyError`]).
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.is_adaptive() && !(self.max_error > 0.0 && self.max_error < 1.0) {
            return Err(PolicyError::MaxError(self.max_error));
        }
        if self.replicas == 0 {
            return Err(PolicyError::ZeroReplicas);
        }
        if self.quorum == 0 {
            return Err(PolicyError::ZeroQuorum);
        }
        if self.quorum > self.replicas {
            return Err(PolicyError::QuorumAboveReplicas {
                quorum: self.quorum,
                replicas: self.replicas,
            });
        }
        if self.max_replicas > MAX_REPLICAS {
            return Err(PolicyError::MaxAboveLimit(self.max_replicas));
        }
        if self.max_replicas < self.replicas {
            return Err(PolicyError::MaxBelowReplicas {
                max_replicas: self.max_replicas,
                replicas: self.replicas,
            });
        }
        Ok(())
    }

    /// Checks the policy against the number of distinct live workers known.
    pub fn check_workers(&self, live: usize) -> Result<(), PolicyError> {
        self.validate()?;
        if usize::try_from(self.replicas).map_or(true, |r| r > live) {
            return Err(PolicyError::NotEnoughWorkers {
                replicas: self.replicas,
                live,
            });
        }
        Ok(())
    }
}
