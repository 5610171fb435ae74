//! The RPC server: accepts QUIC connections, reads one request per stream
//! within the [`ServeLimits`], hands it to a [`Handler`] and writes the answer.
//!
//! It moves bytes and holds the limits; what a request means is the
//! handler's business (`rpc::dispatch`), so this module imports nothing of
//! the node's services.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chorus_sdk::frame::{self, FrameError};
use chorus_sdk::identity::PeerId;
use chorus_sdk::job::JOB_FRAME_CAP;
use chorus_sdk::transport::{self, Transport};
use chorus_sdk::wire::{Request, Response, WireError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

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

/// What answers a request once the server has read it whole: the one seam
/// between moving bytes and deciding what they mean. A clone serves each
/// connection.
pub(crate) trait Handler: Clone + Send + Sync + 'static {
    /// The answer to `req` from the peer `from`, whose connection comes from
    /// `addr` (the address seen on the QUIC connection, not a claim; a node
    /// serves and dials on one endpoint, so for a node it is where the node
    /// listens, as far as this side can reach it).
    fn handle(
        &self,
        req: Request,
        from: PeerId,
        addr: SocketAddr,
    ) -> impl Future<Output = Response> + Send;
}

/// The semaphores behind [`ServeLimits`], shared by the accept loop and every stream.
#[derive(Debug, Clone)]
pub(crate) struct Gate {
    connections: Arc<Semaphore>,
    large: Arc<Semaphore>,
    small: Arc<Semaphore>,
    read_timeout: Duration,
}

impl Gate {
    pub(crate) fn new(limits: &ServeLimits) -> Self {
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

/// Accepts connections until the endpoint closes; each gets its own task.
pub(crate) async fn accept_loop<H: Handler>(transport: Transport, handler: H, gate: Gate) {
    while let Some(incoming) = transport.endpoint().accept().await {
        let Ok(slot) = gate.connections.clone().try_acquire_owned() else {
            transport.stats().error("conn_limit");
            warn!(remote = %incoming.remote_address(), "refused connection: too many connections");
            incoming.refuse();
            continue;
        };
        let transport = transport.clone();
        let handler = handler.clone();
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
            serve_connection(conn, from, transport, handler, gate).await;
        });
    }
}

async fn serve_connection<H: Handler>(
    conn: quinn::Connection,
    from: PeerId,
    transport: Transport,
    handler: H,
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
        let handler = handler.clone();
        let gate = gate.clone();
        // Read per stream: a connection may migrate.
        let addr = conn.remote_address();
        tokio::spawn(async move {
            serve_stream(send, recv, (from, addr), &transport, &handler, &gate).await;
        });
    }
}

async fn serve_stream<H: Handler>(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    (from, addr): (PeerId, SocketAddr),
    transport: &Transport,
    handler: &H,
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
        Ok((req, _, room)) => (handler.handle(req, from, addr).await, Some(room)),
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
