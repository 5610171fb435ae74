//! A running node: its configuration, start-up (identity, sandbox and its
//! calibration, metrics server, capacity record, ring actor, job service, RPC
//! server, wired together here and nowhere else) and graceful leave.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_core::RingPos;
use chorus_core::ring::{self, LookupDone, LookupError, RingNode};
use chorus_sdk::capacity::{CapacityError, CapacityRecord};
use chorus_sdk::frame::RING_FRAME_CAP;
use chorus_sdk::identity::{Identity, IdentityError, PeerId};
use chorus_sdk::link::LinkEmulation;
use chorus_sdk::transport::{Transport, TransportError};
use chorus_sdk::wire::{Peer, Request, Response, RingView};
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, info, info_span};

use crate::blobs::{BlobStore, Blobs, BlobsConfig};
use crate::capacity::{self, Capacity};
use crate::jobs::{Chaos, Jobs, JobsConfig};
use crate::metrics::{self, MetricsError, MetricsSource, NodeMetrics};
use crate::ring_actor::{Actor, RingError, RingHandle};
use crate::rpc::{Gate, ServeLimits, Services, accept_loop};
use crate::sandbox::{Engine, EngineConfig, SandboxError};

/// Fuel burnt by the start-up speed benchmark (about 15 ms).
const CALIBRATION_FUEL: u64 = 20_000_000;

/// Everything a node needs to start.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// UDP address to listen on.
    pub listen: SocketAddr,
    /// Address announced to peers (default: the bound listen address).
    pub advertise: Option<SocketAddr>,
    /// Members to join through; empty starts a new ring.
    pub bootstrap: Vec<SocketAddr>,
    /// Where the key lives; `None` keeps a fresh key in memory (tests).
    pub data_dir: Option<PathBuf>,
    /// Ring protocol settings.
    pub ring: ring::Config,
    /// Timeout of one ring RPC. Default 1 s: a peer slower than that is dead for the ring.
    pub rpc_timeout: Duration,
    /// Where to serve `/metrics` and `/sd` over HTTP; `None` serves nothing.
    pub metrics: Option<SocketAddr>,
    /// Cores donated: task slots. Default: all cores but one (at least 1).
    pub cores: usize,
    /// Memory donated, in MiB (announced; tasks' memory limits count against it).
    pub memory_mb: u64,
    /// Testing aid: misbehave on purpose. Default [`Chaos::OFF`].
    pub chaos: Chaos,
    /// Jobs: batch sizes, timeouts, replication.
    pub jobs: JobsConfig,
    /// What peers and clients may make this node hold at once.
    pub serve: ServeLimits,
    /// Most bytes of compiled modules kept in `DATA_DIR/modules`. Default 1 GiB.
    pub module_cache_bytes: u64,
    /// Most bytes of blobs kept in `DATA_DIR/blobs` (a temporary directory
    /// without a data dir), complete and in progress. Default 4 GiB.
    pub blob_cache_bytes: u64,
    /// The blob fetcher's tuning.
    pub blob_fetch: crate::blobs::FetchConfig,
    /// Testing aid: delay, jitter and loss on every datagram this node sends
    /// (see [`chorus_sdk::link`]). Default `None`.
    pub emulate_link: Option<LinkEmulation>,
}

/// All cores but one, at least one.
pub fn default_cores() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .saturating_sub(1)
        .max(1)
}

impl NodeConfig {
    /// Defaults for a node on `listen`.
    pub fn new(listen: SocketAddr) -> Self {
        NodeConfig {
            listen,
            advertise: None,
            bootstrap: Vec::new(),
            data_dir: None,
            ring: ring::Config::default(),
            rpc_timeout: Duration::from_secs(1),
            metrics: None,
            cores: default_cores(),
            memory_mb: 2048,
            chaos: Chaos::OFF,
            jobs: JobsConfig::default(),
            serve: ServeLimits::default(),
            module_cache_bytes: 1 << 30,
            blob_cache_bytes: 4 << 30,
            blob_fetch: crate::blobs::FetchConfig::default(),
            emulate_link: None,
        }
    }
}

/// Errors starting or talking to a node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The identity could not be loaded or created.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The endpoint could not be created.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The given identity lacks the identity proof of work: no other node
    /// would talk to it.
    #[error(
        "identity {0} lacks the identity proof of work ({bits} bits): make one with Identity::generate_member",
        bits = chorus_sdk::identity::ID_WORK_BITS
    )]
    NoWork(PeerId),
    /// The node has stopped.
    #[error("the node has stopped")]
    Stopped,
    /// A lookup failed.
    #[error("lookup failed: {0}")]
    Lookup(#[from] LookupError),
    /// The metrics server could not start.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// The sandbox could not start.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// The blob store could not be opened.
    #[error(transparent)]
    Blobs(#[from] crate::blobs::BlobStoreError),
    /// The capacity record could not be signed.
    #[error(transparent)]
    Capacity(#[from] CapacityError),
    /// The job service could not start (its store is locked by another
    /// node on the same data dir, or damaged); nothing was changed.
    #[error(transparent)]
    Jobs(#[from] crate::jobs::JobsError),
    /// Another node (in this process or another) runs on the data dir:
    /// two nodes on one data dir would be one identity twice. Nothing was
    /// opened or changed.
    #[error("data dir {} is in use by another node (its lock file {} is held); give this node its own --data-dir", .0.display(), .0.join(LOCK_FILE).display())]
    DataDirInUse(PathBuf),
    /// The data dir or its lock file could not be created or locked.
    #[error("data dir {}: {source}", .path.display())]
    DataDir {
        /// The data dir.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The file in a data dir a running node holds an exclusive lock on.
pub const LOCK_FILE: &str = "lock";

/// Creates `dir` if needed and takes the exclusive lock on its
/// [`LOCK_FILE`], held as long as the returned file is open (an OS file
/// lock: a crashed node's lock goes with its process).
pub fn lock_data_dir(dir: &Path) -> Result<std::fs::File, NodeError> {
    std::fs::create_dir_all(dir).map_err(|e| NodeError::DataDir {
        path: dir.to_path_buf(),
        source: e,
    })?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_FILE))
        .map_err(|e| NodeError::DataDir {
            path: dir.to_path_buf(),
            source: e,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(NodeError::DataDirInUse(dir.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => Err(NodeError::DataDir {
            path: dir.to_path_buf(),
            source: e,
        }),
    }
}

impl From<RingError> for NodeError {
    fn from(e: RingError) -> Self {
        match e {
            RingError::Stopped => NodeError::Stopped,
            RingError::Lookup(e) => NodeError::Lookup(e),
        }
    }
}

/// A running node: a cheap handle to its actor and endpoint.
#[derive(Debug)]
pub struct Node {
    me: Peer,
    transport: Transport,
    ring: RingHandle,
    tasks: Vec<JoinHandle<()>>,
    metrics: NodeMetrics,
    metrics_addr: Option<SocketAddr>,
    capacity: Capacity,
    engine: Engine,
    jobs: Jobs,
    /// The data dir's lock, released when the node is dropped.
    _lock: Option<std::fs::File>,
}

impl Node {
    /// Starts a node: loads (or creates) its key, binds the endpoint, joins through
    /// the bootstrap addresses, and serves until [`Node::leave`] or drop of the runtime.
    pub async fn start(config: NodeConfig) -> Result<Node, NodeError> {
        // The lock first: a second node on this data dir must not even
        // read (or create) the key.
        let lock = config.data_dir.as_deref().map(lock_data_dir).transpose()?;
        let identity = match &config.data_dir {
            Some(dir) => Identity::load_or_create_member(dir)?,
            None => Identity::generate_member()?,
        };
        Self::start_locked(config, identity, lock).await
    }

    /// Starts a node with a given identity.
    pub async fn start_with(config: NodeConfig, identity: Identity) -> Result<Node, NodeError> {
        let lock = config.data_dir.as_deref().map(lock_data_dir).transpose()?;
        Self::start_locked(config, identity, lock).await
    }

    async fn start_locked(
        config: NodeConfig,
        identity: Identity,
        lock: Option<std::fs::File>,
    ) -> Result<Node, NodeError> {
        if !identity.peer_id().has_work() {
            return Err(NodeError::NoWork(identity.peer_id()));
        }
        let identity = Arc::new(identity);
        let transport = Transport::server_with(&identity, config.listen, config.emulate_link)?;
        let bound = transport
            .endpoint()
            .local_addr()
            .map_err(|e| TransportError::Endpoint(e.to_string()))?;
        let me = Peer {
            id: identity.ring_pos(),
            addr: config.advertise.unwrap_or(bound),
        };
        let cores = config.cores.max(1);
        let mut engine_config = match &config.data_dir {
            Some(dir) => EngineConfig::with_data_dir(dir),
            None => EngineConfig::default(),
        };
        engine_config.slots = cores;
        engine_config.disk_cache_bytes = config.module_cache_bytes;
        let engine = Engine::new(engine_config)?;
        let fuel_per_sec = {
            let engine = engine.clone();
            tokio::task::spawn_blocking(move || engine.fuel_per_second(CALIBRATION_FUEL))
                .await
                .map_err(|e| SandboxError::Worker(e.to_string()))??
        };

        let node_metrics = NodeMetrics::new()?;
        let mut tasks = Vec::new();
        let mut metrics_addr = None;
        let scrape = Arc::new(Scrape {
            metrics: node_metrics.clone(),
            transport: transport.clone(),
            engine: engine.clone(),
            services: std::sync::OnceLock::new(),
        });
        if let Some(addr) = config.metrics {
            let (bound, task) = metrics::serve(addr, scrape.clone()).await?;
            // A wildcard bind is announced with the node's advertised IP, so
            // that `/sd` lists an address Prometheus can scrape.
            let announced = if bound.ip().is_unspecified() {
                SocketAddr::new(me.addr.ip(), bound.port())
            } else {
                bound
            };
            metrics_addr = Some(announced);
            tasks.push(task);
        }
        // `--chaos inflate-capacity` lies about the machine (see `Chaos`).
        let announced_cores = if config.chaos.inflate_capacity {
            crate::jobs::chaos::INFLATED_CORES
        } else {
            u32::try_from(cores).unwrap_or(u32::MAX)
        };
        let capacity = Capacity::new(
            identity.clone(),
            CapacityRecord {
                public_key: identity.public_key(),
                addr: me.addr,
                metrics_addr,
                cores: announced_cores,
                memory_mb: config.memory_mb,
                free_slots: announced_cores,
                fuel_per_sec: if config.chaos.inflate_capacity {
                    u64::MAX
                } else {
                    fuel_per_sec
                },
                version: env!("CARGO_PKG_VERSION").to_string(),
                timestamp_ms: capacity::now_ms(),
                ceiling: Some(engine.config().ceiling),
            },
        )?;
        if config.chaos.inflate_capacity {
            capacity.inflate();
        }
        node_metrics
            .capacity_cores
            .set(i64::try_from(cores).unwrap_or(i64::MAX));
        node_metrics
            .capacity_memory_bytes
            .set(i64::try_from(config.memory_mb.saturating_mul(1 << 20)).unwrap_or(i64::MAX));
        node_metrics
            .capacity_fuel_per_second
            .set(i64::try_from(fuel_per_sec).unwrap_or(i64::MAX));

        let seed = me.id.0 ^ (std::process::id() as u64).rotate_left(32);
        let mut core = RingNode::new(me.clone(), config.ring.clone(), seed);
        let start = Instant::now();
        if !config.bootstrap.is_empty() {
            core.join(0, config.bootstrap.clone());
        }
        let (ring, actor) = Actor::new(
            core,
            start,
            node_metrics.clone(),
            transport.clone(),
            config.rpc_timeout,
            capacity.clone(),
        );
        let span = info_span!("node", id = %me.id);
        let blob_store = match &config.data_dir {
            Some(dir) => BlobStore::open(&dir.join("blobs"), config.blob_cache_bytes)?,
            None => BlobStore::temporary(config.blob_cache_bytes)?,
        };
        let blobs = Blobs::new(
            blob_store,
            transport.clone(),
            node_metrics.blobs.clone(),
            BlobsConfig {
                fetch: config.blob_fetch.clone(),
                corrupt_chunks: config.chaos.corrupt_chunks,
            },
        );
        let (jobs, jobs_task) = Jobs::start(crate::jobs::JobsDeps {
            identity: identity.clone(),
            me: me.clone(),
            transport: transport.clone(),
            ring: ring.clone(),
            capacity: capacity.clone(),
            engine: engine.clone(),
            metrics: node_metrics.clone(),
            data_dir: config.data_dir.clone(),
            chaos: config.chaos,
            config: config.jobs.clone(),
            blobs,
        })?;
        tasks.push(jobs_task);
        let services = Services {
            ring: ring.clone(),
            capacity: capacity.clone(),
            jobs: jobs.clone(),
        };
        let _ = scrape.services.set(services.clone());
        tasks.push(tokio::spawn(actor.run().instrument(span.clone())));
        if config.chaos.flood_capacity {
            tasks.push(tokio::spawn(
                crate::jobs::chaos::flood_capacity(transport.clone(), ring.clone())
                    .instrument(span.clone()),
            ));
        }
        if metrics_addr.is_some() {
            tasks.push(tokio::spawn(
                probe_metrics_hosts(transport.clone(), capacity.clone()).instrument(span.clone()),
            ));
        }
        tasks.push(tokio::spawn(
            accept_loop(transport.clone(), services, Gate::new(&config.serve)).instrument(span),
        ));
        info!(id = %me.id, addr = %me.addr, metrics = ?metrics_addr, cores, fuel_per_sec, "node started");
        Ok(Node {
            me,
            transport,
            ring,
            tasks,
            metrics: node_metrics,
            metrics_addr,
            capacity,
            engine,
            jobs,
            _lock: lock,
        })
    }

    /// This node's ring position and address.
    pub fn me(&self) -> &Peer {
        &self.me
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.transport.peer_id()
    }

    /// The transport (for its counters).
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// The node's metrics.
    pub fn metrics(&self) -> &NodeMetrics {
        &self.metrics
    }

    /// Where `/metrics` and `/sd` are served, if they are.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The node's current view of the ring.
    pub async fn view(&self) -> Result<RingView, NodeError> {
        Ok(self.ring.view().await?)
    }

    /// Resolves the owner of `key` with an iterative lookup from this node.
    pub async fn lookup(&self, key: RingPos) -> Result<LookupDone<SocketAddr>, NodeError> {
        Ok(self.ring.lookup(key).await?)
    }

    /// What this node donates and knows of others.
    pub fn capacity(&self) -> &Capacity {
        &self.capacity
    }

    /// The sandbox.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The job service (coordinator and worker).
    pub fn jobs(&self) -> &Jobs {
        &self.jobs
    }

    /// The blob service: [`Blobs::get`] fetches a blob (or finds it here).
    pub fn blobs(&self) -> &Blobs {
        self.jobs.blobs()
    }

    /// Graceful leave: hands its jobs on, tells predecessor and successor, then
    /// closes the endpoint.
    pub async fn leave(self) {
        self.ring.leave(Duration::from_secs(3)).await;
        for t in &self.tasks {
            t.abort();
        }
        // Wait for the aborted loops to be dropped, so that what they hold
        // (the job store among it) is released when this returns. Bounded:
        // an aborted task ends at its next await.
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        self.transport.close();
    }
}

/// Records probed per round by [`probe_metrics_hosts`].
const PROBES_PER_ROUND: usize = 8;
/// Time between probe rounds.
const PROBE_EVERY: Duration = Duration::from_secs(2);

/// Makes `/sd` complete without trusting records: a node's metrics address
/// is listed only at an IP the node was seen at, so this loop calls each
/// record's address (its identity pinned by the handshake, a membership
/// challenge as the question) and marks the node seen there when it answers.
/// Bounded: [`PROBES_PER_ROUND`] calls every [`PROBE_EVERY`], each under a
/// timeout, only for records not yet seen.
async fn probe_metrics_hosts(transport: Transport, capacity: Capacity) {
    loop {
        tokio::time::sleep(PROBE_EVERY).await;
        for (id, addr) in capacity.unseen_metrics(PROBES_PER_ROUND) {
            let nonce = [0x5d; 32];
            let answer: Result<Response, _> = transport
                .call(
                    addr,
                    Some(id),
                    &Request::Prove { nonce },
                    RING_FRAME_CAP,
                    PROBE_EVERY,
                )
                .await;
            if matches!(answer, Ok(Response::Proof { .. })) {
                capacity.mark_seen(id, addr);
            } else {
                debug!(peer = %id, %addr, "metrics host probe failed");
            }
        }
    }
}

/// What the metrics server reads at each scrape.
struct Scrape {
    metrics: NodeMetrics,
    transport: Transport,
    engine: Engine,
    services: std::sync::OnceLock<Services>,
}

impl MetricsSource for Scrape {
    fn metrics_text(&self) -> String {
        self.metrics
            .sync_transport(self.transport.stats(), self.transport.connections());
        if let Some(s) = self.services.get() {
            let cache = self.engine.cache_stats();
            self.metrics
                .sync_module_cache(cache.memory_hits + cache.loaded_from_disk, cache.compiled);
            self.metrics
                .capacity_known_peers
                .set(i64::try_from(s.capacity.list().len()).unwrap_or(i64::MAX));
            self.metrics.sync_capacity_refused(&s.capacity.refused());
            s.jobs.sync_metrics();
        }
        self.metrics.render()
    }

    fn sd_targets(&self) -> Vec<SocketAddr> {
        // Every node's metrics address arrives with its capacity record.
        self.services
            .get()
            .map(|s| s.capacity.metrics_addrs())
            .unwrap_or_default()
    }
}
