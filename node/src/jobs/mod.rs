//! Jobs on the grid: the coordinator that places, verifies and replicates a
//! job's tasks, the worker that runs them, and the store that keeps both.
//!
//! - A client's request may reach any node; unless it is already marked as
//!   forwarded, the node looks up the owner of the job id and forwards it
//!   there (`routing.rs`, the one place that does).
//! - The owner (the coordinator) verifies the job, stores it, copies it to its
//!   first successors, acknowledges it, and runs one driver task per job
//!   (`coordinator.rs`) that feeds `chorus-core`'s
//!   [`JobMachine`](chorus_core::jobs::JobMachine) (placement, quorum,
//!   retries) and performs its actions; metrics are recorded there, from the
//!   actions.
//! - A worker (`worker.rs`) runs a batch only for a job whose signed terms it
//!   holds (`terms.rs`: fetched once per job from the batch's sender, checked
//!   against the submitter's signature) and only tasks that match them; it
//!   fetches the bundle from the sender if it lacks it (`flights.rs`: one
//!   fetch per bundle at a time, with a timeout), verifies it, runs the batch
//!   in its sandbox and returns signed results.
//! - Copies (`replication.rs`): every backup checks, twice a second, whether
//!   it now owns a job it holds a copy of (its coordinator died and the ring
//!   healed around it); if so it carries the job on from the copy.
//! - One [`JobSnapshot`] shape is stored (`store.rs`, redb), copied and taken
//!   over from.
//!
//! # Layout
//!
//! - `mod.rs`: the service ([`Jobs`]), its configuration, the dispatch of
//!   [`JobRequest`]s, metrics sync and the background loop.
//! - `routing.rs`: owner lookup and forwarding; status, watch, results, cancel.
//! - `coordinator.rs`: the driver of one job's state machine.
//! - `replication.rs`: copies of other coordinators' jobs (checked: the
//!   sender, the spec's signature, every decided task's attestations, a
//!   cancel's signature), takeovers, expiry.
//! - `worker.rs`: checking a batch against its job's terms, running it in the
//!   sandbox, attesting each verdict; serving bundles and terms.
//! - `terms.rs`: the verified terms of jobs a worker runs, bounded.
//! - `flights.rs`: single-flight fetches (bundles, terms) with timeouts.
//! - `chaos.rs`: the `--chaos` adversaries (`forge-results`, `forge-copies`) and [`Chaos`]
//!   (`corrupt-chunks` is played by `crate::blobs`).
//! - `store.rs`: the job store.

pub(crate) mod chaos;
mod coordinator;
mod files;
pub(crate) mod flights;
mod gate;
mod replication;
mod routing;
mod store;
mod terms;
mod worker;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chorus_core::RingPos;
use chorus_core::jobs::{MachineConfig, PlacementPolicy, Reputation, Verdict};
use chorus_sdk::attest::member_message;
use chorus_sdk::bundle::{BundleId, VerifiedBundle};
use chorus_sdk::identity::{Identity, PeerId};
use chorus_sdk::job::{
    JobError, JobId, JobRequest, JobSnapshot, MAX_BATCH_TASKS, WorkerReputation,
};
use chorus_sdk::members::Members;
use chorus_sdk::transport::Transport;
use chorus_sdk::wire::{ErrorKind, Peer, Response, WireError};
use dashmap::DashMap;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::blobs::Blobs;
use crate::capacity::Capacity;
use crate::metrics::NodeMetrics;
use crate::ring_actor::RingHandle;
use crate::sandbox::Engine;
use coordinator::JobHandle;
use replication::Backup;
pub use store::{Role, Store, StoreError};
pub use worker::outcome_label;

pub use chaos::Chaos;

/// Most bundle or terms fetches a worker has in flight at once.
const MAX_FETCHES: usize = 8;

/// Which runtimes ([`chorus_sdk::runtime`]) a worker accepts tasks of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AcceptRuntimes {
    /// None: tasks that name a runtime are refused (the coordinator places
    /// them elsewhere).
    None,
    /// Any signed runtime.
    All,
    /// Only these, by id.
    Only(Vec<chorus_sdk::runtime::RuntimeId>),
}

impl AcceptRuntimes {
    /// Whether tasks of runtime `id` are run here.
    pub fn accepts(&self, id: &chorus_sdk::runtime::RuntimeId) -> bool {
        match self {
            AcceptRuntimes::None => false,
            AcceptRuntimes::All => true,
            AcceptRuntimes::Only(ids) => ids.contains(id),
        }
    }

    /// From the values of `--accept-runtime` (`all`, `none`, or ids; repeatable).
    pub fn parse(values: &[String]) -> Result<AcceptRuntimes, String> {
        let mut ids = Vec::new();
        for v in values {
            match v.as_str() {
                "all" if values.len() == 1 => return Ok(AcceptRuntimes::All),
                "none" if values.len() == 1 => return Ok(AcceptRuntimes::None),
                "all" | "none" => return Err(format!("--accept-runtime {v} stands alone")),
                id => ids.push(id.parse()?),
            }
        }
        Ok(if ids.is_empty() {
            AcceptRuntimes::None
        } else {
            AcceptRuntimes::Only(ids)
        })
    }
}

/// Tuning of the job service.
#[derive(Clone, Debug)]
pub struct JobsConfig {
    /// Most tasks in one batch sent to one worker. Default 64; at most
    /// [`MAX_BATCH_TASKS`] are sent, whatever is set (workers refuse more).
    pub batch_tasks: usize,
    /// Tasks a coordinator keeps in flight per core of a worker (split among
    /// its jobs with tasks waiting; twice this at most while they rebalance).
    /// A worker accepts four times this per donated core before it says
    /// busy, at most half of that per submitter, and at most half of it in
    /// one batch. Default 32.
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
    /// How replicas are placed. Default power of two choices.
    pub placement: PlacementPolicy,
    /// How often backups check whether they now own a job. Default 500 ms.
    pub takeover_interval: Duration,
    /// How long a backup waits for a coordinator's answer before it takes the
    /// job over. Default 2 s.
    pub liveness_timeout: Duration,
    /// How long a finished job (and a finished copy) is kept for its
    /// client, in memory and on disk. Default 1 hour.
    pub keep_done: Duration,
    /// How long an unfinished copy whose coordinator stopped sending updates
    /// is kept (this node takes the job over if it comes to own it, before
    /// that). Default 24 hours.
    pub keep_unfinished: Duration,
    /// Random lookups per takeover tick while a job runs here, to meet
    /// workers beyond the capacity records gossip brings. Default 2.
    pub sample_lookups: usize,
    /// Replica diversity for IPv4: replicas of one task that may vote
    /// together come from distinct networks of this many leading bits of the
    /// worker's address. Default 24 (one per /24); 32 means one per address.
    pub diversity_v4: u32,
    /// Replica diversity for IPv6, in leading bits. Default 48 (one per /48).
    pub diversity_v6: u32,
    /// Which runtimes this worker runs tasks of (`--accept-runtime`).
    /// Default: none (compiling a 100 MB interpreter costs a donor a minute
    /// of CPU, so a donor opts in).
    pub accept_runtimes: AcceptRuntimes,
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
            placement: PlacementPolicy::TwoChoices,
            takeover_interval: Duration::from_millis(500),
            liveness_timeout: Duration::from_secs(2),
            keep_done: Duration::from_secs(3600),
            keep_unfinished: Duration::from_secs(24 * 3600),
            sample_lookups: 2,
            diversity_v4: 24,
            diversity_v6: 48,
            accept_runtimes: AcceptRuntimes::None,
        }
    }
}

/// Cores of any worker's claim a coordinator believes before it delivered.
pub const UNPROVEN_CORES: u32 = 4;
/// Most workers whose deliveries a coordinator tracks (cleared past it).
const MAX_TRACKED_WORKERS: usize = 4096;

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
    /// Blobs: the store, the fetcher, serving and uploads.
    pub blobs: Blobs,
}

/// Why the job service could not start.
#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    /// The job store could not be opened (another node on the same data dir,
    /// a damaged file, no permission); nothing was changed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Everything the service's parts share.
pub(crate) struct Shared {
    identity: Arc<Identity>,
    me: Peer,
    peer_id: PeerId,
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
    inflight: DashMap<PeerId, usize>,
    /// Batches each worker returned with valid results (this coordinator's
    /// evidence of its capacity; bounded by [`MAX_TRACKED_WORKERS`]).
    delivered: DashMap<PeerId, u32>,
    /// Workers' reputation with this coordinator, over all its jobs. A std
    /// mutex: held only to read or bump a score, never across an await.
    reputation: std::sync::Mutex<Reputation<PeerId>>,
    /// Whether the reputation table changed since it was last stored.
    reputation_dirty: std::sync::atomic::AtomicBool,
    bundles: DashMap<BundleId, Arc<VerifiedBundle>>,
    /// Bundles' mounts, environment and runtime, ready to run (bounded).
    prepared: DashMap<BundleId, Arc<files::Prepared>>,
    /// Runtimes fetched and checked, with their compiled interpreters (bounded).
    runtimes: DashMap<chorus_sdk::runtime::RuntimeId, Arc<files::PreparedRuntime>>,
    /// Runtime bundles fetched and verified (bounded), for coordinator and worker.
    runtime_bundles:
        DashMap<chorus_sdk::runtime::RuntimeId, Arc<chorus_sdk::runtime::RuntimeBundle>>,
    /// One runtime fetch at a time.
    runtime_lock: tokio::sync::Mutex<()>,
    /// One bundle fetch per bundle at a time, bundles in parallel, bounded.
    bundle_flights: flights::Flights<BundleId>,
    /// Verified terms of the jobs this worker ran batches for.
    terms: terms::TermsCache,
    /// One terms fetch per job at a time.
    term_flights: flights::Flights<JobId>,
    /// Tasks this worker has accepted and not finished, in total and per
    /// submitter (a std mutex: held to count, never across an await).
    admission: std::sync::Mutex<chorus_core::jobs::Admission<gate::Submitter>>,
    /// The worker's slots, granted fairly among submitters and coordinators.
    slots: Arc<gate::SlotGate>,
    /// Jobs coordinated here that have tasks waiting for a worker: they
    /// split each worker's allowance.
    hungry: DashMap<JobId, ()>,
    /// Serialises promotions of backups.
    promote_lock: tokio::sync::Mutex<()>,
    /// Which attestation signers of copies are ring members.
    members: Members,
    /// Jobs a `forge-copies` node attacks.
    attacked: DashMap<JobId, ()>,
    /// Blobs: what a worker fetches for a job, and serves to others.
    blobs: Blobs,
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
        JobError::Bundle(_) => ErrorKind::BadBundle,
        JobError::Policy(_) => ErrorKind::BadPolicy,
        JobError::NoTasks => ErrorKind::NoTasks,
        JobError::TooManyTasks(_) => ErrorKind::TooManyTasks,
        JobError::InputTooLarge { .. } => ErrorKind::InputTooLarge,
        JobError::ModuleTooLarge { .. } => ErrorKind::ModuleTooLarge,
        JobError::BadSignature | JobError::NotSubmitter => ErrorKind::Forbidden,
    };
    WireError::new(kind, e.to_string())
}

impl Jobs {
    /// Starts the service: opens the store, loads stored jobs and copies,
    /// resumes the jobs, and runs the background loop (takeovers, capacity
    /// refresh, expiry).
    pub fn start(deps: JobsDeps) -> Result<(Jobs, JoinHandle<()>), JobsError> {
        let store = match deps.data_dir.as_deref() {
            Some(dir) => Some(Store::open(dir)?),
            None => None,
        };
        let cores = deps.engine.config().slots;
        let fetch_timeout = deps.config.fetch_timeout;
        // Tasks this worker accepts at once: a queue per donated core, room
        // for a few coordinators at their full allowance.
        let queue = cores
            .saturating_mul(deps.config.queue_per_core)
            .saturating_mul(4)
            .max(2);
        let shared = Arc::new(Shared {
            peer_id: deps.identity.peer_id(),
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
            delivered: DashMap::new(),
            reputation: std::sync::Mutex::new(Reputation::default()),
            reputation_dirty: std::sync::atomic::AtomicBool::new(false),
            bundles: DashMap::new(),
            prepared: DashMap::new(),
            runtimes: DashMap::new(),
            runtime_bundles: DashMap::new(),
            runtime_lock: tokio::sync::Mutex::new(()),
            bundle_flights: flights::Flights::new(
                MAX_FETCHES,
                fetch_timeout + Duration::from_secs(1),
            ),
            terms: terms::TermsCache::default(),
            // A terms fetch may be followed by a bundle fetch, each under
            // `fetch_timeout`.
            term_flights: flights::Flights::new(
                MAX_FETCHES,
                fetch_timeout.saturating_mul(2) + Duration::from_secs(1),
            ),
            admission: std::sync::Mutex::new(chorus_core::jobs::Admission::new(queue)),
            // Every admitted task and every batch's compile may wait at once.
            slots: gate::SlotGate::new(cores, queue.saturating_mul(2)),
            hungry: DashMap::new(),
            promote_lock: tokio::sync::Mutex::new(()),
            members: Members::new(),
            attacked: DashMap::new(),
            blobs: deps.blobs,
        });
        if let Some(store) = &shared.store {
            shared.load_reputation(store);
            for (id, snapshot) in store.load_all(Role::Backup)? {
                shared.backups.insert(
                    id,
                    Arc::new(std::sync::Mutex::new({
                        let header = snapshot.spec.header();
                        Backup::new(None, snapshot, header)
                    })),
                );
            }
            for (id, snapshot) in store.load_all(Role::Primary)? {
                match snapshot.spec.verify() {
                    Ok(bundle) => {
                        info!(job = %id, decided = snapshot.decided.len(), "resuming a stored job");
                        shared.launch(id, snapshot, Arc::new(bundle));
                    }
                    Err(e) => warn!(job = %id, error = %e, "stored job no longer verifies"),
                }
            }
        }
        let bg = shared.clone();
        let task = tokio::spawn(async move { bg.background().await });
        Ok((Jobs { shared }, task))
    }

    /// Answers a membership challenge: our key's signature over the nonce.
    pub fn prove(&self, nonce: &[u8; 32]) -> Response {
        let key = self.shared.identity.public_key();
        Response::Proof {
            public_key: key,
            signature: serde_bytes::ByteBuf::from(
                self.shared
                    .identity
                    .sign(&member_message(nonce, &key))
                    .to_vec(),
            ),
        }
    }

    /// Answers one job request from `from`, whose connection comes from
    /// `addr`: the one dispatch of job traffic.
    pub async fn handle(&self, req: JobRequest, from: PeerId, addr: SocketAddr) -> Response {
        let s = &self.shared;
        if s.chaos.forge_copies {
            let (job, spec) = match &req {
                JobRequest::Submit { spec, .. } => (Some(spec.id()), Some(&**spec)),
                JobRequest::Run(run) => (Some(run.job), None),
                JobRequest::Replicate { job, .. }
                | JobRequest::Status { job, .. }
                | JobRequest::Watch { job, .. }
                | JobRequest::Results { job, .. }
                | JobRequest::Held { job, .. } => (Some(*job), None),
                _ => (None, None),
            };
            if let Some(job) = job {
                s.learn_job(job, spec);
            }
        }
        let forge = match &req {
            JobRequest::Results { job, .. } | JobRequest::Held { job, .. } => {
                s.chaos.forge_results.then_some(*job)
            }
            _ => None,
        };
        let mut resp = self.answer(req, from, addr).await;
        if let Some(job) = forge {
            s.forge_answer(job, &mut resp);
        }
        resp
    }

    async fn answer(&self, req: JobRequest, from: PeerId, addr: SocketAddr) -> Response {
        let s = &self.shared;
        match req {
            JobRequest::Submit { spec, forwarded } => s.submit(*spec, forwarded, addr).await,
            JobRequest::Status { job, forwarded } => {
                s.routed(job, forwarded, routing::Ask::Status).await
            }
            JobRequest::Watch {
                job,
                after,
                wait_ms,
                forwarded,
            } => {
                s.routed(job, forwarded, routing::Ask::Watch { after, wait_ms })
                    .await
            }
            JobRequest::Results {
                job,
                from: first,
                forwarded,
            } => {
                s.routed(job, forwarded, routing::Ask::Results { from: first })
                    .await
            }
            JobRequest::Cancel {
                job,
                signature,
                forwarded,
            } => {
                s.routed(job, forwarded, routing::Ask::Cancel { signature })
                    .await
            }
            JobRequest::Held { job, from: first } => s.held(job, first),
            JobRequest::Run(run) => s.run_batch(*run, from, addr).await,
            JobRequest::Terms { job } => s.serve_terms(job),
            JobRequest::FetchBundle { bundle } => s.serve_bundle(bundle, from),
            JobRequest::Replicate {
                coordinator,
                job,
                copy,
            } => {
                if coordinator.id != from.ring_pos() {
                    return Response::Error(WireError::new(
                        ErrorKind::Forbidden,
                        "a copy must come from the coordinator it names",
                    ));
                }
                s.take_copy(job, coordinator, copy).await
            }
            JobRequest::BlobIndex { .. }
            | JobRequest::Chunk { .. }
            | JobRequest::PutBlob { .. }
            | JobRequest::PutChunk { .. } => s.blobs.handle(req, from).await,
        }
    }

    /// The blob service (a worker fetches a job's blobs with
    /// [`Blobs::get`]).
    pub fn blobs(&self) -> &Blobs {
        &self.shared.blobs
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
        let busy = self.admission().queued();
        let free = self
            .cores
            .saturating_sub(busy)
            .min(self.engine.free_slots());
        self.metrics
            .capacity_slots_free
            .set(i64::try_from(free).unwrap_or(0));
        self.capacity.refresh(u32::try_from(free).unwrap_or(0));
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

    /// The state machine's tuning, from the service's.
    fn machine_config(&self) -> MachineConfig {
        MachineConfig {
            // A worker refuses larger batches, whatever its load.
            batch_tasks: self.config.batch_tasks.clamp(1, MAX_BATCH_TASKS),
            distrust_below: Some(self.config.distrust_below),
            no_worker_grace: u64::try_from(self.config.no_worker_grace.as_millis())
                .unwrap_or(u64::MAX),
            // Calls carry their own timeouts; the machine's is a safety net.
            replica_timeout: u64::MAX / 4,
            checkpoint_interval: u64::try_from(self.config.replicate_interval.as_millis())
                .unwrap_or(u64::MAX),
            diverse: true,
            ..MachineConfig::default()
        }
    }

    /// Runs a job here from its snapshot: a driver task feeds its machine.
    fn launch(
        self: &Arc<Self>,
        id: JobId,
        snapshot: JobSnapshot,
        bundle: Arc<VerifiedBundle>,
    ) -> Arc<JobHandle> {
        self.remember_bundle(bundle.clone());
        let handle = Arc::new(JobHandle::new(id, snapshot, bundle, self.machine_config()));
        self.jobs.insert(id, handle.clone());
        tokio::spawn(coordinator::drive(self.clone(), handle.clone()));
        handle
    }

    /// The reputation table, best first.
    fn reputation_table(&self) -> Vec<WorkerReputation> {
        let Ok(r) = self.reputation.lock() else {
            return Vec::new();
        };
        r.snapshot()
            .into_iter()
            .map(|e| WorkerReputation {
                distrusted: r.trust(&e.worker, now_ms()).distrusted,
                worker: e.worker,
                score: e.record.score,
                agreed: e.record.agreed,
                disagreed: e.record.disagreed,
                spot_passed: e.record.spot_passed,
                spot_failed: e.record.spot_failed,
                streak: e.record.streak,
            })
            .collect()
    }

    /// The network a worker reached at `addr` stands in, for replica
    /// diversity: its IPv4 /`diversity_v4` or IPv6 /`diversity_v6` prefix
    /// ([`crate::capacity::prefix_of`]), the two families kept apart.
    fn network(&self, addr: SocketAddr) -> u128 {
        let (v6, prefix) = crate::capacity::prefix_of(
            addr.ip(),
            self.config.diversity_v4,
            self.config.diversity_v6,
        );
        prefix ^ (u128::from(v6) << 127)
    }

    /// Changes the reputation table and marks it for storing.
    fn with_reputation(&self, f: impl FnOnce(&mut Reputation<PeerId>, u64)) {
        if let Ok(mut r) = self.reputation.lock() {
            f(&mut r, now_ms());
            self.reputation_dirty
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn apply_verdict(&self, v: &Verdict<PeerId>) {
        self.with_reputation(|r, now| r.apply(v, now));
    }

    fn late_vote(&self, w: PeerId, agrees: bool) {
        self.with_reputation(|r, now| {
            if agrees {
                r.record_agree(&w, now);
            } else {
                r.record_disagree(&w, now);
            }
        });
    }

    fn spot_checked(&self, w: PeerId, passed: bool) {
        self.with_reputation(|r, now| r.record_spot_check(&w, passed, now));
    }

    /// Loads the reputation table kept in the store; a table that does not
    /// decode is logged and replaced by an empty one.
    fn load_reputation(&self, store: &Store) {
        match store.load_trust() {
            Ok(Some(bytes)) => match chorus_sdk::stored::decode_trust(&bytes) {
                Ok(table) => {
                    info!(workers = table.len(), "loaded the workers' trust records");
                    if let Ok(mut r) = self.reputation.lock() {
                        *r = table;
                    }
                }
                Err(e) => warn!(error = %e, "stored trust records do not decode; starting afresh"),
            },
            Ok(None) => {}
            Err(e) => warn!(error = %e, "cannot read the stored trust records"),
        }
    }

    /// Stores the reputation table if it changed (bounded by its
    /// `max_entries`).
    fn store_reputation(&self) {
        let Some(store) = &self.store else {
            return;
        };
        if !self
            .reputation_dirty
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            return;
        }
        let bytes = match self.reputation.lock() {
            Ok(r) => chorus_sdk::stored::encode_trust(&r),
            Err(_) => return,
        };
        match bytes {
            Ok(bytes) => {
                if let Err(e) = store.put_trust(&bytes) {
                    warn!(error = %e, "cannot store the workers' trust records");
                    self.reputation_dirty
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                }
            }
            Err(e) => warn!(error = %e, "cannot encode the workers' trust records"),
        }
    }

    /// A worker returned a batch with valid results: one more core of its
    /// claim is believed.
    fn note_delivered(&self, w: PeerId) {
        if self.delivered.len() >= MAX_TRACKED_WORKERS && !self.delivered.contains_key(&w) {
            self.delivered.clear();
        }
        let mut e = self.delivered.entry(w).or_insert(0);
        *e = e.saturating_add(1);
    }

    /// The cores of a worker's claim this coordinator believes: a few for
    /// anyone ([`UNPROVEN_CORES`]), one more per batch it returned with
    /// valid results. A node that claims 1,024 cores gets the slots of a
    /// small machine until it has delivered like a big one.
    fn proven_cores(&self, w: PeerId) -> u32 {
        UNPROVEN_CORES.saturating_add(self.delivered.get(&w).map_or(0, |v| *v))
    }

    fn inflight_of(&self, w: PeerId) -> usize {
        self.inflight.get(&w).map_or(0, |v| *v)
    }

    fn add_inflight(&self, w: PeerId, delta: i64) {
        let mut e = self.inflight.entry(w).or_insert(0);
        *e = if delta >= 0 {
            e.saturating_add(delta as usize)
        } else {
            e.saturating_sub(delta.unsigned_abs() as usize)
        };
    }

    /// Forgets jobs finished longer than `keep_done` ago.
    fn expire_jobs(&self) {
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
            if let Some(store) = &self.store
                && let Err(e) = store.remove(Role::Primary, job)
            {
                warn!(%job, error = %e, "could not remove an expired job from the store");
            }
            info!(%job, "finished job expired");
        }
    }

    /// Takeovers, capacity refreshes and expiry, until the node stops.
    async fn background(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.config.takeover_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut rng = chorus_core::rng::Rng::new(self.me.id.0 ^ 0x5eed);
        loop {
            tick.tick().await;
            self.store_reputation();
            self.refresh_capacity();
            self.expire_jobs();
            self.expire_copies();
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
            let finished: Vec<Arc<JobHandle>> = self
                .jobs
                .iter()
                .filter(|e| e.value().state.lock().is_ok_and(|st| st.is_done()))
                .map(|e| e.value().clone())
                .collect();
            for handle in finished {
                self.persist_and_replicate(&handle).await;
            }
            self.take_over_orphans().await;
        }
    }
}

/// Milliseconds since the Unix epoch: the clock of the trust records, which
/// outlive a restart.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
