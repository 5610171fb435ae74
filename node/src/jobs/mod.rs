//! Jobs on the grid: the coordinator that places, verifies and replicates a
//! job's tasks, the worker that runs them, and the store that keeps both.
//!
//! - A client's request may reach any node; unless it is already marked as
//!   forwarded, the node looks up the owner of the job id and forwards it there.
//! - The owner (the coordinator) verifies the job, stores it, copies it to its
//!   first successors, acknowledges it, and runs one driver task per job
//!   (`coordinator.rs`): placement by power of two choices over the capacity
//!   records it knows, batches of tasks per worker, quorum verification with
//!   `chorus-core`'s [`TaskVerifier`](chorus_core::jobs::TaskVerifier),
//!   reputation, and re-sending of lost replicas.
//! - A worker (`worker.rs`) fetches the bundle from the coordinator if it lacks
//!   it, verifies it, runs the batch in its sandbox and returns signed results.
//! - Every backup checks, twice a second, whether it now owns a job it holds a
//!   copy of (its coordinator died and the ring healed around it); if so it
//!   carries the job on from the copy.

mod coordinator;
mod store;
mod worker;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chorus_core::RingPos;
use chorus_core::jobs::Reputation;
use chorus_sdk::bundle::{BundleId, VerifiedBundle};
use chorus_sdk::identity::{Identity, PeerId};
use chorus_sdk::job::{
    DecidedTask, JOB_FRAME_CAP, JobError, JobId, JobRequest, JobResponse, JobSpec, verify_cancel,
};
use chorus_sdk::transport::Transport;
use chorus_sdk::wire::{Peer, Request, Response, WireError};
use dashmap::DashMap;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::capacity::Capacity;
use crate::metrics::NodeMetrics;
use crate::net::RingHandle;
use crate::sandbox::Engine;
use coordinator::{JobHandle, JobState};
pub use store::{Role, Store, StoreError};
pub use worker::outcome_label;

/// Misbehaviour on purpose, to watch verification work. Off by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Chaos {
    /// Behave.
    #[default]
    Off,
    /// Flip bytes in every result this node returns as a worker (and turn every
    /// task error into a made-up success): a liar for tests and demos.
    CorruptResults,
}

/// Tuning of the job service.
#[derive(Clone, Debug)]
pub struct JobsConfig {
    /// Most tasks in one batch sent to one worker. Default 64.
    pub batch_tasks: usize,
    /// Tasks a coordinator keeps in flight per core of a worker, and a worker
    /// accepts per donated core before it says busy. Default 32.
    pub queue_per_core: usize,
    /// Successors that get a copy of every job. Default 2.
    pub replicate_to: usize,
    /// How often a running job's progress is written and copied. Default 200 ms.
    pub replicate_interval: Duration,
    /// How often a driver re-plans without news (new workers, starvation). Default 250 ms.
    pub replan_interval: Duration,
    /// A task with no eligible worker left fails after this long. Default 10 s.
    pub no_worker_grace: Duration,
    /// Timeout of bundle fetches, copies and forwarded requests. Default 10 s.
    pub fetch_timeout: Duration,
    /// Workers at or below this reputation get no work while enough others
    /// exist. Default -50 (five disagreements with nothing good in between).
    pub distrust_below: i32,
    /// How often backups check whether they now own a job. Default 500 ms.
    pub takeover_interval: Duration,
    /// How long a backup waits for a coordinator's answer before it takes the
    /// job over. Default 2 s.
    pub liveness_timeout: Duration,
    /// How long a finished job (and a finished copy) is kept for its
    /// client, in memory and on disk. Default 1 hour.
    pub keep_done: Duration,
    /// Random lookups per takeover tick while a job runs here, to meet
    /// workers beyond the capacity records gossip brings. Default 2.
    pub sample_lookups: usize,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            batch_tasks: 64,
            queue_per_core: 32,
            replicate_to: 2,
            replicate_interval: Duration::from_millis(200),
            replan_interval: Duration::from_millis(250),
            no_worker_grace: Duration::from_secs(10),
            fetch_timeout: Duration::from_secs(10),
            distrust_below: -50,
            takeover_interval: Duration::from_millis(500),
            liveness_timeout: Duration::from_secs(2),
            keep_done: Duration::from_secs(3600),
            sample_lookups: 2,
        }
    }
}

/// What the job service needs from its node.
pub struct JobsDeps {
    /// The node's key (signs results).
    pub identity: Arc<Identity>,
    /// The node itself.
    pub me: Peer,
    /// Its endpoint.
    pub transport: Transport,
    /// Lookups and ring views.
    pub ring: RingHandle,
    /// Capacity records: the workers to choose from.
    pub capacity: Capacity,
    /// The sandbox.
    pub engine: Engine,
    /// Metrics.
    pub metrics: NodeMetrics,
    /// Where job state is kept; `None` keeps it in memory.
    pub data_dir: Option<PathBuf>,
    /// Misbehaviour for tests and demos.
    pub chaos: Chaos,
    /// Tuning.
    pub config: JobsConfig,
}

/// A copy of another coordinator's job.
struct Backup {
    /// When the last copy arrived.
    updated: std::time::Instant,
    coordinator: Option<Peer>,
    spec: Arc<JobSpec>,
    decided: std::collections::BTreeMap<u32, DecidedTask>,
    cancelled: bool,
    failovers: u32,
}

/// Everything the service's parts share.
pub(crate) struct Shared {
    identity: Arc<Identity>,
    me: Peer,
    transport: Transport,
    ring: RingHandle,
    capacity: Capacity,
    engine: Engine,
    metrics: NodeMetrics,
    store: Option<Store>,
    chaos: Chaos,
    config: JobsConfig,
    cores: usize,
    jobs: DashMap<JobId, Arc<JobHandle>>,
    backups: DashMap<JobId, Arc<std::sync::Mutex<Backup>>>,
    /// Tasks this coordinator has in flight per worker.
    inflight: DashMap<RingPos, usize>,
    reputation: std::sync::Mutex<Reputation<RingPos>>,
    bundles: DashMap<BundleId, Arc<VerifiedBundle>>,
    fetch_lock: tokio::sync::Mutex<()>,
    /// Tasks this worker has accepted and not finished.
    worker_inflight: AtomicUsize,
    /// Serialises promotions of backups.
    promote_lock: tokio::sync::Mutex<()>,
}

/// The job service of a node. Cheap to clone.
#[derive(Clone)]
pub struct Jobs {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs")
            .field("me", &self.shared.me)
            .field("jobs", &self.shared.jobs.len())
            .field("backups", &self.shared.backups.len())
            .finish()
    }
}

fn job_error(e: &JobError) -> WireError {
    let kind = match e {
        JobError::Bundle(_) => "bad_bundle",
        JobError::Policy(_) => "bad_policy",
        JobError::NoTasks => "no_tasks",
        JobError::TooManyTasks(_) => "too_many_tasks",
        JobError::InputTooLarge { .. } => "input_too_large",
        JobError::ModuleTooLarge { .. } => "module_too_large",
    };
    WireError::new(kind, e.to_string())
}

fn unknown(job: JobId) -> Response {
    Response::Error(WireError::new(
        "unknown_job",
        format!("no job {job} is known here"),
    ))
}

impl Jobs {
    /// Starts the service: loads stored jobs and backups, resumes the jobs,
    /// and runs the background loop (takeovers, capacity refresh).
    pub fn start(deps: JobsDeps) -> (Jobs, JoinHandle<()>) {
        let store = deps.data_dir.as_deref().map(Store::new);
        let cores = deps.engine.config().slots;
        let shared = Arc::new(Shared {
            identity: deps.identity,
            me: deps.me,
            transport: deps.transport,
            ring: deps.ring,
            capacity: deps.capacity,
            engine: deps.engine,
            metrics: deps.metrics,
            store,
            chaos: deps.chaos,
            config: deps.config,
            cores,
            jobs: DashMap::new(),
            backups: DashMap::new(),
            inflight: DashMap::new(),
            reputation: std::sync::Mutex::new(Reputation::default()),
            bundles: DashMap::new(),
            fetch_lock: tokio::sync::Mutex::new(()),
            worker_inflight: AtomicUsize::new(0),
            promote_lock: tokio::sync::Mutex::new(()),
        });
        if let Some(store) = &shared.store {
            for (id, j) in store.load_all(Role::Backup) {
                shared.backups.insert(
                    id,
                    Arc::new(std::sync::Mutex::new(Backup {
                        updated: std::time::Instant::now(),
                        coordinator: None,
                        spec: Arc::new(j.spec),
                        decided: j.decided,
                        cancelled: j.cancelled,
                        failovers: j.failovers,
                    })),
                );
            }
            for (id, j) in store.load_all(Role::Primary) {
                match j.spec.verify() {
                    Ok(bundle) => {
                        info!(job = %id, decided = j.decided.len(), "resuming a stored job");
                        shared.launch(
                            id,
                            Arc::new(j.spec),
                            Arc::new(bundle),
                            j.decided,
                            j.cancelled,
                            j.failovers,
                        );
                    }
                    Err(e) => warn!(job = %id, error = %e, "stored job no longer verifies"),
                }
            }
        }
        let bg = shared.clone();
        let task = tokio::spawn(async move { bg.background().await });
        (Jobs { shared }, task)
    }

    /// Answers one job request from `from`.
    pub async fn handle(&self, req: JobRequest, from: PeerId) -> Response {
        let s = &self.shared;
        match req {
            JobRequest::Submit { spec, forwarded } => s.submit(*spec, forwarded).await,
            JobRequest::Status { job, forwarded } => {
                s.routed(
                    job,
                    forwarded,
                    JobRequest::Status {
                        job,
                        forwarded: true,
                    },
                )
                .await
            }
            JobRequest::Results {
                job,
                from: first,
                forwarded,
            } => {
                s.routed(
                    job,
                    forwarded,
                    JobRequest::Results {
                        job,
                        from: first,
                        forwarded: true,
                    },
                )
                .await
            }
            JobRequest::Cancel {
                job,
                signature,
                forwarded,
            } => {
                s.routed(
                    job,
                    forwarded,
                    JobRequest::Cancel {
                        job,
                        signature,
                        forwarded: true,
                    },
                )
                .await
            }
            JobRequest::Run(run) => s.run_batch(*run, from.ring_pos()).await,
            JobRequest::FetchBundle { bundle } => s.serve_bundle(bundle, from),
            JobRequest::Replicate {
                coordinator,
                spec,
                job,
                decided,
                cancelled,
                failovers,
            } => {
                if coordinator.id != from.ring_pos() {
                    return Response::Error(WireError::new(
                        "forbidden",
                        "a copy must come from the coordinator it names",
                    ));
                }
                s.take_copy(job, coordinator, spec, decided, cancelled, failovers)
            }
        }
    }

    /// Brings the job gauges and the reputation series up to date.
    pub fn sync_metrics(&self) {
        let s = &self.shared;
        let (mut running, mut done, mut cancelled) = (0i64, 0i64, 0i64);
        for j in s.jobs.iter() {
            if let Ok(st) = j.value().state.lock() {
                if st.is_cancelled() {
                    cancelled += 1;
                } else if st.is_done() {
                    done += 1;
                } else {
                    running += 1;
                }
            }
        }
        let g = &s.metrics.jobs;
        g.with_label_values(&["running"]).set(running);
        g.with_label_values(&["done"]).set(done);
        g.with_label_values(&["cancelled"]).set(cancelled);
        g.with_label_values(&["backup"])
            .set(i64::try_from(s.backups.len()).unwrap_or(i64::MAX));
        let scores: Vec<(String, i32)> = s
            .reputation_table()
            .into_iter()
            .map(|r| (r.worker.to_string(), r.score))
            .collect();
        s.metrics.set_reputation(&scores);
        s.refresh_capacity();
    }

    /// Jobs this node coordinates.
    pub fn coordinated(&self) -> Vec<JobId> {
        self.shared.jobs.iter().map(|e| *e.key()).collect()
    }

    /// Jobs this node holds a copy of.
    pub fn backed_up(&self) -> Vec<JobId> {
        self.shared.backups.iter().map(|e| *e.key()).collect()
    }
}

impl Shared {
    /// Re-announces free slots: donated cores minus the tasks taken on.
    fn refresh_capacity(&self) {
        let busy = self.worker_inflight.load(Ordering::Acquire);
        let free = self
            .cores
            .saturating_sub(busy)
            .min(self.engine.free_slots());
        self.metrics
            .capacity_slots_free
            .set(i64::try_from(free).unwrap_or(0));
        self.capacity.refresh(u32::try_from(free).unwrap_or(0));
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

    /// Whether this node owns `key` by its current view.
    async fn owns(&self, key: RingPos) -> bool {
        let Ok(view) = self.ring.view().await else {
            return false;
        };
        match view.predecessor {
            Some(p) => key.in_open_closed(p.id, self.me.id),
            None => view.successors.iter().all(|s| s.id == self.me.id),
        }
    }

    fn launch(
        self: &Arc<Self>,
        id: JobId,
        spec: Arc<JobSpec>,
        bundle: Arc<VerifiedBundle>,
        decided: std::collections::BTreeMap<u32, DecidedTask>,
        cancelled: bool,
        failovers: u32,
    ) -> Arc<JobHandle> {
        self.remember_bundle(bundle.clone());
        let handle = Arc::new(JobHandle {
            bundle_id: bundle.id(),
            state: std::sync::Mutex::new(JobState::new(
                id, spec, bundle, decided, cancelled, failovers,
            )),
            wake: tokio::sync::Notify::new(),
        });
        self.jobs.insert(id, handle.clone());
        tokio::spawn(coordinator::drive(self.clone(), handle.clone(), id));
        handle
    }

    async fn submit(self: &Arc<Self>, spec: JobSpec, forwarded: bool) -> Response {
        let bundle = match spec.verify() {
            Ok(b) => b,
            Err(e) => return Response::Error(job_error(&e)),
        };
        let id = spec.id();
        if self.jobs.contains_key(&id) {
            return self.accepted(id);
        }
        if !forwarded {
            match self.ring.lookup(id.0).await {
                Ok(done) if done.owner.id != self.me.id => {
                    let req = Request::Job(JobRequest::Submit {
                        spec: Box::new(spec),
                        forwarded: true,
                    });
                    return self.forward(done.owner, &req).await;
                }
                Ok(_) => {}
                Err(e) => {
                    return Response::Error(WireError::new(
                        "unavailable",
                        format!("cannot find the coordinator of job {id}: {e}"),
                    ));
                }
            }
        }
        let live = self.capacity.list().len();
        if let Err(e) = spec.policy.check_workers(live) {
            return Response::Error(WireError::new("not_enough_workers", e.to_string()));
        }
        let spec = Arc::new(spec);
        if let Some(store) = &self.store
            && let Err(e) = store.save_spec(Role::Primary, id, &spec)
        {
            return Response::Error(WireError::new(
                "store",
                format!("could not store job {id}: {e}"),
            ));
        }
        let _ = self.backups.remove(&id);
        let handle = self.launch(id, spec, Arc::new(bundle), Default::default(), false, 0);
        // Copy the job to the successors before acknowledging it, so that the
        // death of this node right after the answer loses nothing.
        self.persist_and_replicate(&handle, id).await;
        self.metrics.jobs_submitted.inc();
        info!(job = %id, "job accepted");
        self.accepted(id)
    }

    fn accepted(&self, job: JobId) -> Response {
        Response::Job(JobResponse::Accepted {
            job,
            coordinator: self.me.clone(),
        })
    }

    async fn forward(&self, owner: Peer, req: &Request) -> Response {
        match self
            .transport
            .call::<_, Response>(
                owner.addr,
                Some(owner.id),
                req,
                JOB_FRAME_CAP,
                self.config.fetch_timeout.saturating_mul(3),
            )
            .await
        {
            Ok(r) => r,
            Err(e) => Response::Error(WireError::new(
                "unavailable",
                format!(
                    "the coordinator {} at {} did not answer: {e}",
                    owner.id, owner.addr
                ),
            )),
        }
    }

    /// Status, results and cancel: answered here when this node coordinates
    /// the job, else forwarded to the owner of its id.
    async fn routed(self: &Arc<Self>, job: JobId, forwarded: bool, onward: JobRequest) -> Response {
        if let Some(h) = self.jobs.get(&job).map(|h| h.clone()) {
            return self.local(&h, onward);
        }
        if !forwarded {
            match self.ring.lookup(job.0).await {
                Ok(done) if done.owner.id != self.me.id => {
                    return self.forward(done.owner, &Request::Job(onward)).await;
                }
                Ok(_) => {}
                Err(e) => {
                    return Response::Error(WireError::new(
                        "unavailable",
                        format!("cannot find the coordinator of job {job}: {e}"),
                    ));
                }
            }
        }
        // We are the owner (by our lookup or the forwarder's): carry the job
        // on from our copy if we have one.
        match self.promote(job).await {
            Some(h) => self.local(&h, onward),
            None => {
                // A copy whose coordinator is alive: ask it.
                let coordinator = self
                    .backups
                    .get(&job)
                    .and_then(|b| b.lock().ok().and_then(|b| b.coordinator.clone()));
                match coordinator {
                    Some(c) if c.id != self.me.id => self.forward(c, &Request::Job(onward)).await,
                    _ => unknown(job),
                }
            }
        }
    }

    fn local(&self, h: &Arc<JobHandle>, req: JobRequest) -> Response {
        let Ok(mut st) = h.state.lock() else {
            return Response::Error(WireError::new("internal", "job state poisoned"));
        };
        match req {
            JobRequest::Status { .. } => Response::Job(JobResponse::Status(Box::new(
                st.status(self.me.clone(), self),
            ))),
            JobRequest::Results { from, .. } => {
                let status = st.status(self.me.clone(), self);
                Response::Job(JobResponse::Results(Box::new(st.page(from, status))))
            }
            JobRequest::Cancel { job, signature, .. } => {
                let Some(key) = st.spec().submitter() else {
                    return Response::Error(WireError::new("forbidden", "job has no submitter"));
                };
                if !verify_cancel(job, &key, &signature) {
                    return Response::Error(WireError::new(
                        "forbidden",
                        format!("only the submitter of job {job} can cancel it"),
                    ));
                }
                if !st.is_done() {
                    st.cancel();
                    if let Some(store) = &self.store {
                        let _ = store.append(Role::Primary, job, &LogEntry::Cancelled);
                    }
                    info!(%job, "job cancelled");
                }
                h.wake.notify_one();
                Response::Job(JobResponse::Status(Box::new(
                    st.status(self.me.clone(), self),
                )))
            }
            _ => Response::Error(WireError::new("internal", "not a local job request")),
        }
    }

    /// Whether the coordinator that sent us a copy of `job` still runs it.
    /// A ring view can be briefly wrong (a stale predecessor while the ring
    /// converges), so a backup asks before it takes a job over.
    async fn coordinator_alive(&self, job: JobId) -> bool {
        let coordinator = self
            .backups
            .get(&job)
            .and_then(|b| b.lock().ok().and_then(|b| b.coordinator.clone()));
        let Some(c) = coordinator else {
            return false;
        };
        if c.id == self.me.id {
            return false;
        }
        let req = Request::Job(JobRequest::Status {
            job,
            forwarded: true,
        });
        matches!(
            self.transport
                .call::<_, Response>(c.addr, Some(c.id), &req, JOB_FRAME_CAP, self.config.liveness_timeout)
                .await,
            Ok(Response::Job(JobResponse::Status(s))) if s.coordinator.id == c.id
        )
    }

    /// Turns a backup copy into a coordinated job, unless its coordinator
    /// still runs it.
    async fn promote(self: &Arc<Self>, job: JobId) -> Option<Arc<JobHandle>> {
        let _one = self.promote_lock.lock().await;
        if let Some(h) = self.jobs.get(&job) {
            return Some(h.clone());
        }
        if !self.backups.contains_key(&job) || self.coordinator_alive(job).await {
            return None;
        }
        let (_, backup) = self.backups.remove(&job)?;
        let b = match backup.lock() {
            Ok(g) => Backup {
                updated: g.updated,
                coordinator: g.coordinator.clone(),
                spec: g.spec.clone(),
                decided: g.decided.clone(),
                cancelled: g.cancelled,
                failovers: g.failovers,
            },
            Err(_) => return None,
        };
        let bundle = match b.spec.verify() {
            Ok(v) => v,
            Err(e) => {
                warn!(%job, error = %e, "backup copy does not verify; dropped");
                return None;
            }
        };
        let failovers = b.failovers.saturating_add(1);
        if let Some(store) = &self.store {
            let r = store
                .save_spec(Role::Primary, job, &b.spec)
                .and_then(|()| {
                    store.append(
                        Role::Primary,
                        job,
                        &LogEntry::Decided(b.decided.values().cloned().collect()),
                    )
                })
                .and_then(|()| store.append(Role::Primary, job, &LogEntry::Failovers(failovers)));
            if let Err(e) = r {
                warn!(%job, error = %e, "could not store a taken-over job");
            }
            if b.cancelled {
                let _ = store.append(Role::Primary, job, &LogEntry::Cancelled);
            }
            store.remove(Role::Backup, job);
        }
        self.metrics.job_failovers.inc();
        info!(%job, decided = b.decided.len(), "taking over a job whose coordinator is gone");
        Some(self.launch(
            job,
            b.spec,
            Arc::new(bundle),
            b.decided,
            b.cancelled,
            failovers,
        ))
    }

    /// Keeps (or updates) a copy of another coordinator's job.
    fn take_copy(
        &self,
        job: JobId,
        coordinator: Peer,
        spec: Option<Box<JobSpec>>,
        decided: Vec<DecidedTask>,
        cancelled: bool,
        failovers: u32,
    ) -> Response {
        if self.jobs.contains_key(&job) {
            // We coordinate it ourselves (a takeover raced the old owner):
            // our state is at least as new.
            return Response::Job(JobResponse::Ok);
        }
        let entry = match (self.backups.get(&job).map(|b| b.clone()), spec) {
            (_, Some(spec)) => {
                if spec.id() != job {
                    return Response::Error(WireError::new(
                        "bad_job",
                        "spec does not match the job id",
                    ));
                }
                if let Err(e) = spec.verify() {
                    return Response::Error(job_error(&e));
                }
                if let Some(store) = &self.store
                    && let Err(e) = store.save_spec(Role::Backup, job, &spec)
                {
                    warn!(%job, error = %e, "could not store a job copy");
                }
                let b = Arc::new(std::sync::Mutex::new(Backup {
                    updated: std::time::Instant::now(),
                    coordinator: Some(coordinator.clone()),
                    spec: Arc::new(*spec),
                    decided: Default::default(),
                    cancelled: false,
                    failovers,
                }));
                self.backups.insert(job, b.clone());
                b
            }
            (Some(b), None) => b,
            (None, None) => return Response::Job(JobResponse::NeedSpec),
        };
        let Ok(mut b) = entry.lock() else {
            return Response::Error(WireError::new("internal", "backup poisoned"));
        };
        if let Some(store) = &self.store {
            if !decided.is_empty() {
                let _ = store.append(Role::Backup, job, &LogEntry::Decided(decided.clone()));
            }
            if cancelled && !b.cancelled {
                let _ = store.append(Role::Backup, job, &LogEntry::Cancelled);
            }
            if failovers != b.failovers {
                let _ = store.append(Role::Backup, job, &LogEntry::Failovers(failovers));
            }
        }
        b.coordinator = Some(coordinator);
        b.updated = std::time::Instant::now();
        for d in decided {
            b.decided.insert(d.task, d);
        }
        b.cancelled |= cancelled;
        b.failovers = failovers;
        Response::Job(JobResponse::Ok)
    }

    /// Forgets jobs and copies finished longer than `keep_done` ago.
    fn expire(&self) {
        let keep = self.config.keep_done;
        let old: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|e| {
                e.value()
                    .state
                    .lock()
                    .is_ok_and(|st| st.finished_for().is_some_and(|d| d > keep))
            })
            .map(|e| *e.key())
            .collect();
        for job in old {
            self.jobs.remove(&job);
            if let Some(store) = &self.store {
                store.remove(Role::Primary, job);
            }
            info!(%job, "finished job expired");
        }
        let old: Vec<JobId> = self
            .backups
            .iter()
            .filter(|e| {
                e.value().lock().is_ok_and(|b| {
                    (b.cancelled || b.decided.len() >= b.spec.inputs.len())
                        && b.updated.elapsed() > keep
                })
            })
            .map(|e| *e.key())
            .collect();
        for job in old {
            self.backups.remove(&job);
            if let Some(store) = &self.store {
                store.remove(Role::Backup, job);
            }
        }
    }

    /// Takeovers and capacity refreshes, until the node stops.
    async fn background(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.config.takeover_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut rng = chorus_core::rng::Rng::new(self.me.id.0 ^ 0x5eed);
        loop {
            tick.tick().await;
            self.refresh_capacity();
            self.expire();
            // While jobs run here, sample the ring: each hop of a lookup
            // answers with capacity records, so a coordinator meets workers
            // beyond what gossip along its own ring links brought.
            let running = self
                .jobs
                .iter()
                .any(|e| e.value().state.lock().is_ok_and(|st| !st.is_done()));
            if running {
                for _ in 0..self.config.sample_lookups {
                    let _ = self.ring.lookup(RingPos(rng.next_u64())).await;
                }
            }
            // Finished jobs stay reachable: a successor that replaced a dead
            // one, or a node that joined in front of us and now owns a job id,
            // gets its copy (running jobs are copied by their drivers).
            let finished: Vec<(JobId, Arc<JobHandle>)> = self
                .jobs
                .iter()
                .filter(|e| e.value().state.lock().is_ok_and(|st| st.is_done()))
                .map(|e| (*e.key(), e.value().clone()))
                .collect();
            for (job, handle) in finished {
                self.persist_and_replicate(&handle, job).await;
            }
            let copies: Vec<JobId> = self.backups.iter().map(|e| *e.key()).collect();
            for job in copies {
                let unfinished = self
                    .backups
                    .get(&job)
                    .and_then(|b| {
                        b.lock()
                            .ok()
                            .map(|b| b.decided.len() < b.spec.inputs.len() && !b.cancelled)
                    })
                    .unwrap_or(false);
                if unfinished && self.owns(job.0).await {
                    self.promote(job).await;
                }
            }
        }
    }
}

use store::LogEntry;
