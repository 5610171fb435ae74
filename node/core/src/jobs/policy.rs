//! Replication policy: how many replicas run each task and how many equal results accept it.

use serde::{Deserialize, Serialize};

/// A replication policy that cannot be met.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
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

/// How many times each task runs and how many equal results accept it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Replicas started for each task, on distinct workers. Default 2.
    pub replicas: u32,
    /// Equal outcome digests needed to accept a result. Default: a majority of
    /// `replicas`.
    pub quorum: u32,
    /// Upper bound on replicas that return a verdict for one task, including
    /// the extra ones sent on disagreement. Default `2 * replicas`.
    pub max_replicas: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            replicas: 2,
            quorum: Policy::majority(2),
            max_replicas: 4,
        }
    }
}

/// The most replicas any task may have (`max_replicas`, and so `replicas`).
pub const MAX_REPLICAS: u32 = 16;

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
        };
        policy.validate()?;
        Ok(policy)
    }

    /// Checks the policy on its own (see [`PolicyError`]).
    pub fn validate(&self) -> Result<(), PolicyError> {
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
