//! The job state machine: one [`JobMachine`] per coordinated job.
//!
//! It holds what decides a job's results (one [`TaskVerifier`] per open task,
//! which tasks want workers, which batches are out) and nothing else: no
//! clock, no I/O, no metrics, no locks. The caller (the node's coordinator, or
//! the job simulator) owns all of those and drives it the way the ring actor
//! drives [`crate::RingNode`]:
//!
//! 1. feed events, each with the current time in ms:
//!    [`JobMachine::place`] with the workers it may use (capacity records with
//!    free slots and reputation) and a [`Placement`] policy;
//!    [`JobMachine::handle_batch_done`] with a batch's answers,
//!    [`JobMachine::handle_batch_busy`] when the worker refused it,
//!    [`JobMachine::handle_batch_lost`] when it failed or timed out (or its
//!    signature did not hold); [`JobMachine::handle_cancel`]; and
//!    [`JobMachine::handle_tick`] at [`JobMachine::poll_timeout`];
//! 2. drain [`JobMachine::poll_action`] after each event and perform what it
//!    says: send a batch, record a decision, apply a late vote to reputation,
//!    store and copy the job ([`Action::Checkpoint`]), report it done.
//!
//! A batch is identified by the [`BatchId`] the machine gave it: answers can
//! only speak for the tasks and the worker of that batch, so a worker cannot
//! vote on a task it was not given.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use super::trust::{Trust, group_error, worker_error};
use super::{
    Candidate, Digest, FailReason, Placement, Policy, ReplicaState, ResultOutcome, TaskConfig,
    TaskVerifier, Verdict, WorkerId,
};
use crate::ring::Time;
use crate::rng::Rng;

/// Most rejected results a machine remembers for its status.
pub const MAX_REJECTIONS_KEPT: usize = 1000;

/// Most accepted tasks a machine keeps as spot-check material.
pub const SPOT_POOL: usize = 4096;

/// Tuning of a [`JobMachine`] that is not part of the job's policy.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MachineConfig {
    /// Most tasks in one batch to one worker. Default 64.
    pub batch_tasks: usize,
    /// Workers at or below this reputation get no work while at least
    /// `replicas` others exist; `None` never distrusts. Default `Some(-50)`
    /// (five disagreements with nothing good in between).
    pub distrust_below: Option<i32>,
    /// A task for which every known worker is excluded fails after this
    /// many ms without a running replica. Default 10 000.
    pub no_worker_grace: Time,
    /// A replica with no answer this many ms after it was sent is lost.
    /// Default: never (the node's calls carry their own timeouts).
    pub replica_timeout: Time,
    /// At most one [`Action::Checkpoint`] per this many ms while tasks are
    /// being decided (and one when the job is done). Default 200.
    pub checkpoint_interval: Time,
    /// Replica diversity: no two replicas of one task that may vote (running
    /// or voted) stand in the same network ([`Candidate::network`]). A task
    /// that finds no worker in a network it does not use yet waits for one
    /// ([`JobMachine::waiting_for_networks`]) rather than relax the rule.
    /// Default on.
    #[serde(default = "yes")]
    pub diverse: bool,
    /// Adaptive verification: the assumed largest fraction of saboteurs
    /// among workers, the `f` of the credibility bound
    /// ([`super::trust`]). Default [`DEFAULT_ASSUMED_SABOTEURS`].
    #[serde(default = "default_assumed")]
    pub assumed_saboteurs: f64,
    /// Adaptive verification: the fraction of tasks that need two agreeing
    /// results even when one would meet the error target (the audit of
    /// single results). Default [`DEFAULT_AUDIT_RATE`].
    #[serde(default = "default_audit")]
    pub audit_rate: f64,
    /// Adaptive verification: the chance that a free slot of a worker not
    /// yet trusted with single results gets a spot check (a task whose
    /// result is already accepted) instead of fresh work. Default
    /// [`DEFAULT_SPOT_CHECK_RATE`].
    #[serde(default = "default_spot")]
    pub spot_check_rate: f64,
    /// Adaptive verification: most tasks of this job out at once on a
    /// worker not yet trusted with single results. Small, so that trust
    /// (and a liar's exposure) is learned a few tasks at a time rather than
    /// after a whole batch. Default [`DEFAULT_UNTRUSTED_TASKS`].
    #[serde(default = "default_untrusted")]
    pub untrusted_tasks: u32,
}

/// Default [`MachineConfig::untrusted_tasks`].
pub const DEFAULT_UNTRUSTED_TASKS: u32 = 4;

fn default_untrusted() -> u32 {
    DEFAULT_UNTRUSTED_TASKS
}

/// Default [`MachineConfig::assumed_saboteurs`].
pub const DEFAULT_ASSUMED_SABOTEURS: f64 = 0.05;
/// Default [`MachineConfig::audit_rate`].
pub const DEFAULT_AUDIT_RATE: f64 = 0.1;
/// Default [`MachineConfig::spot_check_rate`].
pub const DEFAULT_SPOT_CHECK_RATE: f64 = 0.1;

fn yes() -> bool {
    true
}

fn default_assumed() -> f64 {
    DEFAULT_ASSUMED_SABOTEURS
}

fn default_audit() -> f64 {
    DEFAULT_AUDIT_RATE
}

fn default_spot() -> f64 {
    DEFAULT_SPOT_CHECK_RATE
}

impl Default for MachineConfig {
    fn default() -> Self {
        MachineConfig {
            batch_tasks: 64,
            distrust_below: Some(-50),
            no_worker_grace: 10_000,
            replica_timeout: Time::MAX / 4,
            checkpoint_interval: 200,
            diverse: true,
            assumed_saboteurs: DEFAULT_ASSUMED_SABOTEURS,
            audit_rate: DEFAULT_AUDIT_RATE,
            spot_check_rate: DEFAULT_SPOT_CHECK_RATE,
            untrusted_tasks: DEFAULT_UNTRUSTED_TASKS,
        }
    }
}

/// A batch the machine asked to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BatchId(pub u64);

/// One task's answer in a returned batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer<P> {
    /// A reproducible outcome: a vote for `digest`. `payload` is what the
    /// caller wants back if this digest is accepted (the output bytes).
    Vote {
        /// The outcome digest.
        digest: Digest,
        /// The caller's data for that outcome.
        payload: P,
    },
    /// A machine-dependent outcome (wall-clock timeout, host error): no vote.
    NoVerdict,
}

/// How a replica ended, for the caller's metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ReplicaEnd {
    /// It returned a vote.
    Voted,
    /// It returned no verdict.
    NoVerdict,
    /// It was lost (error, timeout, missing from the answer, bad signature).
    Lost,
    /// The worker refused it as busy.
    Busy,
}

impl ReplicaEnd {
    /// A stable name for metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ReplicaEnd::Voted => "vote",
            ReplicaEnd::NoVerdict => "no_verdict",
            ReplicaEnd::Lost => "lost",
            ReplicaEnd::Busy => "busy",
        }
    }
}

/// A task's final decision.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision<W, P> {
    /// The task.
    pub task: u32,
    /// The verdict (accepted with its voters, or failed with the reason).
    pub verdict: Verdict<W>,
    /// The payload of the accepted digest (`None` when the task failed).
    pub accepted: Option<P>,
    /// Replicas that voted before the verdict.
    pub votes: u32,
    /// Adaptive verification: the credibility bound on the probability
    /// that the accepted result is wrong ([`super::trust::group_error`]).
    /// `None` for full verification and failed tasks.
    pub error: Option<f64>,
}

/// What the caller must do next.
#[derive(Clone, Debug, PartialEq)]
pub enum Action<W, P> {
    /// Send these tasks to this worker and report back with `batch`.
    SendBatch {
        /// The batch's id, for the answer.
        batch: BatchId,
        /// The worker.
        worker: W,
        /// Task indices.
        tasks: Vec<u32>,
    },
    /// Replicas of a batch ended this way (for metrics).
    ReplicasEnded {
        /// The worker.
        worker: W,
        /// How.
        end: ReplicaEnd,
        /// How many.
        count: u32,
    },
    /// A task is decided: record its result and apply the verdict to
    /// reputation.
    Decided(Decision<W, P>),
    /// A vote arrived after its task was accepted: credit or debit the
    /// worker's reputation.
    LateVote {
        /// The task.
        task: u32,
        /// The worker.
        worker: W,
        /// Whether it agrees with the accepted result.
        agrees: bool,
    },
    /// Adaptive verification: a decided task is open again (a worker that
    /// helped accept it was proven a liar, or a spot check disputed it):
    /// withdraw its result; a new [`Action::Decided`] follows. Its payload
    /// may be `None` if the same digest is accepted again: the caller keeps
    /// the withdrawn one.
    Reopened {
        /// The task.
        task: u32,
    },
    /// Adaptive verification: a worker answered a spot check. `passed`:
    /// it agreed with the accepted result (a check for its record); a
    /// failed one is settled like a disagreement, and its lie arrives with
    /// the task's new verdict.
    SpotChecked {
        /// The task re-issued.
        task: u32,
        /// The worker.
        worker: W,
        /// Whether its answer matched the accepted one.
        passed: bool,
    },
    /// Store the decisions made since the last checkpoint and copy them to
    /// the backups.
    Checkpoint,
    /// Every task is decided (emitted once).
    Done,
}

/// A decided task as restored from a snapshot (its result is the caller's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored<W> {
    /// The task.
    pub task: u32,
    /// Replicas that voted.
    pub votes: u32,
    /// Workers whose votes were rejected.
    pub disagreeing: Vec<W>,
    /// Workers whose votes accepted the result (adaptive verification
    /// judges it again without any of them later proven a liar).
    pub agreeing: Vec<W>,
    /// The accepted digest (`None` for a failed task).
    pub digest: Option<Digest>,
}

struct Slot<W, P> {
    verifier: TaskVerifier<W>,
    /// The first payload seen for each digest, until the task is decided.
    payloads: Vec<(Digest, P)>,
    /// When the task first found every known worker excluded.
    starving_since: Option<Time>,
    /// Adaptive verification: this task needs two agreeing results even
    /// if one would do (an audit).
    audit: bool,
    /// Adaptive verification: the error bound of the accepted result.
    error: Option<f64>,
}

impl<W: WorkerId, P> Slot<W, P> {
    fn new(policy: Policy, config: TaskConfig) -> Self {
        Slot {
            verifier: TaskVerifier::new(policy, config),
            payloads: Vec::new(),
            starving_since: None,
            audit: false,
            error: None,
        }
    }
}

struct Batch<W> {
    worker: W,
    tasks: Vec<u32>,
    /// Tasks of the batch that are spot checks (already accepted).
    spots: Vec<u32>,
}

/// What credibility says of an adaptive task now.
enum Judgement {
    /// Accept this digest, with this error bound.
    Accept(Digest, f64),
    /// Another replica is needed.
    More,
    /// Enough is running: wait for it.
    Hold,
    /// Nothing more may run and the target is not met.
    Fail(FailReason),
}

/// The error bound of `w`'s results by the trust this machine holds of it.
fn error_in<W: WorkerId>(trust: &HashMap<W, Trust>, w: &W, f: f64) -> f64 {
    worker_error(trust.get(w).copied().unwrap_or_default(), f)
}

/// Judges an adaptive task by credibility (see [`super::trust`]).
fn judge<W: WorkerId>(
    v: &TaskVerifier<W>,
    audit: bool,
    trust: &HashMap<W, Trust>,
    f: f64,
) -> Judgement {
    let policy = v.policy();
    let eps = policy.max_error;
    let get = |w: &W| trust.get(w).copied().unwrap_or_default();
    let err = |w: &W| error_in(trust, w, f);
    let mut digests = Vec::new();
    let mut errs: Vec<Vec<f64>> = Vec::new();
    for (d, voters) in v.votes() {
        let g: Vec<f64> = voters
            .iter()
            .filter(|w| !get(w).distrusted)
            .map(err)
            .collect();
        if !g.is_empty() {
            digests.push(d);
            errs.push(g);
        }
    }
    let mut best: Option<(usize, f64)> = None;
    for i in 0..errs.len() {
        let e = group_error(&errs, i);
        if best.is_none_or(|(_, b)| e < b) {
            best = Some((i, e));
        }
    }
    let enough = |n: usize| !audit || n >= 2;
    if let Some((i, e)) = best
        && e <= eps
        && enough(errs[i].len())
    {
        return Judgement::Accept(digests[i], e);
    }
    // Optimistic: every running replica joins the leader.
    let running: Vec<f64> = v
        .replicas()
        .iter()
        .filter(|r| r.state == ReplicaState::Running && !get(&r.worker).distrusted)
        .map(|r| err(&r.worker))
        .collect();
    if !running.is_empty() {
        let mut opt = errs.clone();
        let lead = match best {
            Some((i, _)) => {
                opt[i].extend(running);
                i
            }
            None => {
                opt.push(running);
                opt.len() - 1
            }
        };
        if group_error(&opt, lead) <= eps && enough(opt[lead].len()) {
            return Judgement::Hold;
        }
    }
    if v.wanted_replicas() > 0 {
        return Judgement::More;
    }
    if v.running_count() > 0 {
        return Judgement::Hold;
    }
    let used = v.vote_count() as usize + v.running_count();
    if used >= policy.max_replicas as usize {
        Judgement::Fail(FailReason::NoQuorum)
    } else {
        Judgement::Fail(FailReason::TooManyAttempts)
    }
}

/// The state machine of one job (see the [module docs](self)).
pub struct JobMachine<W, P> {
    policy: Policy,
    task_config: TaskConfig,
    config: MachineConfig,
    tasks: u32,
    /// Undecided tasks.
    open: BTreeSet<u32>,
    /// Undecided tasks that want more replicas now.
    wanting: BTreeSet<u32>,
    /// Tasks with replicas out or votes in (created on first assignment,
    /// dropped when decided and nothing runs).
    slots: HashMap<u32, Slot<W, P>>,
    batches: HashMap<BatchId, Batch<W>>,
    next_batch: u64,
    replicas_run: u64,
    disagreements: u64,
    rejected: Vec<(u32, W)>,
    cancelled: bool,
    finished_at: Option<Time>,
    undecided_since_checkpoint: bool,
    last_checkpoint: Option<Time>,
    rng: Rng,
    actions: VecDeque<Action<W, P>>,
    /// The network of each worker, as last placed on.
    networks: HashMap<W, u128>,
    /// Undecided tasks that want a replica and find workers only in networks
    /// they already use.
    waiting_networks: BTreeSet<u32>,
    /// Adaptive: the workers' trust as last placed on, with what this job
    /// learned since (checks passed, lies proven).
    trust: HashMap<W, Trust>,
    /// Adaptive: each accepted task's digest and the workers whose votes
    /// accepted it (to judge it again when one is proven a liar).
    accepted: HashMap<u32, (Digest, Vec<W>)>,
    /// Adaptive: the tasks each worker helped accept.
    accepted_by: HashMap<W, Vec<u32>>,
    /// Adaptive: accepted tasks to re-issue as spot checks (at most
    /// [`SPOT_POOL`], newest replacing at random).
    spot_pool: Vec<u32>,
    /// Adaptive: reopened tasks disputed by a spot check, with its worker.
    disputes: HashMap<u32, W>,
    spot_checks: u64,
    reopened: u64,
}

impl<W: WorkerId, P: Clone> JobMachine<W, P> {
    /// A job of `tasks` tasks, none decided. The policy is assumed valid.
    pub fn new(policy: Policy, tasks: u32, config: MachineConfig, seed: u64) -> Self {
        Self::restore(policy, tasks, config, seed, std::iter::empty(), false)
    }

    /// A job carried on from a snapshot: `decided` tasks are final (their
    /// votes and rejections are counted again), the rest open; a cancelled
    /// job has every open task cancelled.
    pub fn restore(
        policy: Policy,
        tasks: u32,
        config: MachineConfig,
        seed: u64,
        decided: impl IntoIterator<Item = Restored<W>>,
        cancelled: bool,
    ) -> Self {
        let mut task_config = TaskConfig::for_policy(&policy);
        task_config.replica_timeout = config.replica_timeout;
        let mut m = JobMachine {
            policy,
            task_config,
            config,
            tasks,
            open: (0..tasks).collect(),
            wanting: BTreeSet::new(),
            slots: HashMap::new(),
            batches: HashMap::new(),
            next_batch: 0,
            replicas_run: 0,
            disagreements: 0,
            rejected: Vec::new(),
            cancelled: false,
            networks: HashMap::new(),
            waiting_networks: BTreeSet::new(),
            finished_at: None,
            undecided_since_checkpoint: false,
            last_checkpoint: None,
            rng: Rng::new(seed),
            actions: VecDeque::new(),
            trust: HashMap::new(),
            accepted: HashMap::new(),
            accepted_by: HashMap::new(),
            spot_pool: Vec::new(),
            disputes: HashMap::new(),
            spot_checks: 0,
            reopened: 0,
        };
        let adaptive = m.policy.is_adaptive();
        for d in decided {
            if !m.open.remove(&d.task) {
                continue;
            }
            m.replicas_run += u64::from(d.votes);
            m.note_rejected(d.task, &d.disagreeing);
            if let (true, Some(digest)) = (adaptive, d.digest) {
                m.note_accepted(d.task, digest, d.agreeing);
            }
        }
        m.wanting = m.open.clone();
        if cancelled {
            m.handle_cancel(0);
        }
        if m.open.is_empty() {
            m.finished_at = Some(0);
        }
        m
    }

    /// The job's policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Tasks in the job.
    pub fn tasks(&self) -> u32 {
        self.tasks
    }

    /// Whether every task is decided.
    pub fn is_done(&self) -> bool {
        self.open.is_empty()
    }

    /// Whether every task is decided and no batch is out any more.
    pub fn is_finished(&self) -> bool {
        self.open.is_empty() && self.batches.is_empty()
    }

    /// When the last task was decided (0 for a job restored finished).
    pub fn finished_at(&self) -> Option<Time> {
        self.finished_at
    }

    /// Whether the submitter cancelled the job.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled
    }

    /// Undecided tasks with no replica running.
    pub fn pending(&self) -> u32 {
        self.open.len() as u32 - self.running()
    }

    /// Undecided tasks with at least one replica running.
    pub fn running(&self) -> u32 {
        let n = self
            .slots
            .iter()
            .filter(|(t, s)| self.open.contains(t) && s.verifier.running_count() > 0)
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Replicas that returned a vote, over all tasks (late ones included).
    pub fn replicas_run(&self) -> u64 {
        self.replicas_run
    }

    /// Undecided tasks waiting for a worker in a network they do not use yet
    /// (replica diversity): the grid has too few networks for the policy.
    pub fn waiting_for_networks(&self) -> usize {
        self.waiting_networks
            .iter()
            .filter(|t| self.open.contains(t))
            .count()
    }

    /// Votes that disagreed with an accepted result.
    pub fn disagreements(&self) -> u64 {
        self.disagreements
    }

    /// Spot checks answered (their votes are in [`Self::replicas_run`]).
    pub fn spot_checks(&self) -> u64 {
        self.spot_checks
    }

    /// Times a decided task was opened again.
    pub fn reopened(&self) -> u64 {
        self.reopened
    }

    /// The first [`MAX_REJECTIONS_KEPT`] rejected results: (task, worker).
    pub fn rejected(&self) -> &[(u32, W)] {
        &self.rejected
    }

    /// Batches sent and not answered.
    pub fn batches_out(&self) -> usize {
        self.batches.len()
    }

    /// The next action to perform, if any.
    pub fn poll_action(&mut self) -> Option<Action<W, P>> {
        self.actions.pop_front()
    }

    /// When [`Self::handle_tick`] has something to do (a replica times out, a
    /// checkpoint is due, a starving task may fail), if ever.
    pub fn poll_timeout(&self) -> Option<Time> {
        let mut next: Option<Time> = None;
        let mut at = |t: Time| next = Some(next.map_or(t, |n| n.min(t)));
        if self.undecided_since_checkpoint {
            at(self
                .last_checkpoint
                .map_or(0, |t| t.saturating_add(self.config.checkpoint_interval)));
        }
        for s in self.slots.values() {
            if let Some(t) = s.verifier.poll_timeout() {
                at(t);
            }
            if let Some(since) = s.starving_since {
                at(since.saturating_add(self.config.no_worker_grace));
            }
        }
        next
    }

    /// Time passes: replicas past their timeout are lost, a due checkpoint
    /// is emitted.
    pub fn handle_tick(&mut self, now: Time) {
        let timed_out: Vec<u32> = self
            .slots
            .iter()
            .filter(|(_, s)| s.verifier.poll_timeout().is_some_and(|t| t <= now))
            .map(|(t, _)| *t)
            .collect();
        let grace = self.config.no_worker_grace;
        let starved: Vec<u32> = self
            .slots
            .iter()
            .filter(|(_, s)| {
                !s.verifier.is_done()
                    && s.starving_since
                        .is_some_and(|since| since.saturating_add(grace) <= now)
            })
            .map(|(t, _)| *t)
            .collect();
        if self.policy.is_adaptive() {
            for t in starved {
                self.settle(t, now);
            }
        }
        for t in timed_out {
            if let Some(s) = self.slots.get_mut(&t) {
                let lost = s.verifier.handle_timeout(now);
                for worker in lost {
                    self.actions.push_back(Action::ReplicasEnded {
                        worker,
                        end: ReplicaEnd::Lost,
                        count: 1,
                    });
                }
            }
            self.settle(t, now);
        }
        self.maybe_checkpoint(now);
    }

    /// Places replicas of the tasks that want them on `candidates` (the
    /// workers known now, with their free slots and reputation), by
    /// `placement`, lowest task first, at most `batch_tasks` per worker; emits
    /// one [`Action::SendBatch`] per worker chosen. A task for which every
    /// known worker is excluded fails after `no_worker_grace`.
    pub fn place(
        &mut self,
        now: Time,
        mut candidates: Vec<Candidate<W>>,
        placement: &mut dyn Placement<W>,
    ) {
        let adaptive = self.policy.is_adaptive();
        if adaptive {
            self.refresh_trust(now, &candidates);
        }
        if self.open.is_empty() || self.wanting.is_empty() {
            return;
        }
        let known: Vec<W> = candidates.iter().map(|c| c.id.clone()).collect();
        for c in &candidates {
            self.networks.insert(c.id.clone(), c.network);
        }
        if let Some(floor) = self.config.distrust_below {
            let trusted = candidates.iter().filter(|c| c.reputation > floor).count();
            if trusted >= self.policy.replicas as usize {
                candidates.retain(|c| c.reputation > floor);
            }
        }
        if adaptive {
            // Proven liars get no work while enough other workers are known
            // (over every placement so far: a caller may offer only the
            // workers with free slots).
            let trust = &self.trust;
            let others = trust.values().filter(|t| !t.distrusted).count();
            if others >= self.policy.replicas as usize {
                candidates.retain(|c| !trust.get(&c.id).is_some_and(|t| t.distrusted));
            }
        }
        // Adaptive: workers not yet trusted alone start few tasks at a time,
        // counting those they answered that still wait for company: new
        // work waits until their earlier answers are judged. They may
        // always join a task already under way (so that waiting tasks get
        // their company).
        let untrusted: HashSet<W> = if adaptive {
            let f = self.config.assumed_saboteurs;
            let eps = self.policy.max_error;
            candidates
                .iter()
                .filter(|c| error_in(&self.trust, &c.id, f) > eps)
                .map(|c| c.id.clone())
                .collect()
        } else {
            HashSet::new()
        };
        let mut unsettled: HashMap<W, u32> = HashMap::new();
        if adaptive {
            for b in self.batches.values() {
                if untrusted.contains(&b.worker) {
                    *unsettled.entry(b.worker.clone()).or_default() += b.spots.len() as u32;
                }
            }
            for s in self.slots.values() {
                if s.verifier.is_done() {
                    continue;
                }
                for r in s.verifier.replicas() {
                    if untrusted.contains(&r.worker)
                        && matches!(r.state, ReplicaState::Running | ReplicaState::Voted(_))
                    {
                        *unsettled.entry(r.worker.clone()).or_default() += 1;
                    }
                }
            }
        }
        let cap = self.config.untrusted_tasks;
        let batch_cap = self.config.batch_tasks.max(1);
        let mut pool: Vec<usize> = (0..candidates.len())
            .filter(|&i| candidates[i].free_slots > 0)
            .collect();
        let mut per_worker: HashMap<usize, Vec<u32>> = HashMap::new();
        let mut spots: HashMap<usize, Vec<u32>> = HashMap::new();
        if adaptive {
            self.place_spot_checks(&mut candidates, &mut pool, &mut per_worker, &mut spots);
        }
        let f = self.config.assumed_saboteurs;
        // Tasks under way first (they wait for company), then fresh ones,
        // lowest first, while some worker of the pool may start one: a
        // pool of capped strangers must not walk every open task.
        let mut under_way: Vec<u32> = self
            .slots
            .iter()
            .filter(|(t, s)| self.wanting.contains(t) && !s.verifier.replicas().is_empty())
            .map(|(t, _)| *t)
            .collect();
        under_way.sort_unstable();
        let mut next_under_way = 0usize;
        let mut cursor = 0u32;
        let mut touched = Vec::new();
        while !pool.is_empty() {
            let t = if let Some(&t) = under_way.get(next_under_way) {
                next_under_way += 1;
                t
            } else {
                let may_start =
                    |i: &usize| unsettled.get(&candidates[*i].id).is_none_or(|n| *n < cap);
                if adaptive && !pool.iter().any(may_start) {
                    break;
                }
                let Some(&t) = self
                    .wanting
                    .range(cursor..)
                    .find(|t| under_way.binary_search(t).is_err())
                else {
                    break;
                };
                cursor = t.saturating_add(1);
                t
            };
            if !self.slots.contains_key(&t) {
                let mut slot = Slot::new(self.policy, self.task_config);
                slot.audit = adaptive && self.rng.unit() < self.config.audit_rate;
                self.slots.insert(t, slot);
            }
            let Some(slot) = self.slots.get_mut(&t) else {
                continue;
            };
            let trust = &self.trust;
            let wants = |slot: &Slot<W, P>| {
                if adaptive {
                    usize::from(matches!(
                        judge(&slot.verifier, slot.audit, trust, f),
                        Judgement::More
                    ))
                } else {
                    slot.verifier.wanted_replicas()
                }
            };
            if adaptive && !matches!(judge(&slot.verifier, slot.audit, trust, f), Judgement::More) {
                // Credible now (or holding): settled at once, so that a liar
                // it proves gets nothing more in this round.
                self.settle(t, now);
                continue;
            }
            let mut wanted = wants(slot);
            let diverse = self.config.diverse;
            let networks = &self.networks;
            let mut used: HashSet<u128> = if diverse {
                slot.verifier
                    .holders()
                    .filter_map(|w| networks.get(w).copied())
                    .collect()
            } else {
                HashSet::new()
            };
            while wanted > 0 && !pool.is_empty() {
                let verifier = &slot.verifier;
                let used_now = &used;
                let trust = &self.trust;
                let fresh = verifier.replicas().is_empty();
                let unsettled_now = &unsettled;
                let chosen = placement.choose(
                    &candidates,
                    &pool,
                    &|w: &W| {
                        verifier.is_excluded(w)
                            || networks.get(w).is_some_and(|n| used_now.contains(n))
                            || (adaptive && trust.get(w).is_some_and(|t| t.distrusted))
                            || (fresh && unsettled_now.get(w).is_some_and(|n| *n >= cap))
                    },
                    &mut self.rng,
                );
                let Some(p) = chosen else { break };
                let i = pool[p];
                if slot.verifier.assign(now, candidates[i].id.clone()).is_err() {
                    break;
                }
                if diverse {
                    used.insert(candidates[i].network);
                }
                if untrusted.contains(&candidates[i].id) {
                    *unsettled.entry(candidates[i].id.clone()).or_default() += 1;
                }
                wanted = if adaptive { wants(slot) } else { wanted - 1 };
                slot.starving_since = None;
                let list = per_worker.entry(i).or_default();
                list.push(t);
                let c = &mut candidates[i];
                c.free_slots = c.free_slots.saturating_sub(1);
                if c.free_slots == 0 || list.len() >= batch_cap {
                    // Out of the pool (order does not matter to placement).
                    pool.swap_remove(p);
                }
            }
            // Waiting for another network: some known worker could run it
            // but every such worker stands in a network the task uses.
            let blocked_by_networks = wanted > 0
                && diverse
                && known.iter().any(|w| !slot.verifier.is_excluded(w))
                && known.iter().all(|w| {
                    slot.verifier.is_excluded(w)
                        || networks.get(w).is_some_and(|n| used.contains(n))
                });
            if blocked_by_networks {
                self.waiting_networks.insert(t);
            } else {
                self.waiting_networks.remove(&t);
            }
            if wanted > 0 && slot.verifier.running_count() == 0 && !blocked_by_networks {
                // Nobody outside the workers that already had it: it starves,
                // and after a grace period fails rather than hang. A task
                // that only waits for a busy worker does not starve.
                let verifier = &slot.verifier;
                let all_excluded = verifier.excluded_count() >= known.len()
                    && known.iter().all(|w| verifier.is_excluded(w));
                if all_excluded {
                    let since = *slot.starving_since.get_or_insert(now);
                    if now.saturating_sub(since) >= self.config.no_worker_grace {
                        slot.verifier.fail_no_workers();
                    }
                } else {
                    slot.starving_since = None;
                }
            }
            touched.push(t);
        }
        for t in touched {
            self.settle(t, now);
        }
        let mut sends: Vec<(usize, Vec<u32>)> = per_worker.into_iter().collect();
        sends.sort_unstable_by_key(|(i, _)| *i);
        for (i, mut tasks) in sends {
            let batch = BatchId(self.next_batch);
            self.next_batch += 1;
            let worker = candidates[i].id.clone();
            // Spot checks sit among the fresh tasks in index order.
            tasks.sort_unstable();
            self.batches.insert(
                batch,
                Batch {
                    worker: worker.clone(),
                    tasks: tasks.clone(),
                    spots: spots.remove(&i).unwrap_or_default(),
                },
            );
            self.actions.push_back(Action::SendBatch {
                batch,
                worker,
                tasks,
            });
        }
        self.maybe_checkpoint(now);
    }

    /// Takes the workers' trust from the candidates (the caller's records),
    /// keeping what this job proved: a worker distrusted here stays so, and
    /// one newly distrusted has its votes judged again.
    fn refresh_trust(&mut self, now: Time, candidates: &[Candidate<W>]) {
        let mut liars = Vec::new();
        for c in candidates {
            match self.trust.get_mut(&c.id) {
                Some(t) if t.distrusted => {}
                Some(t) => {
                    if c.trust.distrusted {
                        liars.push(c.id.clone());
                    } else {
                        t.checks = t.checks.max(c.trust.checks);
                    }
                }
                None => {
                    if c.trust.distrusted {
                        liars.push(c.id.clone());
                    } else {
                        self.trust.insert(c.id.clone(), c.trust);
                    }
                }
            }
        }
        for w in liars {
            self.distrust(&w, now);
        }
    }

    /// Gives workers not yet trusted with single results, each with chance
    /// `spot_check_rate`, one accepted task of this job to run again.
    fn place_spot_checks(
        &mut self,
        candidates: &mut [Candidate<W>],
        pool: &mut Vec<usize>,
        per_worker: &mut HashMap<usize, Vec<u32>>,
        spots: &mut HashMap<usize, Vec<u32>>,
    ) {
        let rate = self.config.spot_check_rate;
        if rate <= 0.0 || self.spot_pool.is_empty() {
            return;
        }
        let f = self.config.assumed_saboteurs;
        let eps = self.policy.max_error;
        let mut p = 0;
        while p < pool.len() {
            let i = pool[p];
            let id = &candidates[i].id;
            let trust = self.trust.get(id).copied().unwrap_or_default();
            if trust.distrusted || worker_error(trust, f) <= eps || self.rng.unit() >= rate {
                p += 1;
                continue;
            }
            let mut chosen = None;
            for _ in 0..4 {
                let t = self.spot_pool[self.rng.below(self.spot_pool.len() as u64) as usize];
                let fits = self
                    .accepted
                    .get(&t)
                    .is_some_and(|(_, voters)| !voters.contains(id))
                    && !self.disputes.contains_key(&t);
                if fits {
                    chosen = Some(t);
                    break;
                }
            }
            let Some(t) = chosen else {
                p += 1;
                continue;
            };
            per_worker.entry(i).or_default().push(t);
            spots.entry(i).or_default().push(t);
            let c = &mut candidates[i];
            c.free_slots = c.free_slots.saturating_sub(1);
            if c.free_slots == 0 {
                pool.swap_remove(p);
            } else {
                p += 1;
            }
        }
    }

    /// A batch came back with `answers` (by task index). Tasks of the batch
    /// missing from the answers are lost; answers for tasks not in the batch
    /// are ignored. Unknown batches are ignored.
    pub fn handle_batch_done(
        &mut self,
        now: Time,
        batch: BatchId,
        answers: impl IntoIterator<Item = (u32, Answer<P>)>,
    ) {
        let Some(Batch {
            worker,
            tasks,
            spots,
        }) = self.batches.remove(&batch)
        else {
            return;
        };
        let mut by_task: HashMap<u32, Answer<P>> = HashMap::new();
        for (t, a) in answers {
            by_task.entry(t).or_insert(a);
        }
        let (mut voted, mut no_verdict, mut lost) = (0u32, 0u32, 0u32);
        for t in tasks {
            if spots.contains(&t) {
                match by_task.remove(&t) {
                    Some(Answer::Vote { digest, payload }) => {
                        voted += 1;
                        self.spot_answer(now, t, &worker, digest, payload);
                    }
                    Some(Answer::NoVerdict) => no_verdict += 1,
                    None => lost += 1,
                }
                continue;
            }
            let Some(slot) = self.slots.get_mut(&t) else {
                continue;
            };
            match by_task.remove(&t) {
                Some(Answer::Vote { digest, payload }) => {
                    voted += 1;
                    match slot.verifier.handle_result(now, &worker, digest) {
                        ResultOutcome::Counted => {
                            self.replicas_run += 1;
                            if !slot.payloads.iter().any(|(d, _)| *d == digest) {
                                slot.payloads.push((digest, payload));
                            }
                        }
                        ResultOutcome::AfterVerdict { agrees } => {
                            self.replicas_run += 1;
                            if !agrees {
                                self.disagreements += 1;
                                if self.rejected.len() < MAX_REJECTIONS_KEPT {
                                    self.rejected.push((t, worker.clone()));
                                }
                            }
                            self.actions.push_back(Action::LateVote {
                                task: t,
                                worker: worker.clone(),
                                agrees,
                            });
                            if self.policy.is_adaptive() {
                                if agrees {
                                    self.credit(&worker);
                                } else {
                                    self.distrust(&worker, now);
                                }
                            }
                        }
                        ResultOutcome::Ignored => {}
                    }
                }
                Some(Answer::NoVerdict) => {
                    no_verdict += 1;
                    slot.verifier.handle_no_verdict(now, &worker);
                }
                None => {
                    lost += 1;
                    slot.verifier.handle_lost(now, &worker);
                }
            }
            self.settle(t, now);
        }
        for (end, count) in [
            (ReplicaEnd::Voted, voted),
            (ReplicaEnd::NoVerdict, no_verdict),
            (ReplicaEnd::Lost, lost),
        ] {
            if count > 0 {
                self.actions.push_back(Action::ReplicasEnded {
                    worker: worker.clone(),
                    end,
                    count,
                });
            }
        }
        self.maybe_checkpoint(now);
    }

    /// The worker refused the batch as busy: its tasks go elsewhere (or to
    /// it later), at no cost in attempts.
    pub fn handle_batch_busy(&mut self, now: Time, batch: BatchId) {
        self.end_batch(now, batch, ReplicaEnd::Busy);
    }

    /// The batch failed (connection error, timeout, an answer that does not
    /// verify): its replicas are lost and re-sent elsewhere.
    pub fn handle_batch_lost(&mut self, now: Time, batch: BatchId) {
        self.end_batch(now, batch, ReplicaEnd::Lost);
    }

    fn end_batch(&mut self, now: Time, batch: BatchId, end: ReplicaEnd) {
        let Some(Batch {
            worker,
            tasks,
            spots,
        }) = self.batches.remove(&batch)
        else {
            return;
        };
        let count = u32::try_from(tasks.len()).unwrap_or(u32::MAX);
        for t in tasks {
            if spots.contains(&t) {
                continue;
            }
            if let Some(slot) = self.slots.get_mut(&t) {
                if end == ReplicaEnd::Busy {
                    slot.verifier.handle_busy(now, &worker);
                } else {
                    slot.verifier.handle_lost(now, &worker);
                }
            }
            self.settle(t, now);
        }
        self.actions
            .push_back(Action::ReplicasEnded { worker, end, count });
        self.maybe_checkpoint(now);
    }

    /// The submitter cancelled the job: every undecided task fails with
    /// [`super::FailReason::Cancelled`]. Batches out stay out (their answers
    /// are ignored but still counted for reputation).
    pub fn handle_cancel(&mut self, now: Time) {
        if self.cancelled {
            return;
        }
        self.cancelled = true;
        let open: Vec<u32> = self.open.iter().copied().collect();
        for t in open {
            let (policy, task_config) = (self.policy, self.task_config);
            let slot = self
                .slots
                .entry(t)
                .or_insert_with(|| Slot::new(policy, task_config));
            slot.verifier.cancel();
            self.settle(t, now);
        }
        self.emit_checkpoint(now);
    }

    /// After any change to task `t`: decide it if its verifier has a verdict,
    /// keep the wanting set right, drop its slot once nothing runs.
    fn settle(&mut self, t: u32, now: Time) {
        let adaptive = self.policy.is_adaptive();
        let f = self.config.assumed_saboteurs;
        let Some(slot) = self.slots.get_mut(&t) else {
            return;
        };
        let mut still_wants = None;
        if adaptive && self.open.contains(&t) && !slot.verifier.is_done() {
            match judge(&slot.verifier, slot.audit, &self.trust, f) {
                Judgement::Accept(digest, error) => {
                    slot.error = Some(error);
                    slot.verifier.accept(digest);
                }
                Judgement::Fail(reason) if slot.verifier.vote_count() > 0 => {
                    // Out of replicas with votes in: trust moves as other
                    // tasks are decided (voters pass checks, liars are
                    // proven and their votes discarded), so the task is
                    // judged again at each placement for a grace period.
                    let since = *slot.starving_since.get_or_insert(now);
                    if now.saturating_sub(since) >= self.config.no_worker_grace {
                        slot.verifier.fail(reason);
                    } else {
                        still_wants = Some(true);
                    }
                }
                Judgement::Fail(reason) => slot.verifier.fail(reason),
                Judgement::More => still_wants = Some(true),
                Judgement::Hold => still_wants = Some(false),
            }
        }
        let mut liars = Vec::new();
        if self.open.contains(&t) {
            if let Some(verdict) = slot.verifier.verdict().cloned() {
                let accepted = match &verdict {
                    Verdict::Accepted { digest, .. } => slot
                        .payloads
                        .iter()
                        .position(|(d, _)| d == digest)
                        .map(|i| slot.payloads.swap_remove(i).1),
                    Verdict::Failed { .. } => None,
                };
                slot.payloads.clear();
                let votes = slot.verifier.vote_count();
                let error = slot.error.take().filter(|_| adaptive);
                self.open.remove(&t);
                self.wanting.remove(&t);
                if let Verdict::Accepted {
                    digest,
                    agreeing,
                    disagreeing,
                } = &verdict
                {
                    let disagreeing = disagreeing.clone();
                    self.note_rejected(t, &disagreeing);
                    if adaptive {
                        if agreeing.len() >= 2 {
                            for w in agreeing {
                                self.credit(w);
                            }
                        }
                        self.note_accepted(t, *digest, agreeing.clone());
                        if let Some(w) = self.disputes.remove(&t) {
                            self.actions.push_back(Action::SpotChecked {
                                task: t,
                                worker: w.clone(),
                                passed: agreeing.contains(&w),
                            });
                        }
                        liars = disagreeing;
                    }
                } else {
                    self.disputes.remove(&t);
                }
                self.undecided_since_checkpoint = true;
                self.actions.push_back(Action::Decided(Decision {
                    task: t,
                    verdict,
                    accepted,
                    votes,
                    error,
                }));
                if self.open.is_empty() {
                    self.finished_at = Some(now);
                    self.actions.push_back(Action::Done);
                    self.emit_checkpoint(now);
                }
            } else if still_wants.unwrap_or_else(|| slot.verifier.wanted_replicas() > 0) {
                self.wanting.insert(t);
            } else {
                self.wanting.remove(&t);
            }
        }
        let drop_slot = self
            .slots
            .get(&t)
            .is_some_and(|s| s.verifier.is_done() && s.verifier.running_count() == 0);
        if drop_slot {
            self.slots.remove(&t);
        }
        for w in liars {
            self.distrust(&w, now);
        }
    }

    /// Adaptive: `worker` passed a check in this job.
    fn credit(&mut self, worker: &W) {
        let t = self.trust.entry(worker.clone()).or_default();
        if !t.distrusted {
            t.checks = t.checks.saturating_add(1);
        }
    }

    /// Adaptive: task `t` was accepted with `digest` by `agreeing`.
    fn note_accepted(&mut self, t: u32, digest: Digest, agreeing: Vec<W>) {
        for w in &agreeing {
            self.accepted_by.entry(w.clone()).or_default().push(t);
        }
        self.accepted.insert(t, (digest, agreeing));
        if self.spot_pool.len() < SPOT_POOL {
            self.spot_pool.push(t);
        } else {
            let i = self.rng.below(SPOT_POOL as u64) as usize;
            self.spot_pool[i] = t;
        }
    }

    /// Adaptive: a spot check of accepted task `t` came back. Agreeing is a
    /// check passed; disagreeing opens the task again with the old votes
    /// and this one, and its new verdict says who lied.
    fn spot_answer(&mut self, now: Time, t: u32, worker: &W, digest: Digest, payload: P) {
        self.replicas_run += 1;
        self.spot_checks += 1;
        let Some((accepted, voters)) = self.accepted.get(&t).cloned() else {
            return; // opened again meanwhile: nothing to compare with
        };
        if accepted == digest {
            self.credit(worker);
            self.actions.push_back(Action::SpotChecked {
                task: t,
                worker: worker.clone(),
                passed: true,
            });
            return;
        }
        if self.is_done() || self.disputes.contains_key(&t) {
            return;
        }
        let mut votes: Vec<(W, Digest)> = voters.into_iter().map(|w| (w, accepted)).collect();
        votes.push((worker.clone(), digest));
        self.disputes.insert(t, worker.clone());
        self.reopen(now, t, votes, Some((digest, payload)));
    }

    /// Adaptive: `worker` is proven a liar. Its votes on open tasks are
    /// discarded; every task of this job it helped accept is judged again
    /// without it, and opened again if it no longer meets the target.
    fn distrust(&mut self, worker: &W, now: Time) {
        let t = self.trust.entry(worker.clone()).or_default();
        if t.distrusted {
            return;
        }
        *t = Trust {
            checks: 0,
            distrusted: true,
        };
        if !self.policy.is_adaptive() || self.is_done() {
            return;
        }
        let open: Vec<u32> = self
            .slots
            .iter_mut()
            .filter(|(_, s)| !s.verifier.is_done())
            .filter_map(|(t, s)| s.verifier.discard_vote(worker).then_some(*t))
            .collect();
        for t in open {
            self.settle(t, now);
        }
        let f = self.config.assumed_saboteurs;
        let eps = self.policy.max_error;
        for t in self.accepted_by.remove(worker).unwrap_or_default() {
            let Some((digest, voters)) = self.accepted.get(&t).cloned() else {
                continue;
            };
            if !voters.contains(worker) {
                continue;
            }
            let rest: Vec<W> = voters
                .into_iter()
                .filter(|w| !self.trust.get(w).is_some_and(|t| t.distrusted))
                .collect();
            let errs: Vec<f64> = rest.iter().map(|w| error_in(&self.trust, w, f)).collect();
            if !errs.is_empty() && group_error(&[errs], 0) <= eps {
                if let Some(entry) = self.accepted.get_mut(&t) {
                    entry.1 = rest;
                }
                continue;
            }
            let votes = rest.into_iter().map(|w| (w, digest)).collect();
            self.reopen(now, t, votes, None);
        }
    }

    /// Adaptive: opens decided task `t` again with `votes` counting.
    fn reopen(&mut self, now: Time, t: u32, votes: Vec<(W, Digest)>, payload: Option<(Digest, P)>) {
        self.accepted.remove(&t);
        let mut slot = Slot::new(self.policy, self.task_config);
        slot.verifier = TaskVerifier::from_votes(self.policy, self.task_config, now, votes);
        if let Some(p) = payload {
            slot.payloads.push(p);
        }
        self.slots.insert(t, slot);
        self.open.insert(t);
        self.wanting.insert(t);
        self.reopened += 1;
        self.finished_at = None;
        self.undecided_since_checkpoint = true;
        self.actions.push_back(Action::Reopened { task: t });
        self.settle(t, now);
    }

    fn note_rejected(&mut self, t: u32, disagreeing: &[W]) {
        self.disagreements += disagreeing.len() as u64;
        for w in disagreeing {
            if self.rejected.len() < MAX_REJECTIONS_KEPT {
                self.rejected.push((t, w.clone()));
            }
        }
    }

    fn maybe_checkpoint(&mut self, now: Time) {
        if self.undecided_since_checkpoint
            && self
                .last_checkpoint
                .is_none_or(|t| now >= t.saturating_add(self.config.checkpoint_interval))
        {
            self.emit_checkpoint(now);
        }
    }

    fn emit_checkpoint(&mut self, now: Time) {
        self.undecided_since_checkpoint = false;
        self.last_checkpoint = Some(now);
        self.actions.push_back(Action::Checkpoint);
    }
}

impl<W: WorkerId, P> std::fmt::Debug for JobMachine<W, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobMachine")
            .field("tasks", &self.tasks)
            .field("open", &self.open.len())
            .field("batches_out", &self.batches.len())
            .field("cancelled", &self.cancelled)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::{FailReason, PlacementPolicy};

    type M = JobMachine<u32, &'static str>;

    fn cands(ids: &[u32], free: u32) -> Vec<Candidate<u32>> {
        ids.iter()
            .map(|&id| Candidate {
                id,
                free_slots: free,
                fuel_per_sec: 1,
                reputation: 0,
                network: u128::from(id),
                trust: Trust::default(),
            })
            .collect()
    }

    fn drain(m: &mut M) -> Vec<Action<u32, &'static str>> {
        std::iter::from_fn(|| m.poll_action()).collect()
    }

    fn sends(actions: &[Action<u32, &'static str>]) -> Vec<(BatchId, u32, Vec<u32>)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::SendBatch {
                    batch,
                    worker,
                    tasks,
                } => Some((*batch, *worker, tasks.clone())),
                _ => None,
            })
            .collect()
    }

    fn vote(d: u8, p: &'static str) -> Answer<&'static str> {
        Answer::Vote {
            digest: [d; 32],
            payload: p,
        }
    }

    fn machine(tasks: u32) -> M {
        let policy = Policy::new(2, None, None).unwrap();
        JobMachine::new(policy, tasks, MachineConfig::default(), 1)
    }

    #[test]
    fn a_job_runs_to_done_with_checkpoints() {
        let mut m = machine(3);
        m.place(0, cands(&[1, 2, 3], 8), &mut PlacementPolicy::TwoChoices);
        let out = sends(&drain(&mut m));
        // 3 tasks x 2 replicas, each task on two distinct workers.
        assert_eq!(out.iter().map(|s| s.2.len()).sum::<usize>(), 6);
        assert_eq!(m.running(), 3);
        assert_eq!(m.pending(), 0);
        for (batch, _, tasks) in &out {
            let answers: Vec<_> = tasks.iter().map(|&t| (t, vote(t as u8, "ok"))).collect();
            m.handle_batch_done(10, *batch, answers);
        }
        let actions = drain(&mut m);
        let decided: Vec<_> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Decided(d) => Some((d.task, d.accepted)),
                _ => None,
            })
            .collect();
        assert_eq!(decided.len(), 3);
        assert!(decided.iter().all(|(_, p)| *p == Some("ok")));
        assert!(actions.contains(&Action::Done));
        assert!(actions.contains(&Action::Checkpoint));
        assert!(m.is_finished());
        assert_eq!(m.finished_at(), Some(10));
        assert_eq!(m.replicas_run(), 6);
    }

    #[test]
    fn replicas_of_a_task_stand_in_distinct_networks_or_wait() {
        // Workers 1 and 2 share a network, 3 has its own: every task of
        // replicas 2 gets 3 and one of {1, 2}, never both 1 and 2.
        let mut m = machine(40);
        let mut c = cands(&[1, 2, 3], 100);
        c[1].network = c[0].network;
        m.place(0, c, &mut PlacementPolicy::Uniform);
        let out = sends(&drain(&mut m));
        let mut by_task: HashMap<u32, Vec<u32>> = HashMap::new();
        for (_, w, tasks) in &out {
            for t in tasks {
                by_task.entry(*t).or_default().push(*w);
            }
        }
        assert_eq!(by_task.len(), 40);
        for (t, ws) in &by_task {
            assert_eq!(ws.len(), 2, "task {t}: {ws:?}");
            assert!(ws.contains(&3), "task {t} on one network only: {ws:?}");
        }
        assert_eq!(m.waiting_for_networks(), 0);
        // Two workers of one network only: each task gets one replica and
        // waits for a second network, long past the no-worker grace,
        // without failing, and the machine says so.
        let mut m = machine(5);
        let mut c = cands(&[1, 2], 100);
        c[1].network = c[0].network;
        m.place(0, c.clone(), &mut PlacementPolicy::Uniform);
        let first = sends(&drain(&mut m));
        assert_eq!(first.iter().map(|s| s.2.len()).sum::<usize>(), 5);
        for (batch, _, tasks) in &first {
            let answers: Vec<_> = tasks.iter().map(|&t| (t, vote(t as u8, "ok"))).collect();
            m.handle_batch_done(10, *batch, answers);
        }
        drain(&mut m);
        for now in [20, 50_000, 500_000] {
            m.place(now, c.clone(), &mut PlacementPolicy::Uniform);
            let acts = drain(&mut m);
            assert!(sends(&acts).is_empty(), "{acts:?}");
            assert!(
                !acts.iter().any(|a| matches!(a, Action::Decided(_))),
                "{acts:?}"
            );
        }
        assert_eq!(m.waiting_for_networks(), 5);
        // A worker in a new network arrives: the tasks go on.
        let mut c2 = c.clone();
        c2.extend(cands(&[3], 100));
        m.place(600_000, c2, &mut PlacementPolicy::Uniform);
        let out = sends(&drain(&mut m));
        assert_eq!(out.iter().map(|s| s.2.len()).sum::<usize>(), 5);
        assert!(out.iter().all(|(_, w, _)| *w == 3));
        assert_eq!(m.waiting_for_networks(), 0);
    }

    #[test]
    fn answers_cannot_speak_for_other_tasks_or_batches() {
        let mut m = machine(2);
        m.place(0, cands(&[1, 2], 1), &mut PlacementPolicy::Uniform);
        let out = sends(&drain(&mut m));
        assert_eq!(out.len(), 2, "one task on each of the two workers");
        let (b0, w0, t0) = out[0].clone();
        assert_eq!(t0, vec![0]);
        // Worker w0 answers for its task and also claims task 1, twice.
        m.handle_batch_done(
            5,
            b0,
            vec![(0, vote(7, "a")), (1, vote(9, "x")), (1, vote(9, "x"))],
        );
        // An unknown batch and a replayed one change nothing.
        m.handle_batch_done(6, BatchId(99), vec![(1, vote(9, "x"))]);
        m.handle_batch_done(6, b0, vec![(1, vote(9, "x"))]);
        let acts = drain(&mut m);
        assert!(!acts.iter().any(|a| matches!(a, Action::Decided(_))));
        assert_eq!(m.replicas_run(), 1);
        assert_ne!(w0, out[1].1);
    }

    #[test]
    fn busy_and_lost_batches_go_elsewhere() {
        let mut m = machine(1);
        m.place(0, cands(&[1, 2], 4), &mut PlacementPolicy::Uniform);
        let out = sends(&drain(&mut m));
        assert_eq!(out.len(), 2);
        m.handle_batch_busy(1, out[0].0);
        m.handle_batch_lost(1, out[1].0);
        let acts = drain(&mut m);
        assert!(acts.contains(&Action::ReplicasEnded {
            worker: out[0].1,
            end: ReplicaEnd::Busy,
            count: 1
        }));
        assert_eq!(m.pending(), 1);
        // The busy worker may be asked again; the lost one may not.
        m.place(2, cands(&[1, 2, 3], 4), &mut PlacementPolicy::Uniform);
        let again = sends(&drain(&mut m));
        let workers: Vec<u32> = again.iter().map(|s| s.1).collect();
        assert_eq!(again.len(), 2);
        assert!(!workers.contains(&out[1].1), "{workers:?}");
    }

    #[test]
    fn a_task_with_every_worker_excluded_fails_after_the_grace() {
        let policy = Policy::new(1, None, Some(2)).unwrap();
        let mut m: M = JobMachine::new(policy, 1, MachineConfig::default(), 3);
        m.place(0, cands(&[1], 1), &mut PlacementPolicy::Uniform);
        let out = sends(&drain(&mut m));
        m.handle_batch_done(1, out[0].0, vec![(0, Answer::NoVerdict)]);
        drain(&mut m);
        m.place(2, cands(&[1], 1), &mut PlacementPolicy::Uniform);
        assert!(sends(&drain(&mut m)).is_empty());
        assert_eq!(m.poll_timeout(), Some(2 + 10_000));
        m.place(5_000, cands(&[1], 1), &mut PlacementPolicy::Uniform);
        assert!(!m.is_done());
        // A worker the task may still get appears, busy: the task waits for
        // it without starving, and no timer is left in the past.
        let mut busy = cands(&[1, 2], 1);
        busy[1].free_slots = 0;
        m.place(6_000, busy, &mut PlacementPolicy::Uniform);
        assert!(sends(&drain(&mut m)).is_empty());
        assert_eq!(
            m.poll_timeout(),
            None,
            "not starving while a worker may come free"
        );
        m.place(7_000, cands(&[1], 1), &mut PlacementPolicy::Uniform);
        assert_eq!(
            m.poll_timeout(),
            Some(7_000 + 10_000),
            "starving again, from now"
        );
        m.place(17_000, cands(&[1], 1), &mut PlacementPolicy::Uniform);
        let acts = drain(&mut m);
        assert!(acts.iter().any(|a| matches!(
            a,
            Action::Decided(Decision {
                verdict: Verdict::Failed {
                    reason: FailReason::NoWorkers,
                    ..
                },
                ..
            })
        )));
        assert!(m.is_done());
    }

    #[test]
    fn cancel_decides_every_open_task_and_restore_counts_the_past() {
        let mut m = machine(4);
        m.handle_cancel(3);
        let acts = drain(&mut m);
        let cancelled = acts
            .iter()
            .filter(|a| {
                matches!(
                    a,
                    Action::Decided(Decision {
                        verdict: Verdict::Failed {
                            reason: FailReason::Cancelled,
                            ..
                        },
                        ..
                    })
                )
            })
            .count();
        assert_eq!(cancelled, 4);
        assert!(m.is_cancelled() && m.is_finished());
        let policy = Policy::new(2, None, None).unwrap();
        let past = vec![
            Restored {
                task: 1,
                votes: 3,
                disagreeing: vec![9],
                agreeing: vec![1, 2],
                digest: Some([1; 32]),
            },
            Restored {
                task: 7, // not in the job: ignored
                votes: 2,
                disagreeing: vec![],
                agreeing: vec![],
                digest: None,
            },
        ];
        let r: M = JobMachine::restore(policy, 3, MachineConfig::default(), 1, past, false);
        assert_eq!(r.replicas_run(), 3);
        assert_eq!(r.rejected(), &[(1, 9)]);
        assert_eq!(r.pending(), 2);
    }

    #[test]
    fn distrusted_workers_get_nothing_while_enough_others_exist() {
        let mut m = machine(20);
        let mut c = cands(&[1, 2, 3], 64);
        c[2].reputation = -60;
        m.place(0, c, &mut PlacementPolicy::Uniform);
        let out = sends(&drain(&mut m));
        assert!(out.iter().all(|s| s.1 != 3), "{out:?}");
        assert_eq!(out.iter().map(|s| s.2.len()).sum::<usize>(), 40);
    }
}

#[cfg(test)]
mod adaptive_tests {
    use super::*;
    use crate::jobs::PlacementPolicy;

    type M = JobMachine<u32, &'static str>;

    fn cands(ids: &[(u32, u64)]) -> Vec<Candidate<u32>> {
        ids.iter()
            .map(|&(id, checks)| Candidate {
                id,
                free_slots: 64,
                fuel_per_sec: 1,
                reputation: 0,
                network: u128::from(id),
                trust: Trust {
                    checks,
                    distrusted: false,
                },
            })
            .collect()
    }

    fn adaptive(tasks: u32, audit: f64, spot: f64) -> M {
        let policy = Policy::adaptive(1e-4, None).unwrap();
        let config = MachineConfig {
            audit_rate: audit,
            spot_check_rate: spot,
            ..MachineConfig::default()
        };
        JobMachine::new(policy, tasks, config, 9)
    }

    /// Answers every batch out: `liar` answers `lie` on every task, others
    /// the truth (digest = task). Returns the actions.
    fn answer_all(
        m: &mut M,
        now: Time,
        out: &[Action<u32, &'static str>],
        liar: Option<u32>,
    ) -> Vec<Action<u32, &'static str>> {
        for a in out {
            if let Action::SendBatch {
                batch,
                worker,
                tasks,
            } = a
            {
                let answers: Vec<_> = tasks
                    .iter()
                    .map(|&t| {
                        let d = if Some(*worker) == liar { 200 } else { t as u8 };
                        (
                            t,
                            Answer::Vote {
                                digest: [d; 32],
                                payload: "out",
                            },
                        )
                    })
                    .collect();
                m.handle_batch_done(now, *batch, answers);
            }
        }
        std::iter::from_fn(|| m.poll_action()).collect()
    }

    fn drain(m: &mut M) -> Vec<Action<u32, &'static str>> {
        std::iter::from_fn(|| m.poll_action()).collect()
    }

    fn decided<'a>(acts: &'a [Action<u32, &'static str>]) -> Vec<&'a Decision<u32, &'static str>> {
        acts.iter()
            .filter_map(|a| match a {
                Action::Decided(d) => Some(d),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn trusted_workers_are_believed_alone_and_strangers_need_company() {
        // Workers 1-3 have long streaks (one result of theirs meets 1e-4 at
        // the default f); 4-9 are new.
        let trusted = checks_for(1e-4);
        let mut m = adaptive(150, 0.0, 0.0);
        let mut c = cands(&[(1, trusted), (2, trusted), (3, trusted)]);
        m.place(0, c.clone(), &mut PlacementPolicy::Uniform);
        let acts = {
            let out = drain(&mut m);
            answer_all(&mut m, 10, &out, None)
        };
        let ds = decided(&acts);
        assert_eq!(ds.len(), 150);
        assert!(ds.iter().all(|d| d.votes == 1), "one vote each");
        assert!(ds.iter().all(|d| d.error.is_some_and(|e| e <= 1e-4)));
        // New workers only: no result is taken on one or two words.
        let mut m = adaptive(50, 0.0, 0.0);
        c = cands(&[(4, 0), (5, 0), (6, 0), (7, 0), (8, 0), (9, 0)]);
        // Strangers start at most 4 unsettled tasks each (and may join
        // tasks under way): far from all 50 in the first round.
        m.place(0, c.clone(), &mut PlacementPolicy::Uniform);
        let first = drain(&mut m);
        let sent: usize = first
            .iter()
            .map(|a| match a {
                Action::SendBatch { tasks, .. } => tasks.len(),
                _ => 0,
            })
            .sum();
        assert!(sent > 0 && sent < 60, "{sent}");
        let mut acts = answer_all(&mut m, 10, &first, None);
        for round in 1..40 {
            if m.is_done() {
                break;
            }
            m.place(10 * round, c.clone(), &mut PlacementPolicy::Uniform);
            let out = drain(&mut m);
            acts.extend(answer_all(&mut m, 10 * round + 5, &out, None));
        }
        let ds = decided(&acts);
        assert_eq!(ds.len(), 50);
        // f = 0.05: three fresh agreeing workers leave 1.4e-4, four 7e-6,
        // so four are sent; as answers come in the workers pass checks, and
        // a task may be accepted before its fourth vote arrives.
        assert!(ds.iter().all(|d| d.votes >= 2), "never on one word");
        assert_eq!(ds[0].votes, 4, "the first task, before any check");
        // As they pass checks, fewer replicas do.
        assert!(m.replicas_run() < 200, "{}", m.replicas_run());
    }

    fn checks_for(eps: f64) -> u64 {
        crate::jobs::trust::checks_for_single(eps, DEFAULT_ASSUMED_SABOTEURS)
    }

    #[test]
    fn a_proven_liar_loses_the_results_it_alone_vouched_for() {
        let trusted = checks_for(1e-4);
        // 250 tasks, 192 slots: the job is still running when the lie is
        // proven (a finished job's results stay as they are).
        let mut m = adaptive(250, 0.0, 0.0);
        // Worker 1 is trusted and lies on everything; 2 and 3 are trusted
        // and honest.
        let c = cands(&[(1, trusted), (2, trusted), (3, trusted)]);
        m.place(0, c.clone(), &mut PlacementPolicy::Uniform);
        let first = drain(&mut m);
        let acts = answer_all(&mut m, 10, &first, Some(1));
        let lies: Vec<u32> = decided(&acts)
            .iter()
            .filter(|d| matches!(&d.verdict, Verdict::Accepted { digest, .. } if digest[0] == 200))
            .map(|d| d.task)
            .collect();
        assert!(!lies.is_empty(), "the liar was believed on its own tasks");
        // A spot check or audit catches it later: here its record says so
        // (another job proved it), and every task it vouched for alone
        // opens again.
        let mut c2 = c.clone();
        c2[0].trust.distrusted = true;
        m.place(20, c2.clone(), &mut PlacementPolicy::Uniform);
        let acts = drain(&mut m);
        let reopened: Vec<u32> = acts
            .iter()
            .filter_map(|a| match a {
                Action::Reopened { task } => Some(*task),
                _ => None,
            })
            .collect();
        assert_eq!(reopened.len(), lies.len(), "{acts:?}");
        assert!(
            sends_to(&acts).iter().all(|w| *w != 1),
            "no work for a liar"
        );
        let acts = answer_all(&mut m, 30, &acts, Some(1));
        let again: Vec<_> = decided(&acts)
            .into_iter()
            .filter(|d| lies.contains(&d.task))
            .collect();
        assert_eq!(again.len(), lies.len());
        assert!(again.iter().all(|d| matches!(
            &d.verdict,
            Verdict::Accepted { digest, .. } if digest[0] == d.task as u8
        )));
        assert_eq!(m.reopened(), lies.len() as u64);
    }

    fn sends_to(acts: &[Action<u32, &'static str>]) -> Vec<u32> {
        acts.iter()
            .filter_map(|a| match a {
                Action::SendBatch { worker, .. } => Some(*worker),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn spot_checks_go_to_strangers_and_a_failed_one_is_a_proven_lie() {
        let trusted = checks_for(1e-4);
        let mut m = adaptive(400, 0.0, 1.0);
        let c = cands(&[(1, trusted), (2, trusted)]);
        // 200 tasks accepted on trusted words first.
        let mut c1 = c.clone();
        for x in &mut c1 {
            x.free_slots = 50;
        }
        m.place(0, c1, &mut PlacementPolicy::Uniform);
        {
            let out = drain(&mut m);
            answer_all(&mut m, 10, &out, None)
        };
        // A stranger (7) that lies on everything joins: every placement
        // offers it a spot check first (rate 1).
        let mut c2 = c.clone();
        c2.extend(cands(&[(7, 0)]));
        // One slot: the stranger runs only its spot check.
        c2[2].free_slots = 1;
        m.place(20, c2.clone(), &mut PlacementPolicy::Uniform);
        let acts = drain(&mut m);
        let acts = answer_all(&mut m, 30, &acts, Some(7));
        assert!(m.spot_checks() >= 1);
        assert!(
            acts.iter().any(|a| matches!(a, Action::Reopened { .. })),
            "the dispute opens the task"
        );
        // The dispute is settled by more trusted votes; the stranger loses.
        for now in [40, 50, 60] {
            m.place(now, c2.clone(), &mut PlacementPolicy::Uniform);
            let acts = drain(&mut m);
            let acts = answer_all(&mut m, now + 5, &acts, Some(7));
            if let Some(a) = acts
                .iter()
                .find(|a| matches!(a, Action::SpotChecked { passed: false, .. }))
            {
                assert!(matches!(a, Action::SpotChecked { worker: 7, .. }));
                assert!(
                    decided(&acts).iter().any(|d| matches!(
                        &d.verdict,
                        Verdict::Accepted { disagreeing, .. } if disagreeing == &[7]
                    )),
                    "{acts:?}"
                );
                return;
            }
        }
        panic!("the failed spot check was never settled");
    }

    #[test]
    fn audits_ask_a_second_result_of_trusted_workers() {
        let trusted = checks_for(1e-4);
        let mut m = adaptive(90, 1.0, 0.0);
        let c = cands(&[(1, trusted), (2, trusted), (3, trusted)]);
        m.place(0, c, &mut PlacementPolicy::Uniform);
        let acts = {
            let out = drain(&mut m);
            answer_all(&mut m, 10, &out, None)
        };
        let ds = decided(&acts);
        assert_eq!(ds.len(), 90);
        assert!(ds.iter().all(|d| d.votes == 2));
    }
}
