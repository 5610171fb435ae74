//! Sans-IO decision logic for jobs: replication policy, per-task quorum
//! verification, worker reputation and placement.
//!
//! Nothing here sends a message or reads a clock. The coordinator (a later
//! network layer, or a test) drives one [`TaskVerifier`] per task:
//!
//! 1. ask [`TaskVerifier::wanted_replicas`] how many new workers the task
//!    needs, pick each with [`choose_worker`] (excluding
//!    [`TaskVerifier::excluded`]) and report it with [`TaskVerifier::assign`];
//! 2. feed what comes back: [`TaskVerifier::handle_result`] for an outcome
//!    digest (a vote), [`TaskVerifier::handle_no_verdict`] for a machine
//!    dependent outcome (wall-clock timeout, host error),
//!    [`TaskVerifier::handle_lost`] for a disconnect, and
//!    [`TaskVerifier::handle_busy`] for a worker that refused; call
//!    [`TaskVerifier::handle_timeout`] when [`TaskVerifier::poll_timeout`] says
//!    so;
//! 3. once [`TaskVerifier::verdict`] is `Some`, apply it to the
//!    [`Reputation`] table with [`Reputation::apply`] and stop the task.
//!
//! The outcome digest is whatever the caller hashes: the SHA-256 of the
//! serialized reproducible outcome (output bytes, exit code, or a named trap or
//! limit error). A trap that a quorum agrees on is therefore an accepted task
//! error, not a node fault.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Debug;
use std::hash::Hash;

use serde::{Deserialize, Serialize};

use crate::ring::Time;
use crate::rng::Rng;

/// An outcome digest (SHA-256 of the reproducible outcome of one replica).
pub type Digest = [u8; 32];

/// Trait alias for worker identities: the node uses [`crate::RingPos`], tests
/// may use small integers.
pub trait WorkerId: Clone + Eq + Hash + Ord + Debug {}
impl<T: Clone + Eq + Hash + Ord + Debug> WorkerId for T {}

// ---------------------------------------------------------------------------
// Policy
// ---------------------------------------------------------------------------

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

impl Policy {
    /// A strict majority of `replicas` (`replicas / 2 + 1`).
    pub fn majority(replicas: u32) -> u32 {
        replicas / 2 + 1
    }

    /// A validated policy; `quorum` defaults to [`Policy::majority`] and
    /// `max_replicas` to `2 * replicas`.
    pub fn new(
        replicas: u32,
        quorum: Option<u32>,
        max_replicas: Option<u32>,
    ) -> Result<Policy, PolicyError> {
        let policy = Policy {
            replicas,
            quorum: quorum.unwrap_or_else(|| Policy::majority(replicas)),
            max_replicas: max_replicas.unwrap_or_else(|| replicas.saturating_mul(2)),
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

// ---------------------------------------------------------------------------
// TaskVerifier
// ---------------------------------------------------------------------------

/// Per-task tuning that is not part of the job's policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskConfig {
    /// A replica that has not answered this many ms after assignment is lost
    /// and its work re-sent elsewhere. Default 60 000.
    pub replica_timeout: Time,
    /// Upper bound on assignments for one task, counting lost and no-verdict
    /// ones, so that a task cannot bounce around the grid forever. Default
    /// `3 * max_replicas`.
    pub max_attempts: u32,
}

impl TaskConfig {
    /// The defaults for a policy.
    pub fn for_policy(policy: &Policy) -> TaskConfig {
        TaskConfig {
            replica_timeout: 60_000,
            max_attempts: policy.max_replicas.saturating_mul(3),
        }
    }
}

/// Where one replica of a task stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicaState {
    /// Assigned, no answer yet.
    Running,
    /// Returned an outcome with this digest: a vote.
    Voted(Digest),
    /// Returned a machine-dependent outcome (wall-clock timeout, host error):
    /// not a vote; the task runs again elsewhere.
    NoVerdict,
    /// Timed out or disconnected: the task runs again elsewhere.
    Lost,
    /// The worker said it was busy and did not run the task: the task goes
    /// elsewhere; this does not count against `max_attempts`.
    Busy,
}

/// One assignment of a task to a worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replica<W> {
    /// The worker.
    pub worker: W,
    /// When it was assigned.
    pub started: Time,
    /// Its state.
    pub state: ReplicaState,
}

/// Why a task failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailReason {
    /// `max_replicas` votes cannot reach `quorum` equal digests any more.
    NoQuorum,
    /// `max_attempts` assignments were spent (mostly on lost or no-verdict
    /// replicas) without a verdict.
    TooManyAttempts,
    /// The coordinator found no eligible worker ([`TaskVerifier::fail_no_workers`]).
    NoWorkers,
}

/// The final decision on a task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict<W> {
    /// `quorum` replicas returned `digest`.
    Accepted {
        /// The accepted outcome digest.
        digest: Digest,
        /// Workers that voted for `digest`, in assignment order.
        agreeing: Vec<W>,
        /// Workers that voted for another digest, in assignment order.
        disagreeing: Vec<W>,
    },
    /// No result could be accepted.
    Failed {
        /// Why.
        reason: FailReason,
        /// Every vote received: digests in order of first appearance, each with
        /// its voters in assignment order.
        votes: Vec<(Digest, Vec<W>)>,
    },
}

/// Why [`TaskVerifier::assign`] refused a worker.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AssignError {
    /// The worker already has (or had) a replica of this task.
    #[error("worker already ran a replica of this task")]
    AlreadyAssigned,
    /// The task wants no more replicas right now.
    #[error("the task wants no more replicas")]
    NotWanted,
    /// The task already has a verdict.
    #[error("the task already has a verdict")]
    Decided,
}

/// What [`TaskVerifier::handle_result`] did with a result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResultOutcome {
    /// Counted as a vote (possibly producing the verdict).
    Counted,
    /// Arrived from a running replica after the task was accepted; not part of
    /// the verdict, but tells whether it agrees, so the caller may credit or
    /// debit the worker's reputation.
    AfterVerdict {
        /// Whether the digest equals the accepted one.
        agrees: bool,
    },
    /// Ignored: the worker has no running replica of this task (never
    /// assigned, already answered, lost, or the task failed).
    Ignored,
}

/// Quorum verification of one task: which workers run it, what they answered,
/// and what to do next. See the [module docs](self) for the calling order.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaskVerifier<W> {
    policy: Policy,
    config: TaskConfig,
    replicas: Vec<Replica<W>>,
    verdict: Option<Verdict<W>>,
}

impl<W: WorkerId> TaskVerifier<W> {
    /// A task with no replicas yet. The policy is assumed valid
    /// ([`Policy::validate`]).
    pub fn new(policy: Policy, config: TaskConfig) -> Self {
        TaskVerifier {
            policy,
            config,
            replicas: Vec::new(),
            verdict: None,
        }
    }

    /// The task's policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Every assignment so far, in order.
    pub fn replicas(&self) -> &[Replica<W>] {
        &self.replicas
    }

    /// The verdict, once there is one.
    pub fn verdict(&self) -> Option<&Verdict<W>> {
        self.verdict.as_ref()
    }

    /// Whether the task has a verdict.
    pub fn is_done(&self) -> bool {
        self.verdict.is_some()
    }

    /// Workers that must not get this task again: everyone that ran (or is
    /// running) it. A worker that only said it was busy may be asked again
    /// later: it ran nothing, and on a small grid it may be the only one left.
    pub fn excluded(&self) -> HashSet<W> {
        self.replicas
            .iter()
            .filter(|r| r.state != ReplicaState::Busy)
            .map(|r| r.worker.clone())
            .collect()
    }

    /// Workers with a running replica (after a verdict, the ones the caller may
    /// cancel).
    pub fn running(&self) -> Vec<W> {
        self.replicas
            .iter()
            .filter(|r| r.state == ReplicaState::Running)
            .map(|r| r.worker.clone())
            .collect()
    }

    /// Every vote so far: digests in order of first appearance, each with its
    /// voters in assignment order.
    pub fn votes(&self) -> Vec<(Digest, Vec<W>)> {
        let mut out: Vec<(Digest, Vec<W>)> = Vec::new();
        for r in &self.replicas {
            if let ReplicaState::Voted(d) = r.state {
                match out.iter_mut().find(|(digest, _)| *digest == d) {
                    Some((_, voters)) => voters.push(r.worker.clone()),
                    None => out.push((d, vec![r.worker.clone()])),
                }
            }
        }
        out
    }

    /// Replicas that returned a vote.
    pub fn vote_count(&self) -> u32 {
        self.count(|s| matches!(s, ReplicaState::Voted(_)))
    }

    fn count(&self, f: impl Fn(&ReplicaState) -> bool) -> u32 {
        let n = self.replicas.iter().filter(|r| f(&r.state)).count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    fn best_count(&self) -> u32 {
        self.votes()
            .iter()
            .map(|(_, v)| u32::try_from(v.len()).unwrap_or(u32::MAX))
            .max()
            .unwrap_or(0)
    }

    /// Assignments that count against `max_attempts` (all but busy refusals).
    fn attempts(&self) -> u32 {
        self.count(|s| *s != ReplicaState::Busy)
    }

    /// Vote-capable replicas wanted in total (voted + running), ignoring the
    /// attempt cap.
    fn wanted_ignoring_attempts(&self) -> u32 {
        if self.verdict.is_some() {
            return 0;
        }
        let votes = self.vote_count();
        let running = self.count(|s| *s == ReplicaState::Running);
        let need = self.policy.quorum.saturating_sub(self.best_count());
        let target = self
            .policy
            .replicas
            .max(votes.saturating_add(need))
            .min(self.policy.max_replicas);
        target.saturating_sub(votes.saturating_add(running))
    }

    /// How many new workers the task needs now: the first `replicas`, one more
    /// per missing vote after a disagreement (up to `max_replicas`), and one
    /// per lost or no-verdict replica. 0 once there is a verdict.
    pub fn wanted_replicas(&self) -> usize {
        let left = self.config.max_attempts.saturating_sub(self.attempts());
        self.wanted_ignoring_attempts().min(left) as usize
    }

    /// Records that `worker` now runs a replica of this task.
    pub fn assign(&mut self, now: Time, worker: W) -> Result<(), AssignError> {
        if self.verdict.is_some() {
            return Err(AssignError::Decided);
        }
        if self
            .replicas
            .iter()
            .any(|r| r.worker == worker && r.state != ReplicaState::Busy)
        {
            return Err(AssignError::AlreadyAssigned);
        }
        if self.wanted_replicas() == 0 {
            return Err(AssignError::NotWanted);
        }
        self.replicas.push(Replica {
            worker,
            started: now,
            state: ReplicaState::Running,
        });
        Ok(())
    }

    fn running_mut(&mut self, worker: &W) -> Option<&mut Replica<W>> {
        self.replicas
            .iter_mut()
            .find(|r| r.worker == *worker && r.state == ReplicaState::Running)
    }

    /// A replica returned an outcome with `digest`: a vote.
    pub fn handle_result(&mut self, _now: Time, worker: &W, digest: Digest) -> ResultOutcome {
        let accepted = match &self.verdict {
            None => None,
            Some(Verdict::Accepted { digest, .. }) => Some(*digest),
            Some(Verdict::Failed { .. }) => return ResultOutcome::Ignored,
        };
        let Some(replica) = self.running_mut(worker) else {
            return ResultOutcome::Ignored;
        };
        replica.state = ReplicaState::Voted(digest);
        match accepted {
            Some(d) => ResultOutcome::AfterVerdict {
                agrees: d == digest,
            },
            None => {
                self.evaluate();
                ResultOutcome::Counted
            }
        }
    }

    /// A replica returned a machine-dependent outcome (wall-clock timeout,
    /// host error): not a vote; the task will be wanted elsewhere. Returns
    /// whether the worker had a running replica.
    pub fn handle_no_verdict(&mut self, _now: Time, worker: &W) -> bool {
        self.end_replica(worker, ReplicaState::NoVerdict)
    }

    /// A worker disconnected or its request failed: the task will be wanted
    /// elsewhere. Returns whether the worker had a running replica.
    pub fn handle_lost(&mut self, _now: Time, worker: &W) -> bool {
        self.end_replica(worker, ReplicaState::Lost)
    }

    /// A worker refused the task because it is busy: the task will be wanted
    /// again (elsewhere, or later from the same worker), and the refusal
    /// costs no attempt. Returns whether the worker had a running replica.
    pub fn handle_busy(&mut self, _now: Time, worker: &W) -> bool {
        self.end_replica(worker, ReplicaState::Busy)
    }

    fn end_replica(&mut self, worker: &W, state: ReplicaState) -> bool {
        let Some(replica) = self.running_mut(worker) else {
            return false;
        };
        replica.state = state;
        self.evaluate();
        true
    }

    /// When the next running replica times out, if any is running.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.replicas
            .iter()
            .filter(|r| r.state == ReplicaState::Running)
            .map(|r| r.started.saturating_add(self.config.replica_timeout))
            .min()
    }

    /// Marks running replicas older than `replica_timeout` as lost and returns
    /// their workers (the caller may cancel them).
    pub fn handle_timeout(&mut self, now: Time) -> Vec<W> {
        let timeout = self.config.replica_timeout;
        let mut lost = Vec::new();
        for r in &mut self.replicas {
            if r.state == ReplicaState::Running && r.started.saturating_add(timeout) <= now {
                r.state = ReplicaState::Lost;
                lost.push(r.worker.clone());
            }
        }
        if !lost.is_empty() {
            self.evaluate();
        }
        lost
    }

    /// The coordinator found no eligible worker for a wanted replica and gives
    /// up: the task fails with [`FailReason::NoWorkers`] unless it already has
    /// a verdict. Whether to wait for new workers first is the caller's call.
    pub fn fail_no_workers(&mut self) {
        if self.verdict.is_none() {
            self.verdict = Some(Verdict::Failed {
                reason: FailReason::NoWorkers,
                votes: self.votes(),
            });
        }
    }

    fn evaluate(&mut self) {
        if self.verdict.is_some() {
            return;
        }
        let votes = self.votes();
        let quorum = self.policy.quorum as usize;
        if let Some((digest, agreeing)) = votes.iter().find(|(_, v)| v.len() >= quorum) {
            let disagreeing = votes
                .iter()
                .filter(|(d, _)| d != digest)
                .flat_map(|(_, v)| v.iter().cloned());
            let mut disagreeing: Vec<W> = disagreeing.collect();
            let order = |w: &W| self.replicas.iter().position(|r| r.worker == *w);
            disagreeing.sort_by_key(|w| order(w));
            self.verdict = Some(Verdict::Accepted {
                digest: *digest,
                agreeing: agreeing.clone(),
                disagreeing,
            });
            return;
        }
        let remaining = self.policy.max_replicas.saturating_sub(self.vote_count());
        if self.best_count().saturating_add(remaining) < self.policy.quorum {
            self.verdict = Some(Verdict::Failed {
                reason: FailReason::NoQuorum,
                votes,
            });
            return;
        }
        let running = self.count(|s| *s == ReplicaState::Running);
        if running == 0
            && self.wanted_ignoring_attempts() > 0
            && self.attempts() >= self.config.max_attempts
        {
            self.verdict = Some(Verdict::Failed {
                reason: FailReason::TooManyAttempts,
                votes,
            });
        }
    }
}

// ---------------------------------------------------------------------------
// Reputation
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// Placement
// ---------------------------------------------------------------------------

/// A worker the coordinator could send a replica to, from its capacity record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate<W> {
    /// The worker.
    pub id: W,
    /// Free task slots it announced; 0 means busy (ineligible).
    pub free_slots: u32,
    /// Its measured speed, wasm fuel per second.
    pub fuel_per_sec: u64,
    /// Its reputation score ([`Reputation::score`]).
    pub reputation: i32,
}

impl<W> Candidate<W> {
    fn rank(&self) -> (u32, u64, i32) {
        (self.free_slots, self.fuel_per_sec, self.reputation)
    }
}

/// Power of two choices (as in Sparrow): samples two distinct eligible
/// candidates at random and returns the better one by free slots, then speed,
/// then reputation (the first sampled on a full tie). Eligible means not in
/// `exclude` and `free_slots > 0`. `None` when nobody is eligible.
pub fn choose_worker<W: WorkerId>(
    candidates: &[Candidate<W>],
    exclude: &HashSet<W>,
    rng: &mut Rng,
) -> Option<W> {
    let eligible: Vec<&Candidate<W>> = candidates
        .iter()
        .filter(|c| c.free_slots > 0 && !exclude.contains(&c.id))
        .collect();
    let n = eligible.len() as u64;
    let i = rng.below(n);
    let first = *eligible.get(usize::try_from(i).ok()?)?;
    if n == 1 {
        return Some(first.id.clone());
    }
    // A second index uniform over the others.
    let mut j = rng.below(n - 1);
    if j >= i {
        j += 1;
    }
    let second = *eligible.get(usize::try_from(j).ok()?)?;
    let best = if second.rank() > first.rank() {
        second
    } else {
        first
    };
    Some(best.id.clone())
}

/// Up to `count` distinct workers by repeated [`choose_worker`], none in
/// `exclude`. Fewer when the eligible candidates run out.
pub fn choose_workers<W: WorkerId>(
    candidates: &[Candidate<W>],
    exclude: &HashSet<W>,
    count: usize,
    rng: &mut Rng,
) -> Vec<W> {
    let mut exclude = exclude.clone();
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let Some(w) = choose_worker(candidates, &exclude, rng) else {
            break;
        };
        exclude.insert(w.clone());
        out.push(w);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(x: u8) -> Digest {
        [x; 32]
    }

    fn verifier(replicas: u32, quorum: u32, max: u32) -> TaskVerifier<u32> {
        let p = Policy::new(replicas, Some(quorum), Some(max)).unwrap();
        TaskVerifier::new(p, TaskConfig::for_policy(&p))
    }

    fn cand(id: u32, free: u32, speed: u64, rep: i32) -> Candidate<u32> {
        Candidate {
            id,
            free_slots: free,
            fuel_per_sec: speed,
            reputation: rep,
        }
    }

    #[test]
    fn policy_defaults_and_validation() {
        let p = Policy::new(3, None, None).unwrap();
        assert_eq!((p.replicas, p.quorum, p.max_replicas), (3, 2, 6));
        assert_eq!(Policy::new(2, None, None).unwrap().quorum, 2);
        assert_eq!(Policy::new(1, None, None).unwrap().quorum, 1);
        assert_eq!(Policy::new(4, None, None).unwrap().quorum, 3);
        assert_eq!(Policy::default(), Policy::new(2, None, None).unwrap());
        assert_eq!(Policy::new(0, None, None), Err(PolicyError::ZeroReplicas));
        assert_eq!(Policy::new(3, Some(0), None), Err(PolicyError::ZeroQuorum));
        assert_eq!(
            Policy::new(2, Some(3), None),
            Err(PolicyError::QuorumAboveReplicas {
                quorum: 3,
                replicas: 2
            })
        );
        assert_eq!(
            Policy::new(3, None, Some(2)),
            Err(PolicyError::MaxBelowReplicas {
                max_replicas: 2,
                replicas: 3
            })
        );
        assert_eq!(
            p.check_workers(2),
            Err(PolicyError::NotEnoughWorkers {
                replicas: 3,
                live: 2
            })
        );
        assert_eq!(p.check_workers(3), Ok(()));
        // Errors print something a human can act on.
        let msg = PolicyError::QuorumAboveReplicas {
            quorum: 3,
            replicas: 2,
        }
        .to_string();
        assert!(
            msg.contains("quorum 3") && msg.contains("replicas 2"),
            "{msg}"
        );
    }

    #[test]
    fn unanimous_agreement() {
        let mut t = verifier(3, 2, 6);
        assert_eq!(t.wanted_replicas(), 3);
        for w in [1, 2, 3] {
            t.assign(0, w).unwrap();
        }
        assert_eq!(t.wanted_replicas(), 0);
        assert_eq!(t.assign(0, 4), Err(AssignError::NotWanted));
        assert_eq!(t.handle_result(5, &1, d(7)), ResultOutcome::Counted);
        assert!(!t.is_done());
        assert_eq!(t.handle_result(6, &2, d(7)), ResultOutcome::Counted);
        assert_eq!(
            t.verdict(),
            Some(&Verdict::Accepted {
                digest: d(7),
                agreeing: vec![1, 2],
                disagreeing: vec![],
            })
        );
        assert_eq!(t.running(), vec![3]);
        assert_eq!(t.wanted_replicas(), 0);
        assert_eq!(
            t.handle_result(7, &3, d(7)),
            ResultOutcome::AfterVerdict { agrees: true }
        );
        assert_eq!(t.assign(8, 9), Err(AssignError::Decided));
        // Replicas 1, quorum 1: one vote decides.
        let mut one = verifier(1, 1, 2);
        one.assign(0, 1).unwrap();
        one.handle_result(1, &1, d(1));
        assert!(matches!(one.verdict(), Some(Verdict::Accepted { .. })));
    }

    #[test]
    fn one_liar_among_three_is_disagreeing() {
        let mut t = verifier(3, 2, 6);
        for w in [1, 2, 3] {
            t.assign(0, w).unwrap();
        }
        t.handle_result(1, &2, d(66)); // the liar answers first
        t.handle_result(2, &1, d(7));
        assert!(!t.is_done());
        assert_eq!(t.wanted_replicas(), 0, "the third replica is still running");
        t.handle_result(3, &3, d(7));
        assert_eq!(
            t.verdict(),
            Some(&Verdict::Accepted {
                digest: d(7),
                agreeing: vec![1, 3],
                disagreeing: vec![2],
            })
        );
    }

    #[test]
    fn disagreement_with_two_replicas_sends_a_third() {
        let mut t = verifier(2, 2, 4);
        t.assign(0, 1).unwrap();
        t.assign(0, 2).unwrap();
        t.handle_result(1, &1, d(1));
        t.handle_result(1, &2, d(2));
        assert!(!t.is_done());
        assert_eq!(t.wanted_replicas(), 1);
        assert_eq!(t.assign(2, 1), Err(AssignError::AlreadyAssigned));
        t.assign(2, 3).unwrap();
        assert_eq!(t.wanted_replicas(), 0);
        t.handle_result(3, &3, d(2));
        assert_eq!(
            t.verdict(),
            Some(&Verdict::Accepted {
                digest: d(2),
                agreeing: vec![2, 3],
                disagreeing: vec![1],
            })
        );
    }

    #[test]
    fn all_distinct_until_max_replicas_fails() {
        let mut t = verifier(2, 2, 4);
        let mut next = 0;
        while t.wanted_replicas() > 0 {
            next += 1;
            t.assign(next.into(), next).unwrap();
            t.handle_result(next.into(), &next, d(next as u8));
        }
        assert_eq!(next, 4, "exactly max_replicas ran");
        match t.verdict() {
            Some(Verdict::Failed { reason, votes }) => {
                assert_eq!(*reason, FailReason::NoQuorum);
                assert_eq!(votes.len(), 4);
            }
            v => panic!("expected failure, got {v:?}"),
        }
        // A failed task ignores further results and changes no reputation.
        assert_eq!(t.handle_result(9, &1, d(1)), ResultOutcome::Ignored);
        let mut rep = Reputation::default();
        rep.apply(t.verdict().unwrap());
        assert!(rep.snapshot().is_empty());
    }

    #[test]
    fn hopeless_quorum_fails_early() {
        // replicas 3, quorum 3, max 4: after two distinct votes no digest can
        // reach 3 within 4 votes.
        let mut t = verifier(3, 3, 4);
        for w in [1, 2, 3] {
            t.assign(0, w).unwrap();
        }
        t.handle_result(1, &1, d(1));
        assert!(!t.is_done());
        t.handle_result(1, &2, d(2));
        assert!(!t.is_done(), "1 + 2 remaining can still reach 3");
        t.handle_result(1, &3, d(3));
        assert!(matches!(
            t.verdict(),
            Some(Verdict::Failed {
                reason: FailReason::NoQuorum,
                ..
            })
        ));
    }

    #[test]
    fn lost_worker_is_resent_to_a_different_worker() {
        let mut t = verifier(2, 2, 4);
        let cands: Vec<_> = (1..=5).map(|i| cand(i, 2, 100, 0)).collect();
        let mut rng = Rng::new(11);
        for w in choose_workers(&cands, &t.excluded(), t.wanted_replicas(), &mut rng) {
            t.assign(0, w).unwrap();
        }
        let first = t.running();
        assert_eq!(first.len(), 2);
        assert!(t.handle_lost(10, &first[0]));
        assert!(!t.handle_lost(10, &first[0]), "already lost");
        assert_eq!(t.wanted_replicas(), 1);
        let excluded = t.excluded();
        assert!(excluded.contains(&first[0]));
        let again = choose_worker(&cands, &excluded, &mut rng).unwrap();
        assert!(!first.contains(&again));
        t.assign(11, again).unwrap();
        assert_eq!(t.assign(12, first[0]), Err(AssignError::AlreadyAssigned));
        // A late result from the lost worker is not a vote.
        assert_eq!(t.handle_result(13, &first[0], d(1)), ResultOutcome::Ignored);
        t.handle_result(14, &first[1], d(1));
        t.handle_result(15, &again, d(1));
        assert_eq!(
            t.verdict(),
            Some(&Verdict::Accepted {
                digest: d(1),
                agreeing: vec![first[1], again],
                disagreeing: vec![],
            })
        );
    }

    #[test]
    fn timeouts_mark_replicas_lost() {
        let p = Policy::new(2, None, None).unwrap();
        let cfg = TaskConfig {
            replica_timeout: 100,
            max_attempts: 12,
        };
        let mut t: TaskVerifier<u32> = TaskVerifier::new(p, cfg);
        assert_eq!(t.poll_timeout(), None);
        t.assign(0, 1).unwrap();
        t.assign(50, 2).unwrap();
        assert_eq!(t.poll_timeout(), Some(100));
        assert!(t.handle_timeout(99).is_empty());
        assert_eq!(t.handle_timeout(100), vec![1]);
        assert_eq!(t.poll_timeout(), Some(150));
        assert_eq!(t.wanted_replicas(), 1);
        assert_eq!(t.handle_timeout(200), vec![2]);
        assert_eq!(t.wanted_replicas(), 2);
        assert_eq!(t.poll_timeout(), None);
    }

    #[test]
    fn no_verdict_is_not_a_vote() {
        let mut t = verifier(2, 2, 4);
        t.assign(0, 1).unwrap();
        t.assign(0, 2).unwrap();
        t.handle_result(1, &1, d(9));
        assert!(t.handle_no_verdict(2, &2));
        assert_eq!(t.vote_count(), 1);
        assert!(!t.is_done());
        assert_eq!(t.wanted_replicas(), 1, "re-sent elsewhere");
        assert!(t.votes().iter().all(|(_, v)| !v.contains(&2)));
        t.assign(3, 3).unwrap();
        t.handle_result(4, &3, d(9));
        assert_eq!(
            t.verdict(),
            Some(&Verdict::Accepted {
                digest: d(9),
                agreeing: vec![1, 3],
                disagreeing: vec![],
            })
        );
        assert_eq!(t.replicas()[1].state, ReplicaState::NoVerdict);
    }

    #[test]
    fn busy_refusal_goes_elsewhere_without_costing_an_attempt() {
        let p = Policy::new(1, None, Some(1)).unwrap();
        let cfg = TaskConfig {
            replica_timeout: 10,
            max_attempts: 1,
        };
        let mut t: TaskVerifier<u32> = TaskVerifier::new(p, cfg);
        for w in 1..=3 {
            t.assign(0, w).unwrap();
            assert!(t.handle_busy(1, &w));
            assert!(!t.is_done());
            assert_eq!(t.wanted_replicas(), 1);
        }
        // A busy worker ran nothing: it may be asked again later.
        assert!(!t.excluded().contains(&2));
        t.assign(2, 2).unwrap();
        assert_eq!(t.assign(2, 2), Err(AssignError::AlreadyAssigned));
        assert!(t.handle_busy(2, &2));
        t.assign(2, 4).unwrap();
        assert_eq!(t.handle_result(3, &4, d(4)), ResultOutcome::Counted);
        assert_eq!(
            t.verdict(),
            Some(&Verdict::Accepted {
                digest: d(4),
                agreeing: vec![4],
                disagreeing: vec![],
            })
        );
    }

    #[test]
    fn endless_losses_stop_at_max_attempts() {
        let p = Policy::new(2, None, Some(2)).unwrap();
        let cfg = TaskConfig {
            replica_timeout: 10,
            max_attempts: 5,
        };
        let mut t: TaskVerifier<u32> = TaskVerifier::new(p, cfg);
        let mut w = 0;
        while t.wanted_replicas() > 0 {
            w += 1;
            t.assign(0, w).unwrap();
            t.handle_no_verdict(1, &w);
        }
        assert_eq!(w, 5);
        assert!(matches!(
            t.verdict(),
            Some(Verdict::Failed {
                reason: FailReason::TooManyAttempts,
                ..
            })
        ));
        let mut u = verifier(2, 2, 4);
        u.fail_no_workers();
        assert!(matches!(
            u.verdict(),
            Some(Verdict::Failed {
                reason: FailReason::NoWorkers,
                ..
            })
        ));
    }

    #[test]
    fn reputation_is_bounded_and_losses_cost_more() {
        let mut r: Reputation<u32> = Reputation::new(ReputationConfig {
            initial: 0,
            gain: 1,
            loss: 10,
            min: -20,
            max: 5,
        });
        assert_eq!(r.score(&1), 0);
        for _ in 0..100 {
            r.record_agree(&1);
            r.record_disagree(&2);
        }
        assert_eq!(r.score(&1), 5);
        assert_eq!(r.score(&2), -20);
        r.record_agree(&3);
        r.record_disagree(&3);
        assert_eq!(r.score(&3), -9);
        let snap = r.snapshot();
        assert_eq!(
            snap.iter().map(|e| (e.worker, e.score)).collect::<Vec<_>>(),
            vec![(1, 5), (3, -9), (2, -20)]
        );
        assert_eq!((snap[0].agreed, snap[0].disagreed), (100, 0));
        r.forget(&2);
        assert_eq!(r.snapshot().len(), 2);
    }

    /// Many tasks over 6 workers, replicas 3, quorum 2, one liar, placed by
    /// power of two choices and answering in random order.
    #[test]
    fn liar_is_caught_and_ranks_last() {
        for seed in 0..5u64 {
            let mut rng = Rng::new(seed);
            let liar = 4u32;
            let workers: Vec<u32> = (1..=6).collect();
            let mut rep: Reputation<u32> = Reputation::default();
            let policy = Policy::new(3, Some(2), None).unwrap();
            let mut caught = 0;
            for task in 0..300u32 {
                let mut t = TaskVerifier::new(policy, TaskConfig::for_policy(&policy));
                let truth = d((task % 200) as u8);
                let mut steps = 0;
                while !t.is_done() {
                    steps += 1;
                    assert!(steps < 100, "seed {seed} task {task} stuck");
                    let cands: Vec<_> = workers
                        .iter()
                        .map(|&w| cand(w, 1 + rng.below(3) as u32, 1000, rep.score(&w)))
                        .collect();
                    let chosen =
                        choose_workers(&cands, &t.excluded(), t.wanted_replicas(), &mut rng);
                    for w in chosen {
                        t.assign(task.into(), w).unwrap();
                    }
                    let running = t.running();
                    let w = running[rng.below(running.len() as u64) as usize];
                    let mut answer = truth;
                    if w == liar {
                        answer[0] ^= 0xff;
                    }
                    t.handle_result(task.into(), &w, answer);
                }
                let v = t.verdict().unwrap();
                match v {
                    Verdict::Accepted {
                        digest,
                        agreeing,
                        disagreeing,
                    } => {
                        assert_eq!(*digest, truth, "seed {seed} task {task}");
                        assert!(!agreeing.contains(&liar));
                        assert!(disagreeing.iter().all(|&w| w == liar));
                        if disagreeing.contains(&liar) {
                            caught += 1;
                        }
                        let mut all: Vec<u32> =
                            agreeing.iter().chain(disagreeing).copied().collect();
                        all.sort();
                        all.dedup();
                        assert_eq!(all.len(), agreeing.len() + disagreeing.len());
                    }
                    Verdict::Failed { .. } => panic!("seed {seed} task {task} failed"),
                }
                rep.apply(v);
            }
            assert!(caught > 10, "seed {seed}: liar caught only {caught} times");
            let liar_score = rep.score(&liar);
            for w in workers.iter().filter(|&&w| w != liar) {
                assert!(
                    rep.score(w) > liar_score,
                    "seed {seed}: {w} {} vs liar {liar_score}",
                    rep.score(w)
                );
            }
            assert_eq!(rep.snapshot().last().map(|e| e.worker), Some(liar));
        }
    }

    #[test]
    fn power_of_two_never_picks_excluded_or_busy() {
        let mut rng = Rng::new(3);
        let cands = vec![
            cand(1, 0, 9999, 100), // busy
            cand(2, 4, 10, 0),
            cand(3, 8, 10, 0), // excluded
            cand(4, 1, 10, 0),
            cand(5, 0, 9999, 100), // busy
        ];
        let exclude: HashSet<u32> = [3].into();
        for _ in 0..2000 {
            let w = choose_worker(&cands, &exclude, &mut rng).unwrap();
            assert!(w == 2 || w == 4, "picked {w}");
        }
        // Nobody eligible.
        let all: HashSet<u32> = [2, 3, 4].into();
        assert_eq!(choose_worker(&cands, &all, &mut rng), None);
        assert_eq!(choose_worker::<u32>(&[], &HashSet::new(), &mut rng), None);
        // A single eligible candidate is always chosen.
        let only: HashSet<u32> = [2, 3].into();
        assert_eq!(choose_worker(&cands, &only, &mut rng), Some(4));
        // choose_workers gives distinct workers and stops when they run out.
        let many = choose_workers(&cands, &HashSet::new(), 10, &mut rng);
        let mut sorted = many.clone();
        sorted.sort();
        assert_eq!(sorted, vec![2, 3, 4]);
    }

    #[test]
    fn power_of_two_prefers_free_slots_then_speed_then_reputation() {
        let mut rng = Rng::new(42);
        // 10 candidates with free slots 1..=10: two choices pick the better of
        // two, so high-slot workers dominate.
        let cands: Vec<_> = (1..=10).map(|i| cand(i, i, 100, 0)).collect();
        let mut hits = [0u32; 11];
        let n = 20_000;
        for _ in 0..n {
            let w = choose_worker(&cands, &HashSet::new(), &mut rng).unwrap();
            hits[w as usize] += 1;
        }
        // Expected share of rank k (1-based) among 10: (2k - 2) / 90.
        assert_eq!(hits[1], 0, "the worst can never win a pair");
        assert!(hits[10] > hits[5] && hits[5] > hits[2]);
        let top_half: u32 = hits[6..].iter().sum();
        assert!(top_half > n * 6 / 10, "top half got {top_half} of {n}");
        // Two eligible candidates: the better one always wins.
        let pair = vec![cand(1, 1, 1_000_000, 99), cand(2, 2, 1, -5)];
        for _ in 0..100 {
            assert_eq!(choose_worker(&pair, &HashSet::new(), &mut rng), Some(2));
        }
        // Equal slots: speed decides; equal speed: reputation decides.
        let speed = vec![cand(1, 3, 10, 50), cand(2, 3, 20, -50)];
        let rep = vec![cand(1, 3, 10, 5), cand(2, 3, 10, 6)];
        for _ in 0..100 {
            assert_eq!(choose_worker(&speed, &HashSet::new(), &mut rng), Some(2));
            assert_eq!(choose_worker(&rep, &HashSet::new(), &mut rng), Some(2));
        }
        // Same seed, same choices.
        let a: Vec<_> = {
            let mut r = Rng::new(9);
            (0..50)
                .map(|_| choose_worker(&cands, &HashSet::new(), &mut r))
                .collect()
        };
        let b: Vec<_> = {
            let mut r = Rng::new(9);
            (0..50)
                .map(|_| choose_worker(&cands, &HashSet::new(), &mut r))
                .collect()
        };
        assert_eq!(a, b);
    }

    #[test]
    fn verifier_state_serializes() {
        // The coordinator persists task state; serde must cover it.
        fn assert_serde<T: Serialize + for<'de> Deserialize<'de>>() {}
        assert_serde::<TaskVerifier<u32>>();
        assert_serde::<Reputation<u32>>();
        assert_serde::<Verdict<crate::RingPos>>();
    }
}
