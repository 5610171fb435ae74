//! The actor that drives the sans-IO ring of `chorus-core`.
//!
//! One actor task owns the [`RingNode`] state machine (one owner, a bounded inbox,
//! no locks). Stream handlers send it incoming ring requests and get the answer on
//! a oneshot; every [`Transmit`] it emits becomes a spawned RPC whose outcome comes
//! back through the same inbox, so the core always hears about every request.
//!
//! This module knows the ring, the transport, the capacity gossip and the
//! metrics, and nothing of jobs or of the node that wires it: the job service
//! holds a [`RingHandle`], so the handle's errors are [`RingError`], not the
//! node's error (which wraps the job service's own).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chorus_core::RingPos;
use chorus_core::ring::{self, Event, LookupDone, LookupError, RequestId, RingNode, Transmit};
use chorus_sdk::frame::RING_FRAME_CAP;
use chorus_sdk::transport::Transport;
use chorus_sdk::wire::{Request, Response, RingView};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::capacity::Capacity;
use crate::metrics::NodeMetrics;

/// Commands the actor's inbox holds; senders wait while it is full.
const INBOX: usize = 4096;

/// How many times [`RingHandle::lookup`] tries a lookup that failed as a
/// repairing ring makes lookups fail.
pub const LOOKUP_ATTEMPTS: u32 = 3;

/// The pause between two such attempts: about one stabilize round.
const LOOKUP_RETRY_DELAY: Duration = Duration::from_millis(500);

/// Errors asking the ring actor.
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    /// The node has stopped.
    #[error("the node has stopped")]
    Stopped,
    /// A lookup failed.
    #[error("lookup failed: {0}")]
    Lookup(#[from] LookupError),
}

/// A handle to the ring actor: lookups and views for the node's services.
#[derive(Clone, Debug)]
pub struct RingHandle {
    inbox: mpsc::Sender<Cmd>,
}

impl RingHandle {
    /// The node's current view of the ring.
    pub async fn view(&self) -> Result<RingView, RingError> {
        let (reply, rx) = oneshot::channel();
        self.send(Cmd::View { reply }).await?;
        rx.await.map_err(|_| RingError::Stopped)
    }

    /// Resolves the owner of `key` with an iterative lookup from this node.
    ///
    /// A lookup that fails the way a repairing ring makes lookups fail (the
    /// owner found does not claim the key yet, or every candidate timed
    /// out) is tried again, at most [`LOOKUP_ATTEMPTS`] times in all, one
    /// stabilize round apart: on a lossy link a single lost ping makes a
    /// node drop its predecessor until the next notify.
    pub async fn lookup(&self, key: RingPos) -> Result<LookupDone<SocketAddr>, RingError> {
        let mut attempt = 1;
        loop {
            let (reply, rx) = oneshot::channel();
            self.send(Cmd::Lookup { key, reply }).await?;
            match rx.await.map_err(|_| RingError::Stopped)? {
                Ok(done) => return Ok(done),
                Err(e @ (LookupError::OwnerUnverified(_) | LookupError::NoLiveCandidates))
                    if attempt < LOOKUP_ATTEMPTS =>
                {
                    debug!(%key, attempt, "lookup failed ({e}); trying again");
                    attempt += 1;
                    tokio::time::sleep(LOOKUP_RETRY_DELAY).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Hands a ring request from the peer at `from` to the core; its answer.
    pub(crate) async fn incoming(
        &self,
        from: RingPos,
        request: ring::Request<SocketAddr>,
    ) -> Result<ring::Response<SocketAddr>, RingError> {
        let (reply, rx) = oneshot::channel();
        self.send(Cmd::Incoming {
            from,
            request,
            reply,
        })
        .await?;
        rx.await.map_err(|_| RingError::Stopped)
    }

    /// Graceful leave: tells predecessor and successor and stops the actor;
    /// waits at most `wait` for those calls once the actor took the command.
    pub(crate) async fn leave(&self, wait: Duration) {
        let (reply, rx) = oneshot::channel();
        if self.send(Cmd::Leave { reply }).await.is_ok() {
            let _ = tokio::time::timeout(wait, rx).await;
        }
    }

    async fn send(&self, cmd: Cmd) -> Result<(), RingError> {
        self.inbox.send(cmd).await.map_err(|_| RingError::Stopped)
    }
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

/// The ring actor, built but not yet running: [`Actor::run`] it on a task.
/// Commands sent through its handle before then wait in the inbox.
pub(crate) struct Actor {
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
    /// The sole owner of `core`, whose clock started at `start`, and a handle to it.
    pub(crate) fn new(
        core: RingNode<SocketAddr>,
        start: Instant,
        metrics: NodeMetrics,
        transport: Transport,
        rpc_timeout: Duration,
        capacity: Capacity,
    ) -> (RingHandle, Actor) {
        let (tx, rx) = mpsc::channel(INBOX);
        let ring = RingHandle { inbox: tx.clone() };
        let actor = Actor {
            metrics,
            core,
            start,
            inbox: rx,
            tx,
            transport,
            rpc_timeout,
            lookups: Default::default(),
            capacity,
        };
        (ring, actor)
    }

    fn now(&self) -> ring::Time {
        self.start.elapsed().as_millis() as ring::Time
    }

    /// Serves the inbox and the core's timers until a leave or the last handle drops.
    pub(crate) async fn run(mut self) {
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
                    match t.to_id {
                        Some(id) => capacity.absorb_from(&c, id, t.to),
                        // A bootstrap contact: who answered is not pinned.
                        None => capacity.absorb(&c),
                    };
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
