//! The node's network side: the quinn endpoint, the RPC server, and the actor that
//! drives the sans-IO ring of `chorus-core`.
//!
//! One actor task owns the [`RingNode`] state machine (one owner, a bounded inbox,
//! no locks). Stream handlers send it incoming ring requests and get the answer on
//! a oneshot; every [`Transmit`] it emits becomes a spawned RPC whose outcome comes
//! back through the same inbox, so the core always hears about every request.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_core::RingPos;
use chorus_core::ring::{self, Event, LookupDone, LookupError, RequestId, RingNode, Transmit};
use chorus_sdk::capacity::{CapacityError, CapacityRecord};
use chorus_sdk::frame::{self, FrameError, RING_FRAME_CAP};
use chorus_sdk::identity::{Identity, IdentityError, PeerId};
use chorus_sdk::job::{JOB_FRAME_CAP, PeerList};
use chorus_sdk::transport::{self, Transport, TransportError};
use chorus_sdk::wire::{ErrorKind, LookupAnswer, Peer, Request, Response, RingView, WireError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::capacity::{self, Capacity};
use crate::jobs::{Chaos, Jobs, JobsConfig};
use crate::metrics::{self, MetricsError, MetricsSource, NodeMetrics};
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
    /// Testing aid: misbehave on purpose. Default [`Chaos::Off`].
    pub chaos: Chaos,
    /// Jobs: batch sizes, timeouts, replication.
    pub jobs: JobsConfig,
    /// What peers and clients may make this node hold at once.
    pub serve: ServeLimits,
    /// Most bytes of compiled modules kept in `DATA_DIR/modules`. Default 1 GiB.
    pub module_cache_bytes: u64,
}

/// Request bodies up to this many bytes (ring traffic, status, lookups) draw
/// on [`ServeLimits::small_request_memory`]; larger ones (job submissions,
/// batches of task inputs) on [`ServeLimits::large_request_memory`].
pub const SMALL_REQUEST: usize = 64 << 10;

/// Bounds on what the peers and clients of one node can make it hold, so that
/// no sender, hostile or just busy, can exhaust its memory or its tasks.
///
/// A request body is reserved by its announced length before a byte of it is
/// read, and held until the answer is written. A request that does not fit
/// gets a `busy` error at once (senders retry elsewhere or later); nothing
/// waits for room.
#[derive(Debug, Clone)]
pub struct ServeLimits {
    /// Incoming connections served at once; more are refused. Default 1024.
    pub max_connections: usize,
    /// Bytes of large request bodies held at once. Default 256 MiB, four
    /// requests at the job frame cap; raised to one job frame cap if set lower
    /// (or a job at the cap could never be received).
    pub large_request_memory: usize,
    /// Bytes of small request bodies held at once. Default 64 MiB.
    pub small_request_memory: usize,
    /// Time a sender has to deliver a whole request once it opened a stream;
    /// then it is answered `read_timeout`. Default 60 s.
    pub request_read_timeout: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            max_connections: 1024,
            large_request_memory: 4 * JOB_FRAME_CAP,
            small_request_memory: 64 << 20,
            request_read_timeout: Duration::from_secs(60),
        }
    }
}

/// The semaphores behind [`ServeLimits`], shared by the accept loop and every stream.
#[derive(Debug, Clone)]
struct Gate {
    connections: Arc<Semaphore>,
    large: Arc<Semaphore>,
    small: Arc<Semaphore>,
    read_timeout: Duration,
}

impl Gate {
    fn new(limits: &ServeLimits) -> Self {
        Gate {
            connections: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            large: Arc::new(Semaphore::new(
                limits.large_request_memory.max(JOB_FRAME_CAP),
            )),
            small: Arc::new(Semaphore::new(
                limits.small_request_memory.max(SMALL_REQUEST),
            )),
            read_timeout: limits.request_read_timeout,
        }
    }

    /// Room for a request body of `len` bytes, or `Busy` at once.
    fn reserve(&self, len: usize) -> Result<OwnedSemaphorePermit, FrameError> {
        let pool = if len <= SMALL_REQUEST {
            &self.small
        } else {
            &self.large
        };
        let permits = u32::try_from(len).map_err(|_| FrameError::Busy { len })?;
        pool.clone()
            .try_acquire_many_owned(permits)
            .map_err(|_| FrameError::Busy { len })
    }
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
            chaos: Chaos::Off,
            jobs: JobsConfig::default(),
            serve: ServeLimits::default(),
            module_cache_bytes: 1 << 30,
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
    /// The capacity record could not be signed.
    #[error(transparent)]
    Capacity(#[from] CapacityError),
    /// The job service could not start (its store is locked by another
    /// node on the same data dir, or damaged); nothing was changed.
    #[error(transparent)]
    Jobs(#[from] crate::jobs::JobsError),
}

/// A handle to the ring actor: lookups and views for the node's services.
#[derive(Clone, Debug)]
pub struct RingHandle {
    inbox: mpsc::Sender<Cmd>,
}

impl RingHandle {
    /// The node's current view of the ring.
    pub async fn view(&self) -> Result<RingView, NodeError> {
        let (reply, rx) = oneshot::channel();
        self.send(Cmd::View { reply }).await?;
        rx.await.map_err(|_| NodeError::Stopped)
    }

    /// Resolves the owner of `key` with an iterative lookup from this node.
    pub async fn lookup(&self, key: RingPos) -> Result<LookupDone<SocketAddr>, NodeError> {
        let (reply, rx) = oneshot::channel();
        self.send(Cmd::Lookup { key, reply }).await?;
        Ok(rx.await.map_err(|_| NodeError::Stopped)??)
    }

    async fn send(&self, cmd: Cmd) -> Result<(), NodeError> {
        self.inbox.send(cmd).await.map_err(|_| NodeError::Stopped)
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
}

#[derive(Debug)]
enum Cmd {
    Incoming {
        from: RingPos,
        request: ring::Request<SocketAddr>,
        reply: oneshot::Sender<ring::Response<SocketAddr>>,
    },
    Outcome {
        id: RequestId,
        response: Option<ring::Response<SocketAddr>>,
    },
    Lookup {
        key: RingPos,
        reply: oneshot::Sender<Result<LookupDone<SocketAddr>, LookupError>>,
    },
    View {
        reply: oneshot::Sender<RingView>,
    },
    Leave {
        reply: oneshot::Sender<()>,
    },
}

impl Node {
    /// Starts a node: loads (or creates) its key, binds the endpoint, joins through
    /// the bootstrap addresses, and serves until [`Node::leave`] or drop of the runtime.
    pub async fn start(config: NodeConfig) -> Result<Node, NodeError> {
        let identity = match &config.data_dir {
            Some(dir) => Identity::load_or_create(dir)?,
            None => Identity::generate()?,
        };
        Self::start_with(config, identity).await
    }

    /// Starts a node with a given identity.
    pub async fn start_with(config: NodeConfig, identity: Identity) -> Result<Node, NodeError> {
        let identity = Arc::new(identity);
        let transport = Transport::server(&identity, config.listen)?;
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
        let capacity = Capacity::new(
            identity.clone(),
            CapacityRecord {
                public_key: identity.public_key(),
                addr: me.addr,
                metrics_addr,
                cores: u32::try_from(cores).unwrap_or(u32::MAX),
                memory_mb: config.memory_mb,
                free_slots: u32::try_from(cores).unwrap_or(u32::MAX),
                fuel_per_sec,
                version: env!("CARGO_PKG_VERSION").to_string(),
                timestamp_ms: capacity::now_ms(),
            },
        )?;
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
        let (tx, rx) = mpsc::channel(4096);
        let ring = RingHandle { inbox: tx.clone() };
        let span = info_span!("node", id = %me.id);
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
        })?;
        tasks.push(jobs_task);
        let services = Services {
            capacity: capacity.clone(),
            jobs: jobs.clone(),
            engine: engine.clone(),
        };
        let _ = scrape.services.set(services.clone());
        let actor = Actor {
            metrics: node_metrics.clone(),
            core,
            start,
            inbox: rx,
            tx: tx.clone(),
            transport: transport.clone(),
            rpc_timeout: config.rpc_timeout,
            lookups: Default::default(),
            capacity: capacity.clone(),
        };
        tasks.push(tokio::spawn(actor.run().instrument(span.clone())));
        tasks.push(tokio::spawn(
            accept_loop(
                transport.clone(),
                tx.clone(),
                services,
                Gate::new(&config.serve),
            )
            .instrument(span),
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
        self.ring.view().await
    }

    /// Resolves the owner of `key` with an iterative lookup from this node.
    pub async fn lookup(&self, key: RingPos) -> Result<LookupDone<SocketAddr>, NodeError> {
        self.ring.lookup(key).await
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

    /// Graceful leave: hands its jobs on, tells predecessor and successor, then
    /// closes the endpoint.
    pub async fn leave(self) {
        let (reply, rx) = oneshot::channel();
        if self.ring.send(Cmd::Leave { reply }).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(3), rx).await;
        }
        for t in &self.tasks {
            t.abort();
        }
        self.transport.close();
    }
}

/// What the stream handlers serve besides the ring.
#[derive(Clone, Debug)]
struct Services {
    capacity: Capacity,
    jobs: Jobs,
    engine: Engine,
}

struct Actor {
    metrics: NodeMetrics,
    core: RingNode<SocketAddr>,
    start: Instant,
    inbox: mpsc::Receiver<Cmd>,
    tx: mpsc::Sender<Cmd>,
    transport: Transport,
    rpc_timeout: Duration,
    lookups: std::collections::HashMap<
        ring::LookupId,
        oneshot::Sender<Result<LookupDone<SocketAddr>, LookupError>>,
    >,
    capacity: Capacity,
}

impl Actor {
    fn now(&self) -> ring::Time {
        self.start.elapsed().as_millis() as ring::Time
    }

    async fn run(mut self) {
        // The join (if any) queued its first transmit before we started.
        self.flush();
        self.update_ring_gauges();
        loop {
            let wake = self.core.poll_timeout().map(|t| {
                let at = self.start + Duration::from_millis(t);
                tokio::time::Instant::from_std(at)
            });
            let cmd = match wake {
                Some(at) => tokio::select! {
                    cmd = self.inbox.recv() => cmd,
                    _ = tokio::time::sleep_until(at) => {
                        let now = self.now();
                        self.core.handle_timeout(now);
                        self.flush();
                        continue;
                    }
                },
                None => self.inbox.recv().await,
            };
            let Some(cmd) = cmd else { break };
            let now = self.now();
            match cmd {
                Cmd::Incoming {
                    from,
                    request,
                    reply,
                } => {
                    let resp = self.core.handle_request_from(now, from, request);
                    let _ = reply.send(resp);
                }
                Cmd::Outcome { id, response } => match response {
                    Some(r) => self.core.handle_response(now, id, r),
                    None => self.core.handle_failure(now, id),
                },
                Cmd::Lookup { key, reply } => {
                    let id = self.core.lookup(now, key);
                    self.lookups.insert(id, reply);
                }
                Cmd::View { reply } => {
                    let _ = reply.send(RingView {
                        me: self.core.me().clone(),
                        predecessor: self.core.predecessor().cloned(),
                        successors: self.core.successors().to_vec(),
                        fingers: self.core.fingers(),
                    });
                }
                Cmd::Leave { reply } => {
                    self.core.leave(now);
                    let mut calls = Vec::new();
                    while let Some(t) = self.core.poll_transmit() {
                        calls.push(self.rpc(t));
                    }
                    self.drain_events();
                    tokio::spawn(async move {
                        for c in calls {
                            let _ = c.await;
                        }
                        let _ = reply.send(());
                    });
                    break;
                }
            }
            self.flush();
        }
        debug!("ring actor stopped");
    }

    /// Sends every pending transmit and handles every pending event.
    fn flush(&mut self) {
        while let Some(t) = self.core.poll_transmit() {
            tokio::spawn(self.rpc(t));
        }
        self.drain_events();
    }

    fn update_ring_gauges(&self) {
        let m = &self.metrics;
        m.ring_successors
            .set(i64::try_from(self.core.successors().len()).unwrap_or(i64::MAX));
        m.ring_fingers
            .set(i64::try_from(self.core.fingers().len()).unwrap_or(i64::MAX));
        m.ring_predecessor_known
            .set(i64::from(self.core.predecessor().is_some()));
    }

    fn drain_events(&mut self) {
        while let Some(ev) = self.core.poll_event() {
            match ev {
                Event::Lookup { id, result } => {
                    match &result {
                        Ok(done) => {
                            self.metrics.lookups.with_label_values(&["ok"]).inc();
                            self.metrics.lookup_hops.observe(f64::from(done.hops));
                        }
                        Err(_) => self.metrics.lookups.with_label_values(&["error"]).inc(),
                    }
                    if let Some(reply) = self.lookups.remove(&id) {
                        let _ = reply.send(result);
                    }
                }
                Event::Joined { successor } => {
                    info!(successor = %successor.id, "joined the ring")
                }
                Event::NeighborsChanged => {
                    self.metrics.ring_neighbor_changes.inc();
                    debug!(
                    predecessor = ?self.core.predecessor().map(|p| p.id),
                    successor = %self.core.successor().id,
                    "neighbours changed"
                    )
                }
                Event::PeerDropped(p) => {
                    self.capacity.forget(p.id);
                    self.metrics.ring_peers_dropped.inc();
                    info!(peer = %p.id, addr = %p.addr, "dropped dead peer")
                }
            }
        }
        // Every time, not only on a neighbour change: the successor list and
        // the fingers grow and shrink without the first successor or the
        // predecessor changing (three atomic stores).
        self.update_ring_gauges();
    }

    /// One ring RPC; its outcome goes back to the actor.
    fn rpc(&self, t: Transmit<SocketAddr>) -> impl Future<Output = ()> + Send + 'static {
        let transport = self.transport.clone();
        let tx = self.tx.clone();
        let timeout = self.rpc_timeout;
        let capacity = self.capacity.clone();
        let request = Request::Ring {
            msg: t.request,
            capacity: capacity.gossip(),
        };
        async move {
            let result: Result<Response, _> = transport
                .call(t.to, t.to_id, &request, RING_FRAME_CAP, timeout)
                .await;
            let response = match result {
                Ok(Response::Ring { msg, capacity: c }) => {
                    capacity.absorb(&c);
                    Some(msg)
                }
                Ok(other) => {
                    warn!(peer = %t.to, answer = ?other, "unexpected answer to a ring request");
                    None
                }
                Err(e) => {
                    debug!(peer = %t.to, error = %e, "ring request failed");
                    None
                }
            };
            let _ = tx.send(Cmd::Outcome { id: t.id, response }).await;
        }
    }
}

/// What the metrics server reads at each scrape.
struct Scrape {
    metrics: NodeMetrics,
    transport: Transport,
    services: std::sync::OnceLock<Services>,
}

impl MetricsSource for Scrape {
    fn metrics_text(&self) -> String {
        self.metrics
            .sync_transport(self.transport.stats(), self.transport.connections());
        if let Some(s) = self.services.get() {
            let cache = s.engine.cache_stats();
            self.metrics
                .sync_module_cache(cache.memory_hits + cache.loaded_from_disk, cache.compiled);
            self.metrics
                .capacity_known_peers
                .set(i64::try_from(s.capacity.list().len()).unwrap_or(i64::MAX));
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

/// Accepts connections until the endpoint closes; each gets its own task.
async fn accept_loop(transport: Transport, tx: mpsc::Sender<Cmd>, services: Services, gate: Gate) {
    while let Some(incoming) = transport.endpoint().accept().await {
        let Ok(slot) = gate.connections.clone().try_acquire_owned() else {
            transport.stats().error("conn_limit");
            warn!(remote = %incoming.remote_address(), "refused connection: too many connections");
            incoming.refuse();
            continue;
        };
        let transport = transport.clone();
        let tx = tx.clone();
        let services = services.clone();
        let gate = gate.clone();
        tokio::spawn(async move {
            // Held for as long as the connection is served.
            let _slot = slot;
            let conn = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    // Wrong ALPN, a certificate that lies about its key, garbage: this
                    // connection only.
                    transport.stats().error("handshake");
                    warn!(error = %e, "refused connection");
                    return;
                }
            };
            let Some(from) = transport::remote_peer(&conn) else {
                transport.stats().error("handshake");
                conn.close(1u32.into(), b"no peer identity");
                return;
            };
            serve_connection(conn, from, transport, tx, services, gate).await;
        });
    }
}

async fn serve_connection(
    conn: quinn::Connection,
    from: PeerId,
    transport: Transport,
    tx: mpsc::Sender<Cmd>,
    services: Services,
    gate: Gate,
) {
    loop {
        let (send, recv) = match conn.accept_bi().await {
            Ok(s) => s,
            Err(e) => {
                debug!(peer = %from, reason = %e, "connection ended");
                return;
            }
        };
        let transport = transport.clone();
        let tx = tx.clone();
        let services = services.clone();
        let gate = gate.clone();
        tokio::spawn(async move {
            serve_stream(send, recv, from, &transport, tx, &services, &gate).await;
        });
    }
}

async fn serve_stream(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    from: PeerId,
    transport: &Transport,
    tx: mpsc::Sender<Cmd>,
    services: &Services,
    gate: &Gate,
) {
    // Job submissions carry a bundle and inputs: the cap is the job cap. The
    // body is reserved against the node's request memory before it is read,
    // and the reader grows its buffer with the bytes that arrive.
    let read = frame::read_reserved(&mut recv, JOB_FRAME_CAP, |len| gate.reserve(len));
    let request: Result<(Request, usize, OwnedSemaphorePermit), FrameError> =
        match tokio::time::timeout(gate.read_timeout, read).await {
            Ok(r) => r,
            Err(_) => Err(FrameError::TimedOut(gate.read_timeout)),
        };
    let (response, _room) = match request {
        Ok((req, _, room)) => (dispatch(req, from, &tx, services).await, Some(room)),
        Err(e) => {
            transport.stats().error(e.kind());
            warn!(peer = %from, error = %e, "bad request");
            let _ = recv.stop(1u32.into());
            (
                Response::Error(WireError::new(e.kind(), e.to_string())),
                None,
            )
        }
    };
    if let Err(e) = frame::write(&mut send, &response, JOB_FRAME_CAP).await {
        transport.stats().error(e.kind());
        debug!(peer = %from, error = %e, "could not answer");
    }
    let _ = send.finish();
}

async fn dispatch(
    req: Request,
    from: PeerId,
    tx: &mpsc::Sender<Cmd>,
    services: &Services,
) -> Response {
    let stopped = || {
        Response::Error(WireError::new(
            ErrorKind::Stopped,
            "the node is shutting down",
        ))
    };
    match req {
        Request::Ring { msg, capacity } => {
            services.capacity.absorb(&capacity);
            let (reply, rx) = oneshot::channel();
            let cmd = Cmd::Incoming {
                from: from.ring_pos(),
                request: msg,
                reply,
            };
            if tx.send(cmd).await.is_err() {
                return stopped();
            }
            rx.await
                .map(|msg| Response::Ring {
                    msg,
                    capacity: services.capacity.gossip(),
                })
                .unwrap_or_else(|_| stopped())
        }
        Request::Peers => Response::Peers(PeerList {
            records: services.capacity.list(),
        }),
        Request::Job(j) => services.jobs.handle(j, from).await,
        Request::RingView => {
            let (reply, rx) = oneshot::channel();
            if tx.send(Cmd::View { reply }).await.is_err() {
                return stopped();
            }
            rx.await
                .map(Response::RingView)
                .unwrap_or_else(|_| stopped())
        }
        Request::Lookup { key } => {
            let (reply, rx) = oneshot::channel();
            if tx.send(Cmd::Lookup { key, reply }).await.is_err() {
                return stopped();
            }
            match rx.await {
                Ok(Ok(done)) => Response::Lookup(LookupAnswer {
                    key: done.key,
                    owner: done.owner,
                    hops: done.hops,
                }),
                Ok(Err(e)) => Response::Error(WireError::new(ErrorKind::Lookup, e.to_string())),
                Err(_) => stopped(),
            }
        }
    }
}

/// A one-shot client call to a node (used by the CLI and tests).
pub async fn call_node(
    node: SocketAddr,
    request: &Request,
    timeout: Duration,
) -> Result<Response, TransportError> {
    let identity = Identity::generate().map_err(|e| TransportError::Endpoint(e.to_string()))?;
    let bind: SocketAddr = if node.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let client = Transport::client(&identity, bind)?;
    let r = client
        .call(node, None, request, JOB_FRAME_CAP, timeout)
        .await;
    client.close();
    r
}
