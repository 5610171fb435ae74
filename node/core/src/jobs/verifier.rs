//! Quorum verification of one task ([`TaskVerifier`]): which workers run it,
//! what they answered, and what to do next.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::{Digest, Policy, WorkerId};
use crate::ring::Time;

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
    /// The submitter cancelled the job before the task was decided
    /// ([`TaskVerifier::cancel`]).
    Cancelled,
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

    /// Whether `worker` must not get this task again (see [`Self::excluded`]);
    /// no allocation, for placement's inner loop.
    pub fn is_excluded(&self, worker: &W) -> bool {
        self.replicas
            .iter()
            .any(|r| r.worker == *worker && r.state != ReplicaState::Busy)
    }

    /// Workers whose replica may still vote or has voted (running or voted):
    /// the ones replica diversity counts.
    pub fn holders(&self) -> impl Iterator<Item = &W> {
        self.replicas
            .iter()
            .filter(|r| matches!(r.state, ReplicaState::Running | ReplicaState::Voted(_)))
            .map(|r| &r.worker)
    }

    /// How many workers [`Self::excluded`] holds.
    pub fn excluded_count(&self) -> usize {
        self.replicas
            .iter()
            .filter(|r| r.state != ReplicaState::Busy)
            .count()
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

    /// How many replicas are running (no allocation).
    pub fn running_count(&self) -> usize {
        self.replicas
            .iter()
            .filter(|r| r.state == ReplicaState::Running)
            .count()
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
        if self.policy.is_adaptive() {
            // Room left: the job machine decides by credibility how much of
            // it to use.
            return self
                .policy
                .max_replicas
                .saturating_sub(votes.saturating_add(running));
        }
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

    /// The submitter cancelled the job: the task fails with
    /// [`FailReason::Cancelled`] unless it already has a verdict.
    pub fn cancel(&mut self) {
        if self.verdict.is_none() {
            self.verdict = Some(Verdict::Failed {
                reason: FailReason::Cancelled,
                votes: self.votes(),
            });
        }
    }

    /// A task judged again (adaptive verification): `votes` are the votes
    /// that still count, each as if just returned at `now`.
    pub fn from_votes(
        policy: Policy,
        config: TaskConfig,
        now: Time,
        votes: impl IntoIterator<Item = (W, Digest)>,
    ) -> Self {
        let mut v = TaskVerifier::new(policy, config);
        for (worker, digest) in votes {
            if v.replicas.iter().any(|r| r.worker == worker) {
                continue;
            }
            v.replicas.push(Replica {
                worker,
                started: now,
                state: ReplicaState::Voted(digest),
            });
        }
        v
    }

    /// Accepts `digest` (adaptive verification, where the job machine
    /// judges credibility): its voters agree, every other voter disagrees.
    /// Does nothing once there is a verdict or when nobody voted for it.
    pub fn accept(&mut self, digest: Digest) {
        if self.verdict.is_some() {
            return;
        }
        let mut agreeing = Vec::new();
        let mut disagreeing = Vec::new();
        for r in &self.replicas {
            if let ReplicaState::Voted(d) = r.state {
                if d == digest {
                    agreeing.push(r.worker.clone());
                } else {
                    disagreeing.push(r.worker.clone());
                }
            }
        }
        if agreeing.is_empty() {
            return;
        }
        self.verdict = Some(Verdict::Accepted {
            digest,
            agreeing,
            disagreeing,
        });
    }

    /// Fails the task with `reason` unless it has a verdict.
    pub fn fail(&mut self, reason: FailReason) {
        if self.verdict.is_none() {
            self.verdict = Some(Verdict::Failed {
                reason,
                votes: self.votes(),
            });
        }
    }

    /// Discards the vote of `worker` (proven a liar): it no longer counts,
    /// and the worker stays excluded from the task. Returns whether it had
    /// voted.
    pub fn discard_vote(&mut self, worker: &W) -> bool {
        let mut found = false;
        for r in &mut self.replicas {
            if r.worker == *worker && matches!(r.state, ReplicaState::Voted(_)) {
                r.state = ReplicaState::Lost;
                found = true;
            }
        }
        found
    }

    fn evaluate(&mut self) {
        if self.verdict.is_some() {
            return;
        }
        if self.policy.is_adaptive() {
            // Acceptance is by credibility, judged by the job machine; only
            // the attempt bound is the verifier's.
            let running = self.count(|s| *s == ReplicaState::Running);
            if running == 0 && self.vote_count() == 0 && self.attempts() >= self.config.max_attempts
            {
                self.verdict = Some(Verdict::Failed {
                    reason: FailReason::TooManyAttempts,
                    votes: self.votes(),
                });
            }
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
