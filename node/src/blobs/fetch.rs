//! Fetching a blob from the nodes that have it: the index first (checked
//! against the id), then the chunks, a bounded window of them in flight,
//! each checked on arrival and written at its offset.
//!
//! A chunk that fails its check is refused (a warning, and
//! `chorus_blob_chunks_refused_total`) and asked for again: once more from
//! the same source, then from the next one, and so on round the sources, at
//! most [`FetchConfig::attempts_per_source`] times each; then the fetch
//! fails with [`BlobFetchError::Chunk`]. Chunk `i` is first asked of source
//! `i mod n`, so several sources share the load.
//!
//! One fetch per blob at a time on a node (`jobs::flights`, as for
//! bundles): concurrent callers wait for it and then find the blob in the
//! store. A blob the store holds is not fetched again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_core::RingPos;
use chorus_sdk::blob::{BlobError, BlobId, BlobIndex, CHUNK_BYTES};
use chorus_sdk::job::{JobRequest, JobResponse};
use chorus_sdk::transport::Transport;
use chorus_sdk::wire::{ErrorKind, Peer, Request, Response};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use super::store::{Begin, Blob, BlobStore, BlobStoreError, Part};
use crate::jobs::flights::{FlightError, Flights};
use crate::metrics::BlobMetrics;

/// The frame cap of a blob answer: one chunk and a little framing, well
/// under the job frame cap. A larger answer is refused unread.
pub const BLOB_FRAME_CAP: usize = CHUNK_BYTES + (64 << 10);

/// Where a blob may be fetched from: a node's address and, when known, its
/// ring position (the handshake must then prove that key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobSource {
    /// The node's address.
    pub addr: SocketAddr,
    /// Its ring position, pinned by the handshake when given.
    pub pin: Option<RingPos>,
}

impl From<SocketAddr> for BlobSource {
    fn from(addr: SocketAddr) -> Self {
        BlobSource { addr, pin: None }
    }
}

impl From<&Peer> for BlobSource {
    fn from(p: &Peer) -> Self {
        BlobSource {
            addr: p.addr,
            pin: Some(p.id),
        }
    }
}

impl From<(SocketAddr, RingPos)> for BlobSource {
    fn from((addr, id): (SocketAddr, RingPos)) -> Self {
        BlobSource {
            addr,
            pin: Some(id),
        }
    }
}

/// Tuning of the fetcher.
#[derive(Clone, Debug)]
pub struct FetchConfig {
    /// Chunk requests in flight at once per blob. Default 8.
    pub window: usize,
    /// Times one source is asked for one chunk before the next source is.
    /// Default 2.
    pub attempts_per_source: u32,
    /// Timeout of one index or chunk request. Default 10 s.
    pub call_timeout: Duration,
    /// Timeout of a whole fetch, waiting for another caller's included.
    /// Default 30 min (1 GiB at 0.6 MB/s).
    pub timeout: Duration,
    /// Blobs fetched at once (different ids); more wait. Default 4.
    pub concurrent_blobs: usize,
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            window: 8,
            attempts_per_source: 2,
            call_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(30 * 60),
            concurrent_blobs: 4,
        }
    }
}

/// Why a blob could not be fetched. Chunks already verified stay in the
/// store's part for a later attempt (until it is dropped as idle).
#[derive(Debug, thiserror::Error)]
pub enum BlobFetchError {
    /// No source was given.
    #[error("no source to fetch blob {0} from")]
    NoSources(BlobId),
    /// No source gave an index that hashes to the id.
    #[error("no source gave the index of blob {id}: {last}")]
    Index {
        /// The blob.
        id: BlobId,
        /// The last source's failure.
        last: String,
    },
    /// A chunk could not be had, from any source, within the attempts.
    #[error("chunk {index} of blob {id} failed {attempts} attempts: {last}")]
    Chunk {
        /// The blob.
        id: BlobId,
        /// The chunk.
        index: u32,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// The store refused (no room, an I/O error).
    #[error(transparent)]
    Store(#[from] BlobStoreError),
    /// The whole fetch took longer than [`FetchConfig::timeout`].
    #[error("blob fetch took longer than {0:?}")]
    TimedOut(Duration),
    /// A fetch task ended abnormally (a bug).
    #[error("blob fetch task failed: {0}")]
    Task(String),
}

/// Fetches blobs into a [`BlobStore`]. Cheap to clone.
#[derive(Clone)]
pub struct BlobFetcher {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for BlobFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobFetcher")
            .field("store", &self.inner.store)
            .finish()
    }
}

struct Inner {
    store: BlobStore,
    transport: Transport,
    metrics: BlobMetrics,
    config: FetchConfig,
    flights: Flights<BlobId>,
}

impl BlobFetcher {
    /// A fetcher that keeps what it fetches in `store` and asks through
    /// `transport`.
    pub fn new(
        store: BlobStore,
        transport: Transport,
        metrics: BlobMetrics,
        config: FetchConfig,
    ) -> Self {
        BlobFetcher {
            inner: Arc::new(Inner {
                flights: Flights::new(config.concurrent_blobs, config.timeout),
                store,
                transport,
                metrics,
                config,
            }),
        }
    }

    /// The store it fetches into.
    pub fn store(&self) -> &BlobStore {
        &self.inner.store
    }

    /// Blob `id`, verified, on disk and pinned while the handle lives: from
    /// the store if it is there, else fetched from `sources` (one fetch per
    /// blob at a time on this node; concurrent callers share it).
    pub async fn get(&self, id: BlobId, sources: &[BlobSource]) -> Result<Blob, BlobFetchError> {
        let inner = &self.inner;
        inner
            .flights
            .get(
                id,
                || inner.store.get(id),
                || self.clone().fetch(id, sources.to_vec()),
            )
            .await
            .map_err(|e| match e {
                FlightError::Failed(e) => e,
                FlightError::TimedOut(t) => BlobFetchError::TimedOut(t),
            })
    }

    /// One fetch over the network (a flight of [`BlobFetcher::get`]).
    async fn fetch(self, id: BlobId, sources: Vec<BlobSource>) -> Result<Blob, BlobFetchError> {
        if sources.is_empty() {
            return Err(BlobFetchError::NoSources(id));
        }
        let started = Instant::now();
        let index = self.fetch_index(id, &sources).await?;
        let size = index.size();
        let store = self.inner.store.clone();
        let part = match tokio::task::spawn_blocking(move || store.begin(index, false))
            .await
            .map_err(|e| BlobFetchError::Task(e.to_string()))??
        {
            Begin::Complete(b) => return Ok(b),
            Begin::Part(p) => p,
        };
        let queue = Arc::new(std::sync::Mutex::new(
            part.missing_list()
                .into_iter()
                .collect::<std::collections::VecDeque<u32>>(),
        ));
        let sources: Arc<[BlobSource]> = sources.into();
        let mut workers: JoinSet<Result<(), BlobFetchError>> = JoinSet::new();
        for _ in 0..self.inner.config.window.max(1) {
            let (me, part, queue, sources) =
                (self.clone(), part.clone(), queue.clone(), sources.clone());
            workers.spawn(async move {
                loop {
                    let next = queue.lock().ok().and_then(|mut q| q.pop_front());
                    let Some(i) = next else {
                        return Ok(());
                    };
                    me.fetch_chunk(id, i, &part, &sources).await?;
                }
            });
        }
        // The first failure ends the fetch; dropping the set aborts the rest.
        while let Some(r) = workers.join_next().await {
            r.map_err(|e| BlobFetchError::Task(e.to_string()))??;
        }
        let store = self.inner.store.clone();
        let blob = tokio::task::spawn_blocking(move || store.finish(&part))
            .await
            .map_err(|e| BlobFetchError::Task(e.to_string()))??;
        self.inner.metrics.fetches.inc();
        let secs = started.elapsed().as_secs_f64();
        info!(blob = %id, size, secs, mb_per_s = size as f64 / 1e6 / secs.max(1e-9), "fetched blob");
        Ok(blob)
    }

    /// The index of `id` from the first source that gives one that hashes to it.
    async fn fetch_index(
        &self,
        id: BlobId,
        sources: &[BlobSource],
    ) -> Result<BlobIndex, BlobFetchError> {
        let mut last = String::new();
        for s in sources {
            match self.call(s, JobRequest::BlobIndex { blob: id }).await {
                Ok(JobResponse::BlobIndex(bytes)) => match BlobIndex::decode_for(id, &bytes) {
                    Ok(index) => return Ok(index),
                    Err(e) => {
                        self.inner.metrics.indexes_refused.inc();
                        warn!(blob = %id, source = %s.addr, error = %e, "refused a blob index");
                        last = e.to_string();
                    }
                },
                Ok(other) => last = format!("unexpected answer {}", kind_of(&other)),
                Err(e) => last = e,
            }
        }
        Err(BlobFetchError::Index { id, last })
    }

    /// Chunk `i` into `part`, round the sources, bounded attempts.
    async fn fetch_chunk(
        &self,
        id: BlobId,
        i: u32,
        part: &Arc<Part>,
        sources: &[BlobSource],
    ) -> Result<(), BlobFetchError> {
        let n = sources.len();
        let per = self.inner.config.attempts_per_source.max(1);
        let mut attempts = 0u32;
        let mut last = String::new();
        for k in 0..n {
            let s = &sources[(i as usize + k) % n];
            for _ in 0..per {
                attempts += 1;
                let bytes = match self.call(s, JobRequest::Chunk { blob: id, index: i }).await {
                    Ok(JobResponse::Chunk(b)) => b.into_vec(),
                    Ok(other) => {
                        last = format!("unexpected answer {}", kind_of(&other));
                        continue;
                    }
                    Err(e) => {
                        // A source that does not hold the blob will not next time either.
                        let unknown = e.contains(ErrorKind::UnknownBlob.as_str());
                        last = e;
                        if unknown {
                            break;
                        }
                        continue;
                    }
                };
                let len = bytes.len() as u64;
                let p = part.clone();
                let put = tokio::task::spawn_blocking(move || p.put(i, &bytes))
                    .await
                    .map_err(|e| BlobFetchError::Task(e.to_string()))?;
                match put {
                    Ok(_) => {
                        self.inner.metrics.bytes_fetched.inc_by(len);
                        return Ok(());
                    }
                    Err(BlobStoreError::Chunk(e)) => {
                        self.refused(id, i, s, &e);
                        last = e.to_string();
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Err(BlobFetchError::Chunk {
            id,
            index: i,
            attempts,
            last,
        })
    }

    fn refused(&self, id: BlobId, i: u32, s: &BlobSource, e: &BlobError) {
        self.inner.metrics.chunks_refused.inc();
        warn!(blob = %id, chunk = i, source = %s.addr, error = %e, "refused a blob chunk; fetching it again");
    }

    /// One blob request; an error answer becomes its text.
    async fn call(&self, s: &BlobSource, req: JobRequest) -> Result<JobResponse, String> {
        let resp: Response = self
            .inner
            .transport
            .call(
                s.addr,
                s.pin,
                &Request::Job(req),
                BLOB_FRAME_CAP,
                self.inner.config.call_timeout,
            )
            .await
            .map_err(|e| e.to_string())?;
        match resp {
            Response::Job(j) => Ok(j),
            Response::Error(e) => {
                debug!(source = %s.addr, error = %e, "blob request refused");
                Err(format!("{}: {}", e.kind, e.message))
            }
            other => Err(format!("unexpected answer {other:?}")),
        }
    }
}

fn kind_of(r: &JobResponse) -> &'static str {
    match r {
        JobResponse::BlobIndex(_) => "BlobIndex",
        JobResponse::Chunk(_) => "Chunk",
        JobResponse::Missing { .. } => "Missing",
        _ => "another job answer",
    }
}
