//! Per-worker reputation and trust records: a score (up for agreeing with
//! accepted results, further down for disagreeing) and the record credibility
//! is derived from ([`super::trust`]): checks passed, spot checks passed and
//! failed, and the last proven lie. Bounded in size, serializable (the node
//! persists it in its data dir).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::trust::Trust;
use super::{Verdict, WorkerId};
use crate::ring::Time;

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
    /// How long a proven lie distrusts a worker, in ms. Default 30 days.
    #[serde(default = "default_distrust_ms")]
    pub distrust_ms: Time,
    /// Most workers remembered; past it, the one seen longest ago is
    /// forgotten (it starts again untrusted). Default 100,000.
    #[serde(default = "default_max_entries")]
    pub max_entries: usize,
}

fn default_distrust_ms() -> Time {
    30 * 24 * 3600 * 1000
}

fn default_max_entries() -> usize {
    100_000
}

impl ReputationConfig {
    /// Whether a table may run on these settings: its lowest score is at
    /// most its highest. Settings read back from disk are checked with it;
    /// on others the score is still bounded without a panic (the highest
    /// wins), so a damaged file cannot stop a node.
    pub fn is_usable(&self) -> bool {
        self.min <= self.max
    }
}

impl Default for ReputationConfig {
    fn default() -> Self {
        ReputationConfig {
            initial: 0,
            gain: 1,
            loss: 10,
            min: -1000,
            max: 1000,
            distrust_ms: default_distrust_ms(),
            max_entries: default_max_entries(),
        }
    }
}

/// One row of a [`Reputation::snapshot`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReputationEntry<W> {
    /// The worker.
    pub worker: W,
    /// Its record.
    pub record: Record,
}

/// One worker's record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Score within `[min, max]`.
    pub score: i32,
    /// Verified agreements.
    pub agreed: u64,
    /// Disagreements with accepted results.
    pub disagreed: u64,
    /// Spot checks passed.
    pub spot_passed: u64,
    /// Spot checks failed.
    pub spot_failed: u64,
    /// Checks passed since the last proven lie.
    pub streak: u64,
    /// When it last lied.
    pub lied_at: Option<Time>,
    /// When it was last heard of.
    pub last_seen: Time,
}

/// Per-worker reputation and trust records (see the [module docs](self)).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Reputation<W: Ord> {
    config: ReputationConfig,
    entries: BTreeMap<W, Record>,
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

    /// The table's settings.
    pub fn config(&self) -> &ReputationConfig {
        &self.config
    }

    /// Workers remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no worker is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A worker's score (`initial` if never seen).
    pub fn score(&self, worker: &W) -> i32 {
        self.entries
            .get(worker)
            .map_or(self.config.initial, |e| e.score)
    }

    /// A worker's record, if remembered.
    pub fn record(&self, worker: &W) -> Option<&Record> {
        self.entries.get(worker)
    }

    /// What credibility needs of a worker at `now`: its streak, and whether
    /// a lie within the distrust period distrusts it. A worker never seen
    /// has no checks.
    pub fn trust(&self, worker: &W, now: Time) -> Trust {
        self.entries
            .get(worker)
            .map_or(Trust::default(), |e| Trust {
                checks: e.streak,
                distrusted: e
                    .lied_at
                    .is_some_and(|t| now < t.saturating_add(self.config.distrust_ms)),
            })
    }

    fn entry(&mut self, worker: &W, now: Time) -> &mut Record {
        if !self.entries.contains_key(worker) && self.entries.len() >= self.config.max_entries {
            // Full: forget the worker seen longest ago.
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_seen)
                .map(|(w, _)| w.clone());
            if let Some(w) = oldest {
                self.entries.remove(&w);
            }
        }
        let initial = self.config.initial;
        let e = self.entries.entry(worker.clone()).or_insert(Record {
            score: initial,
            ..Record::default()
        });
        e.last_seen = e.last_seen.max(now);
        e
    }

    /// `worker` agreed with an accepted result that others also voted for
    /// (a check passed).
    pub fn record_agree(&mut self, worker: &W, now: Time) {
        let ReputationConfig { gain, min, max, .. } = self.config;
        let e = self.entry(worker, now);
        e.score = e.score.saturating_add(gain).max(min).min(max);
        e.agreed = e.agreed.saturating_add(1);
        e.streak = e.streak.saturating_add(1);
    }

    /// `worker` disagreed with an accepted result: a proven lie. Its streak
    /// ends and it is distrusted for the distrust period.
    pub fn record_disagree(&mut self, worker: &W, now: Time) {
        let ReputationConfig { loss, min, max, .. } = self.config;
        let e = self.entry(worker, now);
        e.score = e.score.saturating_sub(loss).max(min).min(max);
        e.disagreed = e.disagreed.saturating_add(1);
        e.streak = 0;
        e.lied_at = Some(now);
    }

    /// `worker` answered a spot check (a task whose result was already
    /// accepted): passing is a check; failing is counted here, and the lie
    /// itself with the task's new verdict ([`Self::apply`]).
    pub fn record_spot_check(&mut self, worker: &W, passed: bool, now: Time) {
        if passed {
            let ReputationConfig { gain, min, max, .. } = self.config;
            let e = self.entry(worker, now);
            e.score = e.score.saturating_add(gain).max(min).min(max);
            e.spot_passed = e.spot_passed.saturating_add(1);
            e.streak = e.streak.saturating_add(1);
        } else {
            let e = self.entry(worker, now);
            e.spot_failed = e.spot_failed.saturating_add(1);
        }
    }

    /// Applies a verdict: agreeing workers gain (when at least two agreed:
    /// a result accepted on one worker's word checks nobody), disagreeing
    /// ones are proven liars. A failed task changes nothing (nobody knows
    /// who was right).
    pub fn apply(&mut self, verdict: &Verdict<W>, now: Time) {
        if let Verdict::Accepted {
            agreeing,
            disagreeing,
            ..
        } = verdict
        {
            if agreeing.len() >= 2 {
                for w in agreeing {
                    self.record_agree(w, now);
                }
            }
            for w in disagreeing {
                self.record_disagree(w, now);
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
            .map(|(w, e)| ReputationEntry {
                worker: w.clone(),
                record: e.clone(),
            })
            .collect();
        out.sort_by(|a, b| {
            (b.record.score)
                .cmp(&a.record.score)
                .then_with(|| a.worker.cmp(&b.worker))
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `store` fuzz target: trust records read back with a
    /// lowest score above the highest made `i32::clamp` panic on the next vote.
    #[test]
    fn a_lowest_score_above_the_highest_does_not_panic() {
        let config = ReputationConfig {
            min: 64_536,
            max: 1000,
            ..ReputationConfig::default()
        };
        assert!(!config.is_usable());
        assert!(ReputationConfig::default().is_usable());
        let bytes = rmp_serde::to_vec_named(&Reputation::<u32>::new(config)).unwrap();
        let mut table: Reputation<u32> = rmp_serde::from_slice(&bytes).unwrap();
        table.record_agree(&1, 5);
        table.record_disagree(&2, 6);
        table.record_spot_check(&1, true, 7);
        assert_eq!(table.score(&1), 1000);
        assert_eq!(table.score(&2), 1000);
    }
}
