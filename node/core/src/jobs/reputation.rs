//! Per-worker reputation: up for agreeing with accepted results, further down
//! for disagreeing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Verdict, WorkerId};

/// How reputation moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReputationConfig {
    /// Score of a worker never seen. Default 0.
    pub initial: i32,
    /// Added for agreeing with an accepted result. Default 1.
    pub gain: i32,
    /// Subtracted for disagreeing with an accepted result. Default 10: one lie
    /// costs ten honest answers.
    pub loss: i32,
    /// Lowest score. Default -1000.
    pub min: i32,
    /// Highest score. Default 1000.
    pub max: i32,
}

impl Default for ReputationConfig {
    fn default() -> Self {
        ReputationConfig {
            initial: 0,
            gain: 1,
            loss: 10,
            min: -1000,
            max: 1000,
        }
    }
}

/// One row of a [`Reputation::snapshot`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReputationEntry<W> {
    /// The worker.
    pub worker: W,
    /// Its score.
    pub score: i32,
    /// Accepted results it agreed with.
    pub agreed: u64,
    /// Accepted results it disagreed with.
    pub disagreed: u64,
}

/// Per-worker reputation: up for agreeing with accepted results, further down
/// for disagreeing, kept within `[min, max]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Reputation<W: Ord> {
    config: ReputationConfig,
    entries: BTreeMap<W, (i32, u64, u64)>,
}

impl<W: WorkerId> Default for Reputation<W> {
    fn default() -> Self {
        Reputation::new(ReputationConfig::default())
    }
}

impl<W: WorkerId> Reputation<W> {
    /// An empty table.
    pub fn new(config: ReputationConfig) -> Self {
        Reputation {
            config,
            entries: BTreeMap::new(),
        }
    }

    /// A worker's score (`initial` if never seen).
    pub fn score(&self, worker: &W) -> i32 {
        self.entries
            .get(worker)
            .map_or(self.config.initial, |e| e.0)
    }

    fn entry(&mut self, worker: &W) -> &mut (i32, u64, u64) {
        let initial = self.config.initial;
        self.entries
            .entry(worker.clone())
            .or_insert((initial, 0, 0))
    }

    /// `worker` agreed with an accepted result.
    pub fn record_agree(&mut self, worker: &W) {
        let ReputationConfig { gain, min, max, .. } = self.config;
        let e = self.entry(worker);
        e.0 = e.0.saturating_add(gain).clamp(min, max);
        e.1 = e.1.saturating_add(1);
    }

    /// `worker` disagreed with an accepted result.
    pub fn record_disagree(&mut self, worker: &W) {
        let ReputationConfig { loss, min, max, .. } = self.config;
        let e = self.entry(worker);
        e.0 = e.0.saturating_sub(loss).clamp(min, max);
        e.2 = e.2.saturating_add(1);
    }

    /// Applies a verdict: agreeing workers gain, disagreeing ones lose. A
    /// failed task changes nothing (nobody knows who was right).
    pub fn apply(&mut self, verdict: &Verdict<W>) {
        if let Verdict::Accepted {
            agreeing,
            disagreeing,
            ..
        } = verdict
        {
            for w in agreeing {
                self.record_agree(w);
            }
            for w in disagreeing {
                self.record_disagree(w);
            }
        }
    }

    /// Forgets a worker.
    pub fn forget(&mut self, worker: &W) {
        self.entries.remove(worker);
    }

    /// Every known worker, best score first (ties by id), for display.
    pub fn snapshot(&self) -> Vec<ReputationEntry<W>> {
        let mut out: Vec<ReputationEntry<W>> = self
            .entries
            .iter()
            .map(|(w, &(score, agreed, disagreed))| ReputationEntry {
                worker: w.clone(),
                score,
                agreed,
                disagreed,
            })
            .collect();
        out.sort_by(|a, b| b.score.cmp(&a.score).then_with(|| a.worker.cmp(&b.worker)));
        out
    }
}
