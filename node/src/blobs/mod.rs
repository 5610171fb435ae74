//! Large content in pieces: blobs (files, directories, runtime modules up to
//! 1 GiB, [`chorus_sdk::blob`]) kept on disk under a byte bound, served by
//! chunk to whoever asks, fetched by chunk from whoever has them, and
//! uploaded by clients to their entry node.
//!
//! A worker that needs a blob makes one call:
//!
//! ```ignore
//! let blob: Blob = node.blobs().get(id, &[BlobSource::from((addr, ring_pos))]).await?;
//! // blob.path(): the verified file, kept (pinned) while `blob` lives.
//! ```
//!
//! # Layout
//!
//! - `mod.rs`: the service ([`Blobs`]): its configuration, the answers to
//!   `BlobIndex`, `Chunk`, `PutBlob` and `PutChunk`, the `corrupt-chunks`
//!   adversary.
//! - `store.rs`: [`BlobStore`], the files on disk, the bound, eviction and pins.
//! - `fetch.rs`: [`BlobFetcher`], index then chunks in a bounded window,
//!   checked, retried round the sources; one fetch per blob at a time.
//!
//! Who may ask what, and what a stranger gains, is in `SECURITY.md` (9).

mod fetch;
mod store;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use chorus_sdk::blob::{BlobId, BlobIndex};
use chorus_sdk::identity::PeerId;
use chorus_sdk::job::{JobRequest, JobResponse};
use chorus_sdk::transport::Transport;
use chorus_sdk::wire::{ErrorKind, MAX_MISSING_LISTED, Response, WireError};
use serde_bytes::ByteBuf;
use tokio::sync::Semaphore;
use tracing::warn;

pub use fetch::{BLOB_FRAME_CAP, BlobFetchError, BlobFetcher, BlobSource, FetchConfig};
pub use store::{Begin, Blob, BlobStore, BlobStoreError, Part};

use crate::metrics::BlobMetrics;

/// Chunk reads served at once; more are answered `busy`.
pub const MAX_SERVING: usize = 32;
/// Most (blob, chunk) pairs a `corrupt-chunks` node remembers having served.
const MAX_CORRUPTED: usize = 1 << 20;

/// Tuning of the blob service.
#[derive(Clone, Debug, Default)]
pub struct BlobsConfig {
    /// The fetcher's tuning.
    pub fetch: FetchConfig,
    /// `--chaos corrupt-chunks`: serve every chunk whose index is 1 mod 3
    /// with a byte flipped, the first time it is asked for.
    pub corrupt_chunks: bool,
}

/// The blob service of a node: store, fetcher, server. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Blobs {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    fetcher: BlobFetcher,
    metrics: BlobMetrics,
    serving: Semaphore,
    corrupt_chunks: bool,
    /// Chunks a `corrupt-chunks` node has served (corrupted) once already.
    corrupted: Mutex<HashSet<(BlobId, u32)>>,
}

impl Blobs {
    /// The service over `store`, fetching through `transport`.
    pub fn new(
        store: BlobStore,
        transport: Transport,
        metrics: BlobMetrics,
        config: BlobsConfig,
    ) -> Blobs {
        let store = store.with_gauge(metrics.store_bytes.clone());
        Blobs {
            inner: Arc::new(Inner {
                fetcher: BlobFetcher::new(store, transport, metrics.clone(), config.fetch),
                metrics,
                serving: Semaphore::new(MAX_SERVING),
                corrupt_chunks: config.corrupt_chunks,
                corrupted: Mutex::new(HashSet::new()),
            }),
        }
    }

    /// Blob `id`, verified, on disk and pinned while the handle lives: from
    /// this node's store, else fetched from `sources` (see [`BlobFetcher::get`]).
    pub async fn get(&self, id: BlobId, sources: &[BlobSource]) -> Result<Blob, BlobFetchError> {
        self.inner.fetcher.get(id, sources).await
    }

    /// The fetcher.
    pub fn fetcher(&self) -> &BlobFetcher {
        &self.inner.fetcher
    }

    /// The store.
    pub fn store(&self) -> &BlobStore {
        self.inner.fetcher.store()
    }

    /// Answers a blob request (`BlobIndex`, `Chunk`, `PutBlob`, `PutChunk`;
    /// anything else is a bug of the caller and answered `internal`).
    pub async fn handle(&self, req: JobRequest, from: PeerId) -> Response {
        match req {
            JobRequest::BlobIndex { blob } => match self.store().index(blob) {
                Some(index) => Response::Job(JobResponse::BlobIndex(ByteBuf::from(index.encode()))),
                None => unknown(blob),
            },
            JobRequest::Chunk { blob, index } => self.serve_chunk(blob, index).await,
            JobRequest::PutBlob { index } => self.put_blob(&index, from).await,
            JobRequest::PutChunk { blob, index, bytes } => {
                self.put_chunk(blob, index, bytes.into_vec(), from).await
            }
            _ => Response::Error(WireError::new(ErrorKind::Internal, "not a blob request")),
        }
    }

    async fn serve_chunk(&self, blob: BlobId, i: u32) -> Response {
        let Ok(_permit) = self.inner.serving.try_acquire() else {
            return Response::Error(WireError::new(
                ErrorKind::Busy,
                "serving too many chunks; ask again or elsewhere",
            ));
        };
        let store = self.store().clone();
        let read = tokio::task::spawn_blocking(move || store.read_chunk(blob, i)).await;
        let mut bytes = match read {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => return store_error(e),
            Err(e) => return Response::Error(WireError::new(ErrorKind::Internal, e.to_string())),
        };
        if self.inner.corrupt_chunks && i % 3 == 1 && self.first_serving(blob, i) {
            let mid = bytes.len() / 2;
            if let Some(b) = bytes.get_mut(mid) {
                *b ^= 0x01;
            }
        }
        self.inner.metrics.bytes_served.inc_by(bytes.len() as u64);
        Response::Job(JobResponse::Chunk(ByteBuf::from(bytes)))
    }

    /// Whether this is the first time a `corrupt-chunks` node serves this chunk.
    fn first_serving(&self, blob: BlobId, i: u32) -> bool {
        let Ok(mut seen) = self.inner.corrupted.lock() else {
            return false;
        };
        if seen.len() >= MAX_CORRUPTED {
            seen.clear();
        }
        seen.insert((blob, i))
    }

    async fn put_blob(&self, bytes: &[u8], from: PeerId) -> Response {
        let index = match BlobIndex::decode(bytes) {
            Ok(i) => i,
            Err(e) => {
                self.inner.metrics.indexes_refused.inc();
                return Response::Error(WireError::new(ErrorKind::BadBlob, e.to_string()));
            }
        };
        let id = index.id();
        let store = self.store().clone();
        match tokio::task::spawn_blocking(move || store.begin(index, true)).await {
            Ok(Ok(Begin::Complete(_))) => missing(id, &[]),
            Ok(Ok(Begin::Part(p))) => {
                tracing::debug!(blob = %id, peer = %from, size = p.index().size(), "upload started");
                missing(id, &p.missing_list())
            }
            Ok(Err(e)) => store_error(e),
            Err(e) => Response::Error(WireError::new(ErrorKind::Internal, e.to_string())),
        }
    }

    async fn put_chunk(&self, blob: BlobId, i: u32, bytes: Vec<u8>, from: PeerId) -> Response {
        let Some(part) = self.store().part(blob) else {
            if self.store().index(blob).is_some() {
                return missing(blob, &[]);
            }
            return Response::Error(WireError::new(
                ErrorKind::BadBlob,
                format!("no upload of blob {blob} in progress here: send PutBlob first"),
            ));
        };
        let store = self.store().clone();
        let done = tokio::task::spawn_blocking(move || {
            let left = part.put(i, &bytes)?;
            if left == 0 {
                store.finish(&part)?;
            }
            Ok::<_, BlobStoreError>(part.missing_list())
        })
        .await;
        match done {
            Ok(Ok(left)) => missing(blob, &left),
            Ok(Err(BlobStoreError::Chunk(e))) => {
                self.inner.metrics.chunks_refused.inc();
                warn!(%blob, chunk = i, peer = %from, error = %e, "refused an uploaded chunk");
                Response::Error(WireError::new(ErrorKind::BadBlob, e.to_string()))
            }
            Ok(Err(e)) => store_error(e),
            Err(e) => Response::Error(WireError::new(ErrorKind::Internal, e.to_string())),
        }
    }
}

fn unknown(blob: BlobId) -> Response {
    Response::Error(WireError::new(
        ErrorKind::UnknownBlob,
        format!("no blob {blob} here"),
    ))
}

fn missing(blob: BlobId, chunks: &[u32]) -> Response {
    Response::Job(JobResponse::Missing {
        blob,
        count: u32::try_from(chunks.len()).unwrap_or(u32::MAX),
        first: chunks.iter().take(MAX_MISSING_LISTED).copied().collect(),
    })
}

fn store_error(e: BlobStoreError) -> Response {
    let kind = match &e {
        BlobStoreError::Full { .. } | BlobStoreError::TooManyParts(_) => ErrorKind::BlobStoreFull,
        BlobStoreError::Unknown(b) => return unknown(*b),
        BlobStoreError::Chunk(_) => ErrorKind::BadBlob,
        BlobStoreError::Dropped(_) | BlobStoreError::Incomplete { .. } => ErrorKind::Unavailable,
        BlobStoreError::Io { .. } => ErrorKind::Store,
    };
    Response::Error(WireError::new(kind, e.to_string()))
}
