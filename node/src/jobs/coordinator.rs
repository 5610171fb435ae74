//! The coordinator side: one driver task per job places replicas on workers,
//! feeds their answers to the quorum logic of `chorus-core`, records decided
//! tasks, and copies the job to the node's successors.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_core::RingPos;
use chorus_core::jobs::{
    Candidate, Digest, FailReason, ResultOutcome, TaskConfig, TaskVerifier, Verdict, choose_workers,
};
use chorus_core::rng::Rng;
use chorus_sdk::bundle::{BundleId, VerifiedBundle};
use chorus_sdk::identity::PeerId;
use chorus_sdk::job::{
    Assignment, DecidedTask, JOB_FRAME_CAP, JobId, JobRequest, JobResponse, JobSpec, JobStatus,
    Rejection, ResultsPage, RunTasks, SignedResults, TaskResult, WorkerReputation,
};
use chorus_sdk::outcome::{self, Outcome};
use chorus_sdk::wire::{Request, Response};
use serde_bytes::ByteBuf;
use tokio::sync::{Notify, mpsc};
use tracing::{debug, info, warn};

use super::Shared;
use super::store::{LogEntry, Role};

/// Most rejections listed in a status.
const MAX_REJECTIONS_SHOWN: usize = 1000;
/// Bytes of results in one page.
const PAGE_BYTES: usize = 16 << 20;

/// A job coordinated here: its state behind a lock, and a bell for its driver.
pub(super) struct JobHandle {
    pub(super) bundle_id: BundleId,
    pub(super) state: std::sync::Mutex<JobState>,
    pub(super) wake: Notify,
}

/// One task's place in the job.
struct TaskSlot {
    verifier: TaskVerifier<RingPos>,
    /// The first outcome and output seen for each digest (until decided).
    candidates: HashMap<Digest, (Outcome, ByteBuf)>,
    result: Option<TaskResult>,
    /// When the task first found no eligible worker, if it still has none.
    starving_since: Option<Instant>,
}

/// What a backup has received so far.
#[derive(Clone, Copy, Default)]
struct BackupProgress {
    sent: usize,
}

/// The state of a coordinated job.
pub(super) struct JobState {
    id: JobId,
    spec: Arc<JobSpec>,
    bundle: Arc<VerifiedBundle>,
    tasks: Vec<TaskSlot>,
    /// Undecided task indices, lowest first.
    open: BTreeSet<u32>,
    /// Decided tasks in order of decision (what backups and the log receive).
    decided: Vec<DecidedTask>,
    persisted: usize,
    backups: HashMap<RingPos, BackupProgress>,
    replicas_run: u64,
    disagreements: u64,
    rejected: Vec<Rejection>,
    cancelled: bool,
    failovers: u32,
    epoch: Instant,
    /// When the last task was decided.
    finished: Option<Instant>,
    rng: Rng,
    batches_in_flight: usize,
}

/// The answer of one batch.
enum BatchOutcome {
    Ran(Box<SignedResults>),
    Busy,
    Lost(String),
}

struct BatchDone {
    worker: RingPos,
    tasks: Vec<u32>,
    outcome: BatchOutcome,
}

impl JobState {
    /// A new job, or one carried on from a copy (`decided`).
    pub(super) fn new(
        id: JobId,
        spec: Arc<JobSpec>,
        bundle: Arc<VerifiedBundle>,
        decided: BTreeMap<u32, DecidedTask>,
        cancelled: bool,
        failovers: u32,
    ) -> JobState {
        let policy = spec.policy;
        let mut config = TaskConfig::for_policy(&policy);
        // Calls carry their own timeout; this is only a safety net.
        config.replica_timeout = u64::MAX / 4;
        let n = spec.inputs.len();
        let mut tasks = Vec::with_capacity(n);
        let mut open = BTreeSet::new();
        let mut log = Vec::new();
        let mut replicas_run = 0u64;
        let mut disagreements = 0u64;
        let mut rejected = Vec::new();
        for i in 0..n {
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            let done = decided.get(&index);
            if let Some(d) = done {
                replicas_run += u64::from(d.votes);
                disagreements += d.disagreeing.len() as u64;
                for w in &d.disagreeing {
                    if rejected.len() < MAX_REJECTIONS_SHOWN {
                        rejected.push(Rejection {
                            task: index,
                            worker: *w,
                        });
                    }
                }
                log.push(d.clone());
            } else {
                open.insert(index);
            }
            tasks.push(TaskSlot {
                verifier: TaskVerifier::new(policy, config),
                candidates: HashMap::new(),
                result: done.map(|d| d.result.clone()),
                starving_since: None,
            });
        }
        let persisted = log.len();
        let mut state = JobState {
            id,
            spec,
            bundle,
            tasks,
            open,
            decided: log,
            persisted,
            backups: HashMap::new(),
            replicas_run,
            disagreements,
            rejected,
            cancelled: false,
            failovers,
            epoch: Instant::now(),
            finished: None,
            rng: Rng::new(id.0.0 ^ 0x9e37_79b9_7f4a_7c15),
            batches_in_flight: 0,
        };
        if cancelled {
            state.cancel();
        }
        state.note_finished();
        state
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether every task has a final result.
    pub(super) fn is_done(&self) -> bool {
        self.open.is_empty()
    }

    /// How long ago the job finished, if it has.
    pub(super) fn finished_for(&self) -> Option<Duration> {
        if !self.is_done() {
            return None;
        }
        Some(self.finished.map_or(Duration::ZERO, |t| t.elapsed()))
    }

    fn note_finished(&mut self) {
        if self.open.is_empty() && self.finished.is_none() {
            self.finished = Some(Instant::now());
        }
    }

    /// Whether the job was cancelled.
    pub(super) fn is_cancelled(&self) -> bool {
        self.cancelled
    }

    /// The spec.
    pub(super) fn spec(&self) -> &Arc<JobSpec> {
        &self.spec
    }

    /// Cancels: every undecided task fails with "cancelled".
    pub(super) fn cancel(&mut self) {
        self.cancelled = true;
        let open = std::mem::take(&mut self.open);
        for i in open {
            let slot = &mut self.tasks[i as usize];
            let result = TaskResult::Failed {
                reason: "cancelled by the submitter".into(),
            };
            slot.result = Some(result.clone());
            slot.candidates.clear();
            self.decided.push(DecidedTask {
                task: i,
                result,
                agreeing: Vec::new(),
                disagreeing: Vec::new(),
                votes: slot.verifier.vote_count(),
            });
        }
        self.note_finished();
    }

    /// The job's progress as clients see it.
    pub(super) fn status(&self, coordinator: chorus_sdk::wire::Peer, shared: &Shared) -> JobStatus {
        let mut pending = 0;
        let mut running = 0;
        for &i in &self.open {
            if self.tasks[i as usize].verifier.running().is_empty() {
                pending += 1;
            } else {
                running += 1;
            }
        }
        let mut verified = 0;
        let mut failed = 0;
        for t in &self.tasks {
            match &t.result {
                Some(r) if r.is_verified() => verified += 1,
                Some(_) => failed += 1,
                None => {}
            }
        }
        JobStatus {
            job: self.id,
            coordinator,
            tasks: u32::try_from(self.tasks.len()).unwrap_or(u32::MAX),
            pending,
            running,
            verified,
            failed,
            replicas_run: self.replicas_run,
            disagreements: self.disagreements,
            rejected: self.rejected.clone(),
            done: self.is_done(),
            cancelled: self.cancelled,
            failovers: self.failovers,
            reputation: shared.reputation_table(),
        }
    }

    /// Final results of tasks `from..`, as many as fit in a page.
    pub(super) fn page(&self, from: u32, status: JobStatus) -> ResultsPage {
        let mut results = Vec::new();
        let mut bytes = 0usize;
        let mut next = None;
        for (i, t) in self.tasks.iter().enumerate().skip(from as usize) {
            let Some(r) = &t.result else { continue };
            let size = match r {
                TaskResult::Output(b) => b.len(),
                TaskResult::Error { output, .. } => output.len() + 64,
                TaskResult::Failed { reason } => reason.len(),
            } + 16;
            if !results.is_empty() && bytes + size > PAGE_BYTES {
                next = u32::try_from(i).ok();
                break;
            }
            bytes += size;
            results.push((u32::try_from(i).unwrap_or(u32::MAX), r.clone()));
        }
        ResultsPage {
            status,
            results,
            next,
        }
    }

    /// Chooses workers for every task that wants replicas, up to each
    /// worker's allowance; returns the batches to send.
    fn plan(&mut self, shared: &Shared) -> Vec<(RingPos, SocketAddr, RunTasks)> {
        if self.open.is_empty() {
            return Vec::new();
        }
        let now = self.now();
        let mut cands: Vec<Candidate<RingPos>> = Vec::new();
        let mut addrs: HashMap<RingPos, SocketAddr> = HashMap::new();
        let mut known: HashSet<RingPos> = HashSet::new();
        for s in shared.capacity.list() {
            let r = &s.record;
            let id = r.peer_id().ring_pos();
            known.insert(id);
            let allowance = (r.cores as usize)
                .saturating_mul(shared.config.queue_per_core)
                .saturating_sub(shared.inflight_of(id));
            cands.push(Candidate {
                id,
                free_slots: u32::try_from(allowance).unwrap_or(u32::MAX),
                fuel_per_sec: r.fuel_per_sec,
                reputation: shared.reputation_of(id),
            });
            addrs.insert(id, r.addr);
        }
        // Workers that keep lying get no work while enough honest ones exist.
        let trusted = cands
            .iter()
            .filter(|c| c.reputation > shared.config.distrust_below)
            .count();
        if trusted >= self.spec.policy.replicas as usize {
            cands.retain(|c| c.reputation > shared.config.distrust_below);
        }
        let batch_cap = shared.config.batch_tasks.max(1);
        let mut per_worker: HashMap<RingPos, Vec<u32>> = HashMap::new();
        let mut full: HashSet<RingPos> = HashSet::new();
        let mut newly_decided = Vec::new();
        for &i in &self.open {
            if cands.iter().all(|c| c.free_slots == 0) {
                break;
            }
            let slot = &mut self.tasks[i as usize];
            let wanted = slot.verifier.wanted_replicas();
            if wanted == 0 {
                continue;
            }
            let excluded = slot.verifier.excluded();
            let mut exclude = excluded.clone();
            exclude.extend(full.iter().copied());
            let chosen = choose_workers(&cands, &exclude, wanted, &mut self.rng);
            if chosen.is_empty() {
                // Nobody at all outside the ones that already had it: the task
                // starves; after a grace period it fails rather than hang.
                if known.iter().all(|k| excluded.contains(k)) {
                    let since = *slot.starving_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > shared.config.no_worker_grace
                        && slot.verifier.running().is_empty()
                    {
                        slot.verifier.fail_no_workers();
                        newly_decided.push(i);
                    }
                }
                continue;
            }
            slot.starving_since = None;
            for w in chosen {
                if slot.verifier.assign(now, w).is_err() {
                    continue;
                }
                let list = per_worker.entry(w).or_default();
                list.push(i);
                if list.len() >= batch_cap {
                    full.insert(w);
                }
                if let Some(c) = cands.iter_mut().find(|c| c.id == w) {
                    c.free_slots = c.free_slots.saturating_sub(1);
                }
                shared.add_inflight(w, 1);
            }
        }
        for i in newly_decided {
            self.decide(i, shared);
        }
        let bundle = self.bundle.id();
        let limits = self.spec.limits;
        let mut out = Vec::new();
        for (w, tasks) in per_worker {
            let Some(addr) = addrs.get(&w).copied() else {
                continue;
            };
            let tasks = tasks
                .into_iter()
                .map(|t| Assignment {
                    task: t,
                    seed: task_seed(self.id, t),
                    input: self.spec.inputs[t as usize].clone(),
                })
                .collect();
            out.push((
                w,
                addr,
                RunTasks {
                    job: self.id,
                    bundle,
                    coordinator: shared.me.addr,
                    limits,
                    tasks,
                },
            ));
        }
        out
    }

    /// Feeds a batch's answer to the verifiers.
    fn apply(&mut self, done: BatchDone, shared: &Shared) {
        let now = self.now();
        let BatchDone {
            worker,
            tasks,
            outcome,
        } = done;
        shared.add_inflight(worker, -(tasks.len() as i64));
        let mut touched = Vec::new();
        match outcome {
            BatchOutcome::Ran(signed) => {
                let key_ok = PeerId::from_public_key(&signed.worker).ring_pos() == worker
                    && signed.job == self.id
                    && signed.verify(&PeerId::from_public_key(&signed.worker));
                if !key_ok {
                    warn!(job = %self.id, %worker, "results with a bad signature: counted as lost");
                    for &t in &tasks {
                        self.tasks[t as usize].verifier.handle_lost(now, &worker);
                        shared.metrics.replicas.with_label_values(&["lost"]).inc();
                        touched.push(t);
                    }
                } else {
                    let by_task: HashMap<u32, &chorus_sdk::job::WorkerResult> =
                        signed.results.iter().map(|r| (r.task, r)).collect();
                    for &t in &tasks {
                        touched.push(t);
                        let Some(r) = by_task.get(&t) else {
                            self.tasks[t as usize].verifier.handle_lost(now, &worker);
                            shared.metrics.replicas.with_label_values(&["lost"]).inc();
                            continue;
                        };
                        // The coordinator hashes what it got: a worker's own
                        // digest is not trusted.
                        match outcome::digest(&r.outcome, &r.output) {
                            Some(d) => {
                                shared.metrics.replicas.with_label_values(&["vote"]).inc();
                                let slot = &mut self.tasks[t as usize];
                                let counted = slot.verifier.handle_result(now, &worker, d);
                                match counted {
                                    ResultOutcome::Counted => {
                                        self.replicas_run += 1;
                                        slot.candidates.entry(d).or_insert_with(|| {
                                            (r.outcome.clone(), r.output.clone())
                                        });
                                    }
                                    ResultOutcome::AfterVerdict { agrees } => {
                                        self.replicas_run += 1;
                                        shared.late_vote(worker, agrees);
                                        if !agrees {
                                            self.disagreements += 1;
                                            shared.metrics.results_rejected.inc();
                                            if self.rejected.len() < MAX_REJECTIONS_SHOWN {
                                                self.rejected.push(Rejection { task: t, worker });
                                            }
                                        }
                                    }
                                    ResultOutcome::Ignored => {}
                                }
                            }
                            None => {
                                shared
                                    .metrics
                                    .replicas
                                    .with_label_values(&["no_verdict"])
                                    .inc();
                                debug!(job = %self.id, task = t, %worker, outcome = %r.outcome, "no verdict");
                                self.tasks[t as usize]
                                    .verifier
                                    .handle_no_verdict(now, &worker);
                            }
                        }
                    }
                }
            }
            BatchOutcome::Busy => {
                for &t in &tasks {
                    self.tasks[t as usize].verifier.handle_busy(now, &worker);
                    shared.metrics.replicas.with_label_values(&["busy"]).inc();
                    touched.push(t);
                }
            }
            BatchOutcome::Lost(why) => {
                debug!(job = %self.id, %worker, reason = %why, tasks = tasks.len(), "replicas lost");
                for &t in &tasks {
                    self.tasks[t as usize].verifier.handle_lost(now, &worker);
                    shared.metrics.replicas.with_label_values(&["lost"]).inc();
                    touched.push(t);
                }
            }
        }
        for t in touched {
            let slot = &self.tasks[t as usize];
            if slot.result.is_none() && slot.verifier.is_done() {
                self.decide(t, shared);
            }
        }
    }

    /// Records a task's verdict: its final result, reputation, metrics.
    fn decide(&mut self, t: u32, shared: &Shared) {
        let slot = &mut self.tasks[t as usize];
        let Some(verdict) = slot.verifier.verdict().cloned() else {
            return;
        };
        if slot.result.is_some() {
            return;
        }
        let (result, agreeing, disagreeing) = match &verdict {
            Verdict::Accepted {
                digest,
                agreeing,
                disagreeing,
            } => {
                let (outcome, output) = slot.candidates.remove(digest).unwrap_or((
                    Outcome::HostError("accepted output missing".into()),
                    ByteBuf::new(),
                ));
                let result = if outcome.is_ok() {
                    shared
                        .metrics
                        .verifications
                        .with_label_values(&["accepted"])
                        .inc();
                    TaskResult::Output(output)
                } else {
                    shared
                        .metrics
                        .verifications
                        .with_label_values(&["accepted_error"])
                        .inc();
                    TaskResult::Error { outcome, output }
                };
                (result, agreeing.clone(), disagreeing.clone())
            }
            Verdict::Failed { reason, votes } => {
                shared
                    .metrics
                    .verifications
                    .with_label_values(&["failed"])
                    .inc();
                let why = match reason {
                    FailReason::NoQuorum => format!(
                        "no {} replicas agreed ({} different results)",
                        self.spec.policy.quorum,
                        votes.len()
                    ),
                    FailReason::TooManyAttempts => {
                        "too many replicas were lost or gave no verdict".to_string()
                    }
                    FailReason::NoWorkers => "no eligible worker is left for this task".to_string(),
                };
                (TaskResult::Failed { reason: why }, Vec::new(), Vec::new())
            }
        };
        shared.apply_verdict(&verdict);
        if !disagreeing.is_empty() {
            self.disagreements += disagreeing.len() as u64;
            shared
                .metrics
                .results_rejected
                .inc_by(disagreeing.len() as u64);
            for w in &disagreeing {
                info!(job = %self.id, task = t, worker = %w, "result rejected by the quorum");
                if self.rejected.len() < MAX_REJECTIONS_SHOWN {
                    self.rejected.push(Rejection {
                        task: t,
                        worker: *w,
                    });
                }
            }
        }
        slot.candidates.clear();
        slot.result = Some(result.clone());
        let votes = slot.verifier.vote_count();
        self.open.remove(&t);
        self.note_finished();
        self.decided.push(DecidedTask {
            task: t,
            result,
            agreeing,
            disagreeing,
            votes,
        });
    }

    /// Decided tasks not yet in the log.
    fn unpersisted(&mut self) -> Vec<DecidedTask> {
        let out = self.decided[self.persisted..].to_vec();
        self.persisted = self.decided.len();
        out
    }
}

/// The seed of a task: the same on every replica, different across tasks.
pub(super) fn task_seed(job: JobId, task: u32) -> u64 {
    let mut x = job.0.0 ^ (u64::from(task)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Drives one job until every task is decided (or it is cancelled).
pub(super) async fn drive(shared: Arc<Shared>, handle: Arc<JobHandle>, id: JobId) {
    let (tx, mut rx) = mpsc::unbounded_channel::<BatchDone>();
    let mut last_replication: Option<Instant> = None;
    loop {
        let batches = {
            let Ok(mut st) = handle.state.lock() else {
                return;
            };
            if st.is_done() && st.batches_in_flight == 0 {
                break;
            }
            if st.is_done() {
                Vec::new()
            } else {
                let b = st.plan(&shared);
                st.batches_in_flight += b.len();
                b
            }
        };
        for (worker, addr, run) in batches {
            let shared = shared.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let tasks: Vec<u32> = run.tasks.iter().map(|a| a.task).collect();
                let outcome = send_batch(&shared, worker, addr, run).await;
                let _ = tx.send(BatchDone {
                    worker,
                    tasks,
                    outcome,
                });
            });
        }
        if last_replication.is_none_or(|t| t.elapsed() >= shared.config.replicate_interval) {
            shared.persist_and_replicate(&handle, id).await;
            last_replication = Some(Instant::now());
        }
        tokio::select! {
            got = rx.recv() => {
                let mut got = got;
                let Ok(mut st) = handle.state.lock() else { return };
                while let Some(done) = got {
                    st.batches_in_flight = st.batches_in_flight.saturating_sub(1);
                    st.apply(done, &shared);
                    got = rx.try_recv().ok();
                }
            }
            _ = handle.wake.notified() => {}
            _ = tokio::time::sleep(shared.config.replan_interval) => {}
        }
    }
    shared.persist_and_replicate(&handle, id).await;
    info!(job = %id, "job done");
}

/// Sends one batch to a worker (directly when the worker is this node).
async fn send_batch(
    shared: &Arc<Shared>,
    worker: RingPos,
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
    let answer = if worker == shared.me.id {
        shared.run_batch(run, worker).await
    } else {
        let req = Request::Job(JobRequest::Run(Box::new(run)));
        match shared
            .transport
            .call::<_, Response>(addr, Some(worker), &req, JOB_FRAME_CAP, timeout)
            .await
        {
            Ok(r) => r,
            Err(e) => return BatchOutcome::Lost(e.to_string()),
        }
    };
    match answer {
        Response::Job(JobResponse::Ran(s)) => BatchOutcome::Ran(s),
        Response::Job(JobResponse::Busy) => BatchOutcome::Busy,
        Response::Error(e) if e.kind == "refused" || e.kind == "busy" => BatchOutcome::Busy,
        Response::Error(e) => BatchOutcome::Lost(e.to_string()),
        other => BatchOutcome::Lost(format!("unexpected answer: {other:?}")),
    }
}

impl Shared {
    /// Writes newly decided tasks to the log and copies them to the first
    /// successors (the whole job to a successor that has not seen it).
    pub(super) async fn persist_and_replicate(&self, handle: &JobHandle, id: JobId) {
        let (fresh, spec, cancelled, failovers, decided_len) = {
            let Ok(mut st) = handle.state.lock() else {
                return;
            };
            (
                st.unpersisted(),
                st.spec.clone(),
                st.cancelled,
                st.failovers,
                st.decided.len(),
            )
        };
        if let Some(store) = &self.store
            && !fresh.is_empty()
            && let Err(e) = store.append(Role::Primary, id, &LogEntry::Decided(fresh))
        {
            warn!(job = %id, error = %e, "could not write job state");
        }
        let targets = self.backup_targets(id).await;
        let mut sends = Vec::new();
        for peer in targets {
            let msg = {
                let Ok(st) = handle.state.lock() else { return };
                let progress = st.backups.get(&peer.id).copied();
                match progress {
                    Some(p) if p.sent == decided_len => continue,
                    Some(p) => JobRequest::Replicate {
                        coordinator: self.me.clone(),
                        spec: None,
                        job: id,
                        decided: st.decided[p.sent..].to_vec(),
                        cancelled,
                        failovers,
                    },
                    None => JobRequest::Replicate {
                        coordinator: self.me.clone(),
                        spec: Some(Box::new((*spec).clone())),
                        job: id,
                        decided: st.decided.clone(),
                        cancelled,
                        failovers,
                    },
                }
            };
            let transport = self.transport.clone();
            let timeout = self.config.fetch_timeout;
            sends.push(async move {
                let r = transport
                    .call::<_, Response>(
                        peer.addr,
                        Some(peer.id),
                        &Request::Job(msg),
                        JOB_FRAME_CAP,
                        timeout,
                    )
                    .await;
                (peer.id, r)
            });
        }
        for s in sends {
            let (peer, r) = s.await;
            let Ok(mut st) = handle.state.lock() else {
                return;
            };
            match r {
                Ok(Response::Job(JobResponse::Ok)) => {
                    st.backups
                        .insert(peer, BackupProgress { sent: decided_len });
                }
                Ok(Response::Job(JobResponse::NeedSpec)) => {
                    st.backups.remove(&peer);
                }
                Ok(other) => {
                    debug!(job = %id, %peer, answer = ?other, "backup refused the copy");
                    st.backups.remove(&peer);
                }
                Err(e) => {
                    debug!(job = %id, %peer, error = %e, "could not copy the job");
                    st.backups.remove(&peer);
                }
            }
        }
    }

    /// The reputation table, best first.
    pub(super) fn reputation_table(&self) -> Vec<WorkerReputation> {
        let Ok(r) = self.reputation.lock() else {
            return Vec::new();
        };
        r.snapshot()
            .into_iter()
            .map(|e| WorkerReputation {
                worker: e.worker,
                score: e.score,
                agreed: e.agreed,
                disagreed: e.disagreed,
            })
            .collect()
    }

    fn reputation_of(&self, w: RingPos) -> i32 {
        self.reputation.lock().map_or(0, |r| r.score(&w))
    }

    fn apply_verdict(&self, v: &Verdict<RingPos>) {
        if let Ok(mut r) = self.reputation.lock() {
            r.apply(v);
        }
    }

    fn late_vote(&self, w: RingPos, agrees: bool) {
        if let Ok(mut r) = self.reputation.lock() {
            if agrees {
                r.record_agree(&w);
            } else {
                r.record_disagree(&w);
            }
        }
    }

    fn inflight_of(&self, w: RingPos) -> usize {
        self.inflight.get(&w).map_or(0, |v| *v)
    }

    fn add_inflight(&self, w: RingPos, delta: i64) {
        let mut e = self.inflight.entry(w).or_insert(0);
        *e = if delta >= 0 {
            e.saturating_add(delta as usize)
        } else {
            e.saturating_sub(delta.unsigned_abs() as usize)
        };
    }
}
