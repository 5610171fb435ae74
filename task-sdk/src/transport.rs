//! The QUIC endpoint: one per node or client, connections cached per address,
//! one bidirectional stream per request, a timeout on every call.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chorus_core::RingPos;
use dashmap::DashMap;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::frame::{self, FrameError};
use crate::identity::{Identity, PeerId};
use crate::link::{EmulatedSocket, LinkEmulation};
use crate::tls;

/// Default timeout of one RPC (connect + request + response).
pub const DEFAULT_RPC_TIMEOUT: Duration = Duration::from_secs(2);

/// Errors of a call to a peer. The local endpoint stays usable after any of them.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The endpoint could not be created (address in use, bad TLS config).
    #[error("endpoint: {0}")]
    Endpoint(String),
    /// The connection could not be established (unreachable, handshake refused, wrong key).
    #[error("connect to {addr}: {reason}")]
    Connect {
        /// Address dialled.
        addr: SocketAddr,
        /// Why it failed.
        reason: String,
    },
    /// The connected peer's key is not the one we expected.
    #[error("peer at {addr} is {got}, expected {want}")]
    WrongPeer {
        /// Address dialled.
        addr: SocketAddr,
        /// The id the certificate proved.
        got: RingPos,
        /// The id we meant to reach.
        want: RingPos,
    },
    /// The call did not complete in time.
    #[error("call to {0} timed out")]
    Timeout(SocketAddr),
    /// The stream failed or carried a bad frame.
    #[error("call to {addr}: {source}")]
    Frame {
        /// Address called.
        addr: SocketAddr,
        /// What went wrong.
        source: FrameError,
    },
}

impl TransportError {
    /// A short, stable name for counters.
    pub fn kind(&self) -> &'static str {
        match self {
            TransportError::Endpoint(_) => "endpoint",
            TransportError::Connect { .. } => "connect",
            TransportError::WrongPeer { .. } => "wrong_peer",
            TransportError::Timeout(_) => "timeout",
            TransportError::Frame { source, .. } => source.kind(),
        }
    }
}

/// Counters of the transport, shared with whoever reports metrics.
#[derive(Debug, Default)]
pub struct NetStats {
    /// Errors by kind (`timeout`, `malformed`, `handshake`, ...).
    pub errors: DashMap<&'static str, AtomicU64>,
    /// Requests sent.
    pub calls: AtomicU64,
    /// Bytes of frames sent.
    pub bytes_sent: AtomicU64,
    /// Bytes of frames received.
    pub bytes_received: AtomicU64,
}

impl NetStats {
    /// Counts one error of `kind`.
    pub fn error(&self, kind: &'static str) {
        self.errors
            .entry(kind)
            .or_default()
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Errors of `kind` so far.
    pub fn errors_of(&self, kind: &str) -> u64 {
        self.errors
            .get(kind)
            .map(|c| c.load(Ordering::Relaxed))
            .unwrap_or(0)
    }
}

/// A seed for the link emulator's draws: the node's key, so two nodes differ.
fn seed_of(id: &PeerId) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&id.0[..8]);
    u64::from_le_bytes(b)
}

/// A server endpoint on `addr` whose socket is wrapped in the link emulator.
fn emulated_endpoint(
    cfg: quinn::ServerConfig,
    addr: SocketAddr,
    link: LinkEmulation,
    seed: u64,
) -> std::io::Result<quinn::Endpoint> {
    let socket = std::net::UdpSocket::bind(addr)?;
    let runtime: Arc<dyn quinn::Runtime> = Arc::new(quinn::TokioRuntime);
    let inner = runtime.wrap_udp_socket(socket)?;
    let socket = EmulatedSocket::new(inner, link, seed);
    quinn::Endpoint::new_with_abstract_socket(
        quinn::EndpointConfig::default(),
        Some(cfg),
        socket,
        runtime,
    )
}

/// A QUIC endpoint with our identity and a per-address connection cache.
#[derive(Clone, Debug)]
pub struct Transport {
    endpoint: quinn::Endpoint,
    conns: Arc<DashMap<SocketAddr, quinn::Connection>>,
    stats: Arc<NetStats>,
    me: PeerId,
}

impl Transport {
    /// Binds a node endpoint on `addr` that both accepts and dials.
    pub fn server(identity: &Identity, addr: SocketAddr) -> Result<Self, TransportError> {
        Self::server_with(identity, addr, None)
    }

    /// [`Transport::server`] whose outgoing datagrams pass through an
    /// emulated link (a testing aid; see [`crate::link`]). Must be called
    /// inside a tokio runtime.
    pub fn server_with(
        identity: &Identity,
        addr: SocketAddr,
        link: Option<LinkEmulation>,
    ) -> Result<Self, TransportError> {
        let server =
            tls::server_config(identity).map_err(|e| TransportError::Endpoint(e.to_string()))?;
        let quic = quinn::crypto::rustls::QuicServerConfig::try_from(server)
            .map_err(|e| TransportError::Endpoint(e.to_string()))?;
        let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(quic));
        cfg.transport_config(transport_config());
        let endpoint = match link {
            None => quinn::Endpoint::server(cfg, addr),
            Some(link) => emulated_endpoint(cfg, addr, link, seed_of(&identity.peer_id())),
        }
        .map_err(|e| TransportError::Endpoint(e.to_string()))?;
        Self::finish(identity, endpoint)
    }

    /// Binds a dial-only endpoint (clients) on `addr` (port 0 for any).
    pub fn client(identity: &Identity, addr: SocketAddr) -> Result<Self, TransportError> {
        let endpoint =
            quinn::Endpoint::client(addr).map_err(|e| TransportError::Endpoint(e.to_string()))?;
        Self::finish(identity, endpoint)
    }

    fn finish(identity: &Identity, mut endpoint: quinn::Endpoint) -> Result<Self, TransportError> {
        let client =
            tls::client_config(identity).map_err(|e| TransportError::Endpoint(e.to_string()))?;
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(client)
            .map_err(|e| TransportError::Endpoint(e.to_string()))?;
        let mut cfg = quinn::ClientConfig::new(Arc::new(quic));
        cfg.transport_config(transport_config());
        endpoint.set_default_client_config(cfg);
        Ok(Transport {
            endpoint,
            conns: Arc::new(DashMap::new()),
            stats: Arc::new(NetStats::default()),
            me: identity.peer_id(),
        })
    }

    /// The underlying endpoint (to accept connections).
    pub fn endpoint(&self) -> &quinn::Endpoint {
        &self.endpoint
    }

    /// Our own peer id.
    pub fn peer_id(&self) -> PeerId {
        self.me
    }

    /// The transport's counters.
    pub fn stats(&self) -> &Arc<NetStats> {
        &self.stats
    }

    /// Number of cached live connections.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// A connection to `addr`, from the cache or newly dialled; `pin` checks the peer's id.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        pin: Option<RingPos>,
    ) -> Result<quinn::Connection, TransportError> {
        if let Some(c) = self.conns.get(&addr).map(|c| c.clone()) {
            let live = c.close_reason().is_none();
            let same = pin.is_none_or(|want| remote_peer(&c).map(|p| p.ring_pos()) == Some(want));
            if live && same {
                return Ok(c);
            }
            self.conns
                .remove_if(&addr, |_, v| v.stable_id() == c.stable_id());
        }
        let name = tls::server_name_for(pin);
        let connecting =
            self.endpoint
                .connect(addr, &name)
                .map_err(|e| TransportError::Connect {
                    addr,
                    reason: e.to_string(),
                })?;
        let conn = connecting.await.map_err(|e| TransportError::Connect {
            addr,
            reason: e.to_string(),
        })?;
        if let (Some(want), Some(got)) = (pin, remote_peer(&conn))
            && got.ring_pos() != want
        {
            conn.close(1u32.into(), b"wrong peer");
            return Err(TransportError::WrongPeer {
                addr,
                got: got.ring_pos(),
                want,
            });
        }
        self.conns.insert(addr, conn.clone());
        Ok(conn)
    }

    /// One request/response exchange on a fresh stream, bounded by `timeout`.
    ///
    /// Any failure is counted and the cached connection is dropped, so the next
    /// call dials again.
    pub async fn call<Q: Serialize, R: DeserializeOwned>(
        &self,
        addr: SocketAddr,
        pin: Option<RingPos>,
        request: &Q,
        cap: usize,
        timeout: Duration,
    ) -> Result<R, TransportError> {
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let result =
            match tokio::time::timeout(timeout, self.call_inner(addr, pin, request, cap)).await {
                Ok(r) => r,
                Err(_) => Err(TransportError::Timeout(addr)),
            };
        if let Err(e) = &result {
            self.stats.error(e.kind());
            if !matches!(
                e,
                TransportError::Frame {
                    source: FrameError::Decode(_),
                    ..
                }
            ) {
                self.conns.remove(&addr);
            }
        }
        result
    }

    async fn call_inner<Q: Serialize, R: DeserializeOwned>(
        &self,
        addr: SocketAddr,
        pin: Option<RingPos>,
        request: &Q,
        cap: usize,
    ) -> Result<R, TransportError> {
        let conn = self.connect(addr, pin).await?;
        let ferr = |source| TransportError::Frame { addr, source };
        let (mut send, mut recv) = conn
            .open_bi()
            .await
            .map_err(|e| ferr(FrameError::Stream(e.to_string())))?;
        let sent = frame::write(&mut send, request, cap).await.map_err(ferr)?;
        let _ = send.finish();
        self.stats
            .bytes_sent
            .fetch_add(sent as u64, Ordering::Relaxed);
        let (response, received) = frame::read_sized(&mut recv, cap).await.map_err(ferr)?;
        self.stats
            .bytes_received
            .fetch_add(received as u64, Ordering::Relaxed);
        Ok(response)
    }

    /// Closes every connection and the endpoint (a goodbye to every peer).
    pub fn close(&self) {
        self.endpoint.close(0u32.into(), b"bye");
    }
}

/// The peer id a connection's TLS handshake proved.
pub fn remote_peer(conn: &quinn::Connection) -> Option<PeerId> {
    let identity = conn.peer_identity()?;
    let certs = identity
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    tls::peer_id_of(certs.first()?)
}

fn transport_config() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(Some(
        Duration::from_secs(6)
            .try_into()
            .unwrap_or(quinn::IdleTimeout::from(quinn::VarInt::from_u32(6_000))),
    ));
    // A peer that vanished (killed, unplugged) ends its connections, and with
    // them every call waiting on it, within the idle timeout.
    t.keep_alive_interval(Some(Duration::from_secs(2)));
    t.max_concurrent_bidi_streams(1024u32.into());
    t.max_concurrent_uni_streams(0u32.into());
    Arc::new(t)
}
