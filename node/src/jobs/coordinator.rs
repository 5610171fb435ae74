//! The coordinator side: one driver task per job feeds `chorus-core`'s
//! [`JobMachine`] (placement, quorum, retries) and performs what it asks:
//! sends batches to workers, records decided tasks, stores and copies the
//! job, and records metrics from the actions. The machine decides; this file
//! only does the I/O, as the ring actor does for `RingNode`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_core::jobs::{
    Action, Answer, BatchId, Candidate, Decision, FailReason, JobMachine, MachineConfig, Restored,
    Verdict,
};
use chorus_sdk::attest::{AcceptRule, Attestation};
use chorus_sdk::bundle::VerifiedBundle;
use chorus_sdk::identity::PeerId;
use chorus_sdk::job::{
    Assignment, DecidedTask, JOB_FRAME_CAP, JobHeader, JobId, JobRequest, JobResponse, JobSnapshot,
    JobStatus, ProvedResult, Rejection, ResultsPage, RunTasks, SignedResults, TaskResult,
};
use chorus_sdk::outcome::{self, Outcome};
use chorus_sdk::wire::{ErrorKind, Peer, Request, Response};
use serde_bytes::ByteBuf;
use tokio::sync::{Notify, mpsc, watch};
use tracing::{debug, info, warn};

use super::Shared;

/// Bytes of results in one page.
const PAGE_BYTES: usize = 16 << 20;

/// What the machine keeps for a digest until its task is decided: the
/// outcome, output and (for an error) the start of the stderr of the first
/// replica that gave it.
type Payload = (Outcome, ByteBuf, ByteBuf);

/// A job coordinated here: its state behind a lock, a bell for its driver,
/// and a version that watchers wait on.
pub(super) struct JobHandle {
    pub(super) id: JobId,
    pub(super) bundle: Arc<VerifiedBundle>,
    /// Input hashes, bundle and terms: what attestations are checked against.
    pub(super) header: JobHeader,
    pub(super) state: std::sync::Mutex<JobState>,
    pub(super) wake: Notify,
    /// Bumped on every change clients see (a task decided, a cancel).
    pub(super) version: watch::Sender<u64>,
}

/// The state of a coordinated job.
pub(super) struct JobState {
    /// The job as stored and copied: spec, decided tasks, cancelled, failovers.
    pub(super) snapshot: JobSnapshot,
    machine: JobMachine<PeerId, Payload>,
    epoch: Instant,
    /// Decided tasks not stored yet, in order of decision.
    unstored: Vec<u32>,
    /// Every decided task in order of decision: what backups receive.
    log: Vec<u32>,
    /// How much of `log` each backup acknowledged.
    backups: HashMap<chorus_core::RingPos, usize>,
    /// Where the workers of batches out can be reached.
    addrs: HashMap<PeerId, SocketAddr>,
    /// Tasks of this job in flight per worker (its part of `Shared::inflight`).
    mine: HashMap<PeerId, usize>,
    /// When the last task was decided.
    finished: Option<Instant>,
    /// Valid attestations of undecided tasks, with the digest each attests:
    /// the agreeing ones go with the task when it is decided.
    attests: HashMap<u32, Vec<([u8; 32], Attestation)>>,
    /// Results withdrawn when their task was opened again (adaptive
    /// verification): if the same result is accepted again, its output and
    /// attestations come from here.
    withdrawn: HashMap<u32, DecidedTask>,
    /// The bundle's seed (its manifest's), from which each task's seed is
    /// derived as workers derive it.
    bundle_seed: Option<u64>,
}

/// What one round of performing actions left for the async side.
#[derive(Default)]
struct Performed {
    sends: Vec<(BatchId, PeerId, SocketAddr, RunTasks)>,
    checkpoint: bool,
    changed: bool,
}

/// The answer of one batch.
enum BatchOutcome {
    Ran(Box<SignedResults>),
    Busy,
    Lost(String),
}

struct BatchDone {
    batch: BatchId,
    worker: PeerId,
    tasks: usize,
    outcome: BatchOutcome,
}

impl JobHandle {
    /// A job from its snapshot (new, restored from the store, or taken over).
    pub(super) fn new(
        id: JobId,
        snapshot: JobSnapshot,
        bundle: Arc<VerifiedBundle>,
        config: MachineConfig,
    ) -> JobHandle {
        let tasks = u32::try_from(snapshot.spec.inputs.len()).unwrap_or(u32::MAX);
        let restored = snapshot.decided.values().map(|d| Restored {
            task: d.task,
            votes: d.votes,
            disagreeing: d.disagreeing.clone(),
            agreeing: d.agreeing.clone(),
            digest: d.result.outcome_digest(),
        });
        let machine = JobMachine::restore(
            snapshot.spec.policy,
            tasks,
            config,
            id.0.0 ^ 0x9e37_79b9_7f4a_7c15,
            restored,
            snapshot.is_cancelled(),
        );
        let log = snapshot.decided.keys().copied().collect();
        let finished = machine.is_done().then(Instant::now);
        let header = snapshot.spec.header();
        let bundle_seed = bundle.manifest().seed;
        JobHandle {
            id,
            bundle,
            header,
            state: std::sync::Mutex::new(JobState {
                snapshot,
                machine,
                epoch: Instant::now(),
                unstored: Vec::new(),
                log,
                backups: HashMap::new(),
                addrs: HashMap::new(),
                mine: HashMap::new(),
                finished,
                attests: HashMap::new(),
                withdrawn: HashMap::new(),
                bundle_seed,
            }),
            wake: Notify::new(),
            version: watch::channel(1).0,
        }
    }

    /// The job's progress as clients see it.
    pub(super) fn status(&self, st: &JobState, shared: &Shared) -> JobStatus {
        let mut verified = 0;
        let mut failed = 0;
        for d in st.snapshot.decided.values() {
            if d.result.is_verified() {
                verified += 1;
            } else {
                failed += 1;
            }
        }
        let m = &st.machine;
        JobStatus {
            job: self.id,
            coordinator: shared.me.clone(),
            tasks: m.tasks(),
            pending: m.pending(),
            running: m.running(),
            verified,
            failed,
            replicas_run: m.replicas_run(),
            disagreements: m.disagreements(),
            rejected: m
                .rejected()
                .iter()
                .map(|(task, worker)| Rejection {
                    task: *task,
                    worker: *worker,
                })
                .collect(),
            done: m.is_done(),
            cancelled: m.is_cancelled(),
            failovers: st.snapshot.failovers,
            waiting_for_networks: u32::try_from(m.waiting_for_networks()).unwrap_or(u32::MAX),
            replicas_per_task: m.replicas_run() as f64 / f64::from(m.tasks().max(1)),
            spot_checks: m.spot_checks(),
            reopened: m.reopened(),
            reputation: shared.reputation_table(),
            version: *self.version.borrow(),
        }
    }

    /// Final results of tasks `from..`, as many as fit in a page.
    pub(super) fn page(&self, st: &JobState, from: u32, shared: &Shared) -> ResultsPage {
        page_of(&st.snapshot, &self.header, from, self.status(st, shared))
    }

    /// Cancels: every undecided task fails with "cancelled". Returns whether
    /// anything changed.
    pub(super) fn cancel(&self, shared: &Shared, signature: ByteBuf) -> bool {
        let Ok(mut st) = self.state.lock() else {
            return false;
        };
        if st.machine.is_done() {
            return false;
        }
        let now = st.now();
        st.machine.handle_cancel(now);
        st.snapshot.cancel = Some(signature);
        let performed = st.perform(self.id, &self.bundle, shared);
        drop(st);
        if performed.changed {
            self.version.send_modify(|v| *v += 1);
        }
        self.wake.notify_one();
        true
    }
}

impl JobState {
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether every task has a final result.
    pub(super) fn is_done(&self) -> bool {
        self.machine.is_done()
    }

    /// Whether the job was cancelled.
    pub(super) fn is_cancelled(&self) -> bool {
        self.machine.is_cancelled()
    }

    /// How long ago the job finished, if it has.
    pub(super) fn finished_for(&self) -> Option<Duration> {
        self.finished.map(|t| t.elapsed())
    }

    /// Performs the machine's actions that need no I/O and collects the rest.
    fn perform(&mut self, id: JobId, bundle: &VerifiedBundle, shared: &Shared) -> Performed {
        let mut out = Performed::default();
        while let Some(action) = self.machine.poll_action() {
            match action {
                Action::SendBatch {
                    batch,
                    worker,
                    tasks,
                } => {
                    let Some(addr) = self.addrs.get(&worker).copied() else {
                        let now = self.now();
                        self.machine.handle_batch_lost(now, batch);
                        continue;
                    };
                    shared.add_inflight(worker, tasks.len() as i64);
                    *self.mine.entry(worker).or_insert(0) += tasks.len();
                    let tasks = tasks
                        .into_iter()
                        .map(|t| Assignment {
                            task: t,
                            seed: chorus_sdk::job::task_seed(self.bundle_seed, id, t),
                            input: self.snapshot.spec.inputs[t as usize].clone(),
                        })
                        .collect();
                    let run = RunTasks {
                        job: id,
                        bundle: bundle.id(),
                        coordinator: shared.me.addr,
                        limits: self.snapshot.spec.limits,
                        policy: self.snapshot.spec.policy,
                        tasks,
                    };
                    out.sends.push((batch, worker, addr, run));
                }
                Action::ReplicasEnded { end, count, .. } => {
                    shared
                        .metrics
                        .replicas
                        .with_label_values(&[end.as_str()])
                        .inc_by(u64::from(count));
                }
                Action::Decided(d) => {
                    self.record(id, d, shared);
                    out.changed = true;
                }
                Action::LateVote {
                    task,
                    worker,
                    agrees,
                } => {
                    shared.late_vote(worker, agrees);
                    if !agrees {
                        info!(job = %id, task, %worker, "late result rejected by the quorum");
                        shared.metrics.results_rejected.inc();
                    }
                }
                Action::Reopened { task } => {
                    if let Some(d) = self.snapshot.decided.remove(&task) {
                        info!(job = %id, task, "result withdrawn: a worker that accepted it was proven a liar, or a spot check disputed it");
                        shared.metrics.reopened.inc();
                        self.withdrawn.insert(task, d);
                    }
                    out.changed = true;
                }
                Action::SpotChecked {
                    task,
                    worker,
                    passed,
                } => {
                    shared.spot_checked(worker, passed);
                    let label = if passed { "passed" } else { "failed" };
                    shared.metrics.spot_checks.with_label_values(&[label]).inc();
                    if !passed {
                        info!(job = %id, task, %worker, "spot check failed");
                    }
                }
                Action::Checkpoint => out.checkpoint = true,
                Action::Done => {
                    self.finished = Some(Instant::now());
                    info!(job = %id, "job done");
                }
            }
        }
        out
    }

    /// Records a decision: the task's final result, reputation, metrics.
    fn record(&mut self, id: JobId, d: Decision<PeerId, Payload>, shared: &Shared) {
        let Decision {
            task,
            verdict,
            accepted,
            votes,
            error,
        } = d;
        shared.apply_verdict(&verdict);
        let mut offered = self.attests.remove(&task).unwrap_or_default();
        // A task decided again keeps what it had if the same result wins.
        let withdrawn = self.withdrawn.remove(&task);
        let accepted = match (&verdict, accepted, &withdrawn) {
            (Verdict::Accepted { digest, .. }, None, Some(w))
                if w.result.outcome_digest().as_ref() == Some(digest) =>
            {
                offered.extend(w.attestations.iter().map(|a| (*digest, a.clone())));
                match &w.result {
                    TaskResult::Output(b) => Some((Outcome::Ok, b.clone(), ByteBuf::new())),
                    TaskResult::Error {
                        outcome,
                        output,
                        stderr,
                    } => Some((outcome.clone(), output.clone(), stderr.clone())),
                    TaskResult::Failed { .. } => None,
                }
            }
            (_, accepted, _) => accepted,
        };
        let (result, agreeing, disagreeing, label) = match &verdict {
            Verdict::Accepted {
                agreeing,
                disagreeing,
                ..
            } => {
                let (outcome, output, stderr) = accepted.unwrap_or((
                    Outcome::HostError("accepted output missing".into()),
                    ByteBuf::new(),
                    ByteBuf::new(),
                ));
                let (result, label) = if outcome.is_ok() {
                    (TaskResult::Output(output), "accepted")
                } else {
                    (
                        TaskResult::Error {
                            outcome,
                            output,
                            stderr,
                        },
                        "accepted_error",
                    )
                };
                (result, agreeing.clone(), disagreeing.clone(), label)
            }
            Verdict::Failed { reason, votes } => {
                let why = match reason {
                    FailReason::NoQuorum => format!(
                        "no {} replicas agreed ({} different results)",
                        self.snapshot.spec.policy.quorum,
                        votes.len()
                    ),
                    FailReason::TooManyAttempts => {
                        "too many replicas were lost or gave no verdict".to_string()
                    }
                    FailReason::NoWorkers => "no eligible worker is left for this task".to_string(),
                    FailReason::Cancelled => "cancelled by the submitter".to_string(),
                };
                let label = if *reason == FailReason::Cancelled {
                    "cancelled"
                } else {
                    "failed"
                };
                (
                    TaskResult::Failed { reason: why },
                    Vec::new(),
                    Vec::new(),
                    label,
                )
            }
        };
        // The accepted result's digest, and the agreeing workers' signatures of it.
        let accepted_digest = result.outcome_digest();
        let mut attestations: Vec<Attestation> = match accepted_digest {
            Some(d) => offered
                .into_iter()
                .filter(|(digest, a)| *digest == d && agreeing.contains(&a.peer()))
                .map(|(_, a)| a)
                .collect(),
            None => Vec::new(),
        };
        attestations.sort_by_key(|a| a.worker);
        attestations.dedup_by_key(|a| a.worker);
        if label != "cancelled" {
            shared
                .metrics
                .verifications
                .with_label_values(&[label])
                .inc();
        }
        if !disagreeing.is_empty() {
            shared
                .metrics
                .results_rejected
                .inc_by(disagreeing.len() as u64);
            for w in &disagreeing {
                info!(job = %id, task, worker = %w, "result rejected by the quorum");
            }
        }
        if self.snapshot.decided.contains_key(&task) {
            return;
        }
        self.snapshot.decided.insert(
            task,
            DecidedTask {
                task,
                result,
                agreeing,
                disagreeing,
                votes,
                attestations,
                rule: AcceptRule::from_error(error),
            },
        );
        self.unstored.push(task);
        self.log.push(task);
    }

    /// Feeds a batch's answer to the machine.
    fn apply(&mut self, id: JobId, header: &JobHeader, done: BatchDone, shared: &Shared) {
        let now = self.now();
        let BatchDone {
            batch,
            worker,
            tasks,
            outcome,
        } = done;
        shared.add_inflight(worker, -(tasks as i64));
        if let Some(n) = self.mine.get_mut(&worker) {
            *n = n.saturating_sub(tasks);
            if *n == 0 {
                self.mine.remove(&worker);
            }
        }
        match outcome {
            BatchOutcome::Ran(signed) => {
                let valid = PeerId::from_public_key(&signed.worker) == worker
                    && signed.job == id
                    && signed.verify(&worker);
                if !valid {
                    warn!(job = %id, %worker, "results with a bad signature: counted as lost");
                    self.machine.handle_batch_lost(now, batch);
                    return;
                }
                // The coordinator hashes what it got (a worker's own digest
                // is not trusted) and checks each vote's attestation: a vote
                // without a valid one would be a result no client can check.
                let mut checked = Vec::with_capacity(signed.results.len());
                for r in signed.results {
                    let vote = match outcome::digest(&r.outcome, &r.output) {
                        Some(digest) => {
                            let attestation = r.attestation.map(|signature| Attestation {
                                worker: signed.worker,
                                signature,
                            });
                            match (header.claim(id, r.task, digest), attestation) {
                                (Some(c), Some(a)) if c.verify(&a) => Some((digest, a)),
                                _ => {
                                    warn!(job = %id, task = r.task, %worker, "a vote without a valid attestation: the batch counts as lost");
                                    self.machine.handle_batch_lost(now, batch);
                                    return;
                                }
                            }
                        }
                        None => {
                            debug!(job = %id, task = r.task, %worker, outcome = %r.outcome, "no verdict");
                            None
                        }
                    };
                    // Diagnostics of an error only, and only the start.
                    let mut stderr = r.stderr;
                    if r.outcome.is_ok() {
                        stderr = ByteBuf::new();
                    }
                    stderr.truncate(chorus_sdk::wire::STDERR_SHIPPED);
                    checked.push((r.task, vote, r.outcome, r.output, stderr));
                }
                let mut answers = Vec::with_capacity(checked.len());
                for (task, vote, outcome, output, stderr) in checked {
                    let answer = match vote {
                        Some((digest, a)) => {
                            let offered = self.attests.entry(task).or_default();
                            if !offered.iter().any(|(_, o)| o.worker == a.worker) {
                                offered.push((digest, a));
                            }
                            Answer::Vote {
                                digest,
                                payload: (outcome, output, stderr),
                            }
                        }
                        None => Answer::NoVerdict,
                    };
                    answers.push((task, answer));
                }
                shared.note_delivered(worker);
                self.machine.handle_batch_done(now, batch, answers);
            }
            BatchOutcome::Busy => self.machine.handle_batch_busy(now, batch),
            BatchOutcome::Lost(why) => {
                debug!(job = %id, %worker, reason = %why, tasks, "replicas lost");
                self.machine.handle_batch_lost(now, batch);
            }
        }
    }
}

/// A page of final results of `snapshot` from task `from`, with their
/// attestations (and the header on the page that starts at task 0), as much
/// as fits in [`PAGE_BYTES`], with `status`.
pub(super) fn page_of(
    snapshot: &JobSnapshot,
    header: &JobHeader,
    from: u32,
    status: JobStatus,
) -> ResultsPage {
    let mut results = Vec::new();
    let mut bytes = 0usize;
    let mut next = None;
    for (&i, d) in snapshot.decided.range(from..) {
        let size = match &d.result {
            TaskResult::Output(b) => b.len(),
            TaskResult::Error { output, stderr, .. } => output.len() + stderr.len() + 64,
            TaskResult::Failed { reason } => reason.len(),
        } + 16
            + d.attestations.len() * 112;
        if !results.is_empty() && bytes + size > PAGE_BYTES {
            next = Some(i);
            break;
        }
        bytes += size;
        results.push(ProvedResult {
            task: i,
            result: d.result.clone(),
            attestations: d.attestations.clone(),
            rule: d.rule,
        });
    }
    ResultsPage {
        status,
        header: (from == 0).then(|| Box::new(header.clone())),
        results,
        next,
    }
}

/// Drives one job until every task is decided and every batch is back.
pub(super) async fn drive(shared: Arc<Shared>, handle: Arc<JobHandle>) {
    let id = handle.id;
    let (tx, mut rx) = mpsc::unbounded_channel::<BatchDone>();
    // Tasks decided while the job was restored (a takeover) are stored and
    // copied at once.
    let mut checkpoint = true;
    loop {
        let (performed, finished, next) = {
            let Ok(mut st) = handle.state.lock() else {
                return;
            };
            let now = st.now();
            if !st.machine.is_done() {
                // Jobs with tasks waiting split each worker's allowance.
                if st.machine.pending() > 0 {
                    shared.hungry.insert(id, ());
                } else {
                    shared.hungry.remove(&id);
                }
                let st = &mut *st;
                let candidates = shared.candidates(&mut st.addrs, &st.mine);
                let mut placement = shared.config.placement;
                st.machine.place(now, candidates, &mut placement);
            } else {
                shared.hungry.remove(&id);
            }
            st.machine.handle_tick(now);
            let performed = st.perform(id, &handle.bundle, &shared);
            let next = st
                .machine
                .poll_timeout()
                .map(|t| Duration::from_millis(t.saturating_sub(st.now())));
            (performed, st.machine.is_finished(), next)
        };
        if performed.changed {
            handle.version.send_modify(|v| *v += 1);
        }
        for (batch, worker, addr, run) in performed.sends {
            let shared = shared.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let tasks = run.tasks.len();
                let outcome = send_batch(&shared, worker, addr, run).await;
                let _ = tx.send(BatchDone {
                    batch,
                    worker,
                    tasks,
                    outcome,
                });
            });
        }
        if checkpoint || performed.checkpoint {
            shared.persist_and_replicate(&handle).await;
            checkpoint = false;
        }
        if finished {
            shared.hungry.remove(&id);
            break;
        }
        // At least a few ms: a timer the machine reports as due is handled
        // by the next round, never in a hot loop.
        let replan = shared.config.replan_interval;
        let wait = next
            .unwrap_or(replan)
            .min(replan)
            .max(Duration::from_millis(5).min(replan));
        tokio::select! {
            got = rx.recv() => {
                let mut got = got;
                let Ok(mut st) = handle.state.lock() else { return };
                while let Some(done) = got {
                    st.apply(id, &handle.header, done, &shared);
                    got = rx.try_recv().ok();
                }
            }
            _ = handle.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
    shared.persist_and_replicate(&handle).await;
}

/// Sends one batch to a worker (directly when the worker is this node).
async fn send_batch(
    shared: &Arc<Shared>,
    worker: PeerId,
    addr: SocketAddr,
    run: RunTasks,
) -> BatchOutcome {
    // Every task of the batch may run to its wall-clock limit, one after the
    // other; a worker that dies is noticed sooner, when its connection idles out.
    let n = run.tasks.len() as u64;
    let timeout = Duration::from_millis(
        run.limits
            .wall_ms
            .saturating_mul(n.saturating_add(1))
            .min(3_600_000),
    ) + shared.config.fetch_timeout;
    let answer = if worker == shared.peer_id {
        shared.run_batch(run, shared.peer_id, shared.me.addr).await
    } else {
        let req = Request::Job(JobRequest::Run(Box::new(run)));
        match shared
            .transport
            .call::<_, Response>(addr, Some(worker.ring_pos()), &req, JOB_FRAME_CAP, timeout)
            .await
        {
            Ok(r) => r,
            Err(e) => return BatchOutcome::Lost(e.to_string()),
        }
    };
    match answer {
        Response::Job(JobResponse::Ran(s)) => BatchOutcome::Ran(s),
        Response::Error(e) if e.kind == ErrorKind::Busy => BatchOutcome::Busy,
        Response::Error(e) => BatchOutcome::Lost(e.to_string()),
        other => BatchOutcome::Lost(format!("unexpected answer: {other:?}")),
    }
}

impl Shared {
    /// The workers to place on: every capacity record known, with the slots
    /// a job with `mine` in flight may still fill there, and the worker's
    /// reputation; fills `addrs`.
    ///
    /// A coordinator allows cores × queue per core tasks in flight at a
    /// worker. The jobs with tasks waiting split that allowance evenly
    /// (rounded up): placement runs per job, and the job whose batches come
    /// back first would otherwise refill every place before a small job's
    /// driver looks again. A job gets its share at once, even while the
    /// others still have more than theirs in flight, so the total may reach
    /// twice the allowance (the hard cap), never more.
    fn candidates(
        &self,
        addrs: &mut HashMap<PeerId, SocketAddr>,
        mine: &HashMap<PeerId, usize>,
    ) -> Vec<Candidate<PeerId>> {
        let mut out = Vec::new();
        let sharing = self.hungry.len().max(1);
        let records = self.capacity.list();
        let median_speed = {
            let mut speeds: Vec<u64> = records.iter().map(|s| s.record.fuel_per_sec).collect();
            speeds.sort_unstable();
            speeds.get(speeds.len() / 2).copied().unwrap_or(u64::MAX)
        };
        // One look at the table for all candidates, not one lock per worker.
        let reputation = self.reputation.lock().ok();
        let now = super::now_ms();
        for s in records {
            let r = &s.record;
            let id = r.peer_id();
            // Claims are capped by what this coordinator has seen: cores by
            // the batches the worker returned with valid results, speed (the
            // placement rank) by the table's median claim.
            let cores = r.cores.min(self.proven_cores(id));
            let total = (cores as usize).saturating_mul(self.config.queue_per_core);
            let share = total.div_ceil(sharing);
            // A job below its share gets it even while others' batches fill
            // the allowance (they shrink to their shares as they come back);
            // twice the allowance is the hard cap per worker.
            let allowance = share
                .saturating_sub(mine.get(&id).copied().unwrap_or(0))
                .min(total.saturating_mul(2).saturating_sub(self.inflight_of(id)));
            // The network is that of the address this coordinator reaches
            // the worker at: a connection there, pinned to the worker's key,
            // is what every batch takes, so a claim of another address only
            // makes the worker unreachable.
            out.push(Candidate {
                id,
                free_slots: u32::try_from(allowance).unwrap_or(u32::MAX),
                fuel_per_sec: r.fuel_per_sec.min(median_speed),
                reputation: reputation.as_ref().map_or(0, |r| r.score(&id)),
                network: self.network(r.addr),
                trust: reputation
                    .as_ref()
                    .map_or(Default::default(), |r| r.trust(&id, now)),
            });
            addrs.insert(id, r.addr);
        }
        out
    }

    /// Writes newly decided tasks to the store and copies the job to the
    /// backups (the whole job to a backup that has not seen it).
    pub(super) async fn persist_and_replicate(&self, handle: &JobHandle) {
        let id = handle.id;
        let (fresh, cancelled, failovers, log_len) = {
            let Ok(mut st) = handle.state.lock() else {
                return;
            };
            let fresh: Vec<DecidedTask> = std::mem::take(&mut st.unstored)
                .into_iter()
                .filter_map(|t| st.snapshot.decided.get(&t).cloned())
                .collect();
            (
                fresh,
                st.snapshot.cancel.clone(),
                st.snapshot.failovers,
                st.log.len(),
            )
        };
        if let Some(store) = self.store.clone()
            && (!fresh.is_empty() || cancelled.is_some())
        {
            // One fsync per call: off the async threads.
            let tasks = fresh.clone();
            let cancel = cancelled.clone();
            let r = tokio::task::spawn_blocking(move || {
                if !tasks.is_empty() {
                    store.add_decided(super::Role::Primary, id, &tasks)?;
                }
                if let Some(signature) = cancel {
                    store.set_cancelled(super::Role::Primary, id, &signature)?;
                }
                Ok::<(), super::StoreError>(())
            })
            .await;
            let failed = match r {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(e) => Some(e.to_string()),
            };
            if let Some(e) = failed {
                // Kept for the next checkpoint: nothing decided is dropped.
                warn!(job = %id, error = %e, "could not store job state; will retry");
                self.metrics.job_store_errors.inc();
                if let Ok(mut st) = handle.state.lock() {
                    let mut again: Vec<u32> = fresh.iter().map(|d| d.task).collect();
                    again.append(&mut st.unstored);
                    st.unstored = again;
                }
            }
        }
        let targets = self.backup_targets(id).await;
        let mut sends = Vec::new();
        for peer in targets {
            let copy = {
                let Ok(st) = handle.state.lock() else { return };
                match st.backups.get(&peer.id).copied() {
                    Some(sent) if sent == log_len => continue,
                    Some(sent) => chorus_sdk::job::JobCopy::Update(chorus_sdk::job::JobUpdate {
                        decided: st.log[sent..log_len]
                            .iter()
                            .filter_map(|t| st.snapshot.decided.get(t).cloned())
                            .collect(),
                        cancel: cancelled.clone(),
                        failovers,
                    }),
                    None => chorus_sdk::job::JobCopy::Full(Box::new(st.snapshot.clone())),
                }
            };
            let msg = Request::Job(JobRequest::Replicate {
                coordinator: self.me.clone(),
                job: id,
                copy,
            });
            let transport = self.transport.clone();
            let timeout = self.config.fetch_timeout;
            sends.push(async move {
                let r = transport
                    .call::<_, Response>(peer.addr, Some(peer.id), &msg, JOB_FRAME_CAP, timeout)
                    .await;
                (peer, r)
            });
        }
        // The backups check a copy (the sender's ownership by a lookup, the
        // spec's and the attestations' signatures) before they answer: ask
        // them all at once rather than one after the other.
        let sends: Vec<_> = sends.into_iter().map(tokio::spawn).collect();
        for s in sends {
            let Ok((peer, r)) = s.await else {
                continue;
            };
            let Ok(mut st) = handle.state.lock() else {
                return;
            };
            match r {
                Ok(Response::Job(JobResponse::Ok)) => {
                    st.backups.insert(peer.id, log_len);
                }
                Ok(Response::Job(JobResponse::NeedSpec)) => {
                    st.backups.remove(&peer.id);
                }
                Ok(other) => {
                    debug!(job = %id, peer = %peer.id, answer = ?other, "backup refused the copy");
                    st.backups.remove(&peer.id);
                }
                Err(e) => {
                    debug!(job = %id, peer = %peer.id, error = %e, "could not copy the job");
                    st.backups.remove(&peer.id);
                }
            }
        }
    }

    /// The first successors (not this node) that keep copies of our jobs.
    ///
    /// When a node joined between our predecessor and us and now owns `job`,
    /// it gets a copy too: clients are routed to it, and it forwards them to
    /// us (the coordinator named in its copy) as long as we run the job.
    async fn backup_targets(&self, job: JobId) -> Vec<Peer> {
        let Ok(view) = self.ring.view().await else {
            return Vec::new();
        };
        let mut out: Vec<Peer> = Vec::new();
        let owner_elsewhere = view
            .predecessor
            .as_ref()
            .is_some_and(|p| !job.0.in_open_closed(p.id, self.me.id));
        if owner_elsewhere
            && let Ok(done) = self.ring.lookup(job.0).await
            && done.owner.id != self.me.id
        {
            out.push(done.owner);
        }
        for p in view.successors {
            if p.id != self.me.id && !out.iter().any(|q| q.id == p.id) {
                out.push(p);
            }
            if out.len() >= self.config.replicate_to + usize::from(owner_elsewhere) {
                break;
            }
        }
        out
    }
}
