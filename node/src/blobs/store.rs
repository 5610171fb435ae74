//! The blob store on disk: complete blobs as files named by their id, parts
//! in progress as preallocated temp files, all under one byte bound.
//!
//! Layout of the store's directory (`DATA_DIR/blobs`):
//!
//! - `<id>`: a complete blob, its bytes in order (64 hex digits).
//! - `<id>.idx`: its canonical index ([`BlobIndex::encode`]).
//! - `tmp/<id>.part`: a blob being fetched or uploaded, preallocated to its
//!   size; chunks are written at their offsets as they arrive, each checked
//!   against the index first. When the last one is in, the file is synced,
//!   renamed to `<id>` and the directory synced, as the job store and the
//!   module cache do: a crash leaves a blob wholly there or not at all. The
//!   index is written the same way, after the data; a blob whose index or
//!   data is missing or of the wrong size is deleted at start-up, and `tmp/`
//!   is emptied.
//!
//! The bound counts complete blobs and the whole size of every part in
//! progress (reserved when it starts, so a part never grows past the bound).
//! Room is made by deleting the least recently used complete blobs that no
//! [`Blob`] handle pins; what is pinned is never deleted, and a part that
//! does not fit then is refused ([`BlobStoreError::Full`]). Uploads from
//! clients may reserve at most half of the bound together, so that strangers
//! cannot take the room jobs need. A part that no one wrote to for
//! [`BlobStore::PART_IDLE`] is dropped at the next reservation.
//!
//! One `std` mutex guards the table (held to look up, count and rename,
//! never across an await); chunk writes and reads happen outside it, on the
//! part's or blob's file at the chunk's offset.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chorus_sdk::blob::{BlobError, BlobId, BlobIndex};
use prometheus::IntGauge;
use tracing::{debug, warn};

/// Why the store could not do what was asked. Nothing changed unless said.
#[derive(Debug, thiserror::Error)]
pub enum BlobStoreError {
    /// Not enough room: the bound is taken by pinned blobs and parts in
    /// progress (or, for an upload, uploads hold their half of it).
    #[error(
        "the blob store has no room for {need} bytes (bound {bound}, pinned or in progress {held})"
    )]
    Full {
        /// Bytes asked for.
        need: u64,
        /// The store's bound.
        bound: u64,
        /// Bytes that cannot be freed now.
        held: u64,
    },
    /// Too many parts in progress at once.
    #[error("{0} blobs are already being fetched or uploaded here")]
    TooManyParts(usize),
    /// The chunk does not belong to the blob (its hash or length); it was
    /// not written.
    #[error(transparent)]
    Chunk(#[from] BlobError),
    /// The part was dropped (idle too long) while it was being written.
    #[error("the transfer of blob {0} was dropped (idle too long)")]
    Dropped(BlobId),
    /// The blob is not held here.
    #[error("no blob {0} here")]
    Unknown(BlobId),
    /// The part still lacks chunks.
    #[error("blob {id} still lacks {missing} chunks")]
    Incomplete {
        /// The blob.
        id: BlobId,
        /// Chunks missing.
        missing: u32,
    },
    /// A file operation failed.
    #[error("blob store {}: {source}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> BlobStoreError + '_ {
    move |source| BlobStoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A complete blob on disk, pinned while this handle (or a clone) lives:
/// the store never deletes it meanwhile.
#[derive(Clone)]
pub struct Blob {
    index: Arc<BlobIndex>,
    path: PathBuf,
    _pin: Arc<Pin>,
}

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blob")
            .field("id", &self.index.id())
            .field("size", &self.index.size())
            .field("path", &self.path)
            .finish()
    }
}

impl Blob {
    /// The blob's id.
    pub fn id(&self) -> BlobId {
        self.index.id()
    }

    /// Its size in bytes.
    pub fn size(&self) -> u64 {
        self.index.size()
    }

    /// Its index (chunk hashes).
    pub fn index(&self) -> &BlobIndex {
        &self.index
    }

    /// The file holding its verified bytes. It stays there, unchanged,
    /// while this handle lives; treat it as read-only.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the file for reading (blocking).
    pub fn open(&self) -> io::Result<File> {
        File::open(&self.path)
    }

    /// Reads the whole blob into memory (blocking; up to 1 GiB).
    pub fn read_all(&self) -> io::Result<Vec<u8>> {
        fs::read(&self.path)
    }
}

/// Unpins its blob when the last handle goes.
struct Pin {
    store: Arc<Inner>,
    id: BlobId,
}

impl Drop for Pin {
    fn drop(&mut self) {
        if let Ok(mut st) = self.store.state.lock()
            && let Some(e) = st.complete.get_mut(&self.id)
        {
            e.pins = e.pins.saturating_sub(1);
        }
    }
}

/// A blob being fetched or uploaded: its index, its temp file and which
/// chunks are in.
pub struct Part {
    index: Arc<BlobIndex>,
    id: BlobId,
    path: PathBuf,
    file: File,
    upload: bool,
    have: Mutex<PartState>,
}

struct PartState {
    got: Vec<bool>,
    missing: u32,
    touched: Instant,
    dropped: bool,
}

impl std::fmt::Debug for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Part")
            .field("id", &self.id)
            .field("missing", &self.missing())
            .finish()
    }
}

impl Part {
    /// The blob's index.
    pub fn index(&self) -> &Arc<BlobIndex> {
        &self.index
    }

    /// Chunks not yet in.
    pub fn missing(&self) -> u32 {
        self.have.lock().map_or(0, |h| h.missing)
    }

    /// The chunks not yet in, in order.
    pub fn missing_list(&self) -> Vec<u32> {
        self.have.lock().map_or_else(
            |_| Vec::new(),
            |h| {
                (0..self.index.chunk_count())
                    .filter(|i| !h.got.get(*i as usize).copied().unwrap_or(true))
                    .collect()
            },
        )
    }

    /// Checks chunk `i` against the index and writes it at its offset
    /// (blocking). Returns the chunks still missing. A chunk that does not
    /// check out is refused and nothing is written.
    pub fn put(&self, i: u32, bytes: &[u8]) -> Result<u32, BlobStoreError> {
        self.index.check_chunk(i, bytes)?;
        {
            let h = self
                .have
                .lock()
                .map_err(|_| BlobStoreError::Dropped(self.id))?;
            if h.dropped {
                return Err(BlobStoreError::Dropped(self.id));
            }
            if h.got.get(i as usize).copied().unwrap_or(false) {
                return Ok(h.missing);
            }
        }
        self.file
            .write_all_at(bytes, self.index.offset(i))
            .map_err(io_at(&self.path))?;
        let mut h = self
            .have
            .lock()
            .map_err(|_| BlobStoreError::Dropped(self.id))?;
        h.touched = Instant::now();
        if let Some(g) = h.got.get_mut(i as usize)
            && !*g
        {
            *g = true;
            h.missing = h.missing.saturating_sub(1);
        }
        Ok(h.missing)
    }
}

/// What [`BlobStore::begin`] found.
#[derive(Debug)]
pub enum Begin {
    /// The blob is here already, whole.
    Complete(Blob),
    /// A part in progress (new, or the one already under way).
    Part(Arc<Part>),
}

/// The on-disk blob store. Cheap to clone.
#[derive(Clone)]
pub struct BlobStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStore")
            .field("dir", &self.inner.dir)
            .field("bound", &self.inner.bound)
            .finish()
    }
}

struct Inner {
    dir: PathBuf,
    tmp: PathBuf,
    bound: u64,
    /// For a store in a temporary directory (a node without a data dir):
    /// the lock that marks it in use; the whole directory is deleted when
    /// the store goes, or by the next store made after a crash.
    temporary: Option<fs::File>,
    gauge: Option<IntGauge>,
    state: Mutex<State>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.temporary.is_some() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

#[derive(Default)]
struct State {
    complete: HashMap<BlobId, Entry>,
    parts: HashMap<BlobId, Arc<Part>>,
    /// Bytes of complete blobs.
    used: u64,
    /// Bytes reserved by parts (their whole size).
    reserved: u64,
    /// The share of `reserved` that uploads hold.
    uploads: u64,
    /// A logical clock for least-recently-used order.
    clock: u64,
}

struct Entry {
    index: Arc<BlobIndex>,
    used_at: u64,
    pins: usize,
}

/// The name of a temporary store's directory, before `PID-N`.
const TEMPORARY_PREFIX: &str = "chorus-blobs-";
/// The file a temporary store's process holds locked while it lives.
const LOCK_FILE: &str = "lock";

/// Takes the lock that marks `dir` a live temporary store. The file is
/// locked under another name and then renamed into place, so that a `lock`
/// file is held from the moment it exists: a sweep never takes a store
/// being made for dead.
fn hold_lock(dir: &Path) -> Result<fs::File, BlobStoreError> {
    let pending = dir.join(".lock.new");
    let file = fs::File::create(&pending).map_err(io_at(&pending))?;
    file.lock().map_err(io_at(&pending))?;
    let lock = dir.join(LOCK_FILE);
    fs::rename(&pending, &lock).map_err(io_at(&lock))?;
    Ok(file)
}

/// Deletes the temporary stores under `base` whose lock nobody holds: their
/// process ended without deleting them (a kill, a crash). A directory
/// without a lock file is left alone.
fn sweep_dead_temporaries(base: &Path) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        if !e
            .file_name()
            .to_string_lossy()
            .starts_with(TEMPORARY_PREFIX)
        {
            continue;
        }
        let dir = e.path();
        let Ok(lock) = fs::File::open(dir.join(LOCK_FILE)) else {
            continue;
        };
        if lock.try_lock().is_ok() {
            tracing::info!(dir = %dir.display(), "deleting the blob store of a process that is gone");
            let _ = fs::remove_dir_all(&dir);
        }
    }
}

impl BlobStore {
    /// Most parts in progress at once.
    pub const MAX_PARTS: usize = 64;
    /// A part nobody wrote to for this long is dropped at the next reservation.
    pub const PART_IDLE: Duration = Duration::from_secs(120);

    /// Opens (creating) the store in `dir` with a bound of `bound` bytes:
    /// keeps the complete blobs found there (newest first, while they fit),
    /// deletes anything else.
    pub fn open(dir: &Path, bound: u64) -> Result<BlobStore, BlobStoreError> {
        Self::open_with(dir, bound, None)
    }

    /// A store in a fresh directory under the system's temp dir, deleted
    /// when the store (and every [`Blob`] of it) is gone. The stores of
    /// processes that ended without deleting theirs (killed) are deleted
    /// first: a temporary store holds a lock on its `lock` file as long as
    /// its process lives.
    pub fn temporary(bound: u64) -> Result<BlobStore, BlobStoreError> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let base = std::env::temp_dir();
        sweep_dead_temporaries(&base);
        let dir = base.join(format!(
            "{TEMPORARY_PREFIX}{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        let lock = hold_lock(&dir)?;
        Self::open_with(&dir, bound, Some(lock))
    }

    fn open_with(
        dir: &Path,
        bound: u64,
        temporary: Option<fs::File>,
    ) -> Result<BlobStore, BlobStoreError> {
        let tmp = dir.join("tmp");
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).map_err(io_at(&tmp))?;
        let mut found: Vec<(std::time::SystemTime, Arc<BlobIndex>)> = Vec::new();
        let mut strays: Vec<PathBuf> = Vec::new();
        for e in fs::read_dir(dir).map_err(io_at(dir))?.flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "tmp" || name == LOCK_FILE {
                continue;
            }
            let Some(hex) = name.strip_suffix(".idx") else {
                // A data file: kept if its index is there (checked below).
                if name.parse::<BlobId>().is_err() || !dir.join(format!("{name}.idx")).exists() {
                    strays.push(path);
                }
                continue;
            };
            let data = dir.join(hex);
            let ok = hex.parse::<BlobId>().ok().and_then(|id| {
                let bytes = fs::read(&path).ok()?;
                let index = BlobIndex::decode_for(id, &bytes).ok()?;
                let meta = fs::metadata(&data).ok()?;
                (meta.len() == index.size()).then(|| {
                    (
                        meta.modified().unwrap_or(std::time::UNIX_EPOCH),
                        Arc::new(index),
                    )
                })
            });
            match ok {
                Some(f) => found.push(f),
                None => {
                    strays.push(path);
                    strays.push(data);
                }
            }
        }
        for p in strays {
            let _ = fs::remove_file(p);
        }
        found.sort_by_key(|f| std::cmp::Reverse(f.0));
        let mut st = State::default();
        let n = found.len() as u64;
        for (i, (_, index)) in found.into_iter().enumerate() {
            let id = index.id();
            if st.used + index.size() > bound {
                let _ = fs::remove_file(dir.join(id.to_string()));
                let _ = fs::remove_file(dir.join(format!("{id}.idx")));
                continue;
            }
            st.used += index.size();
            st.complete.insert(
                id,
                Entry {
                    index,
                    used_at: n - i as u64,
                    pins: 0,
                },
            );
        }
        st.clock = n + 1;
        Ok(BlobStore {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                tmp,
                bound,
                temporary,
                gauge: None,
                state: Mutex::new(st),
            }),
        })
    }

    /// Reports the bytes in use on `gauge` from now on (set before sharing).
    pub fn with_gauge(mut self, gauge: IntGauge) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.gauge = Some(gauge);
        }
        self.report();
        self
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The bound in bytes.
    pub fn bound(&self) -> u64 {
        self.inner.bound
    }

    /// Bytes in use: complete blobs plus reservations of parts.
    pub fn bytes_used(&self) -> u64 {
        self.inner
            .state
            .lock()
            .map_or(0, |st| st.used.saturating_add(st.reserved))
    }

    /// The complete blob `id`, pinned while the handle lives.
    pub fn get(&self, id: BlobId) -> Option<Blob> {
        let mut st = self.inner.state.lock().ok()?;
        st.clock += 1;
        let clock = st.clock;
        let e = st.complete.get_mut(&id)?;
        e.used_at = clock;
        e.pins += 1;
        let index = e.index.clone();
        drop(st);
        Some(self.handle(index))
    }

    /// The index of complete blob `id` (to serve it).
    pub fn index(&self, id: BlobId) -> Option<Arc<BlobIndex>> {
        let mut st = self.inner.state.lock().ok()?;
        st.clock += 1;
        let clock = st.clock;
        let e = st.complete.get_mut(&id)?;
        e.used_at = clock;
        Some(e.index.clone())
    }

    /// Chunk `i` of complete blob `id`, read from disk and checked against
    /// its hash (blocking): a disk that rotted is never served.
    pub fn read_chunk(&self, id: BlobId, i: u32) -> Result<Vec<u8>, BlobStoreError> {
        let index = self.index(id).ok_or(BlobStoreError::Unknown(id))?;
        let len = index.chunk_len(i).ok_or(BlobError::NoSuchChunk {
            index: i,
            chunks: index.chunks().len(),
        })?;
        let path = self.inner.dir.join(id.to_string());
        // Deleted since the lookup (evicted): unknown, not an error of ours.
        let file = File::open(&path).map_err(|_| BlobStoreError::Unknown(id))?;
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, index.offset(i))
            .map_err(io_at(&path))?;
        index.check_chunk(i, &buf)?;
        Ok(buf)
    }

    /// The part of `id` in progress, if any.
    pub fn part(&self, id: BlobId) -> Option<Arc<Part>> {
        self.inner.state.lock().ok()?.parts.get(&id).cloned()
    }

    /// Starts (or joins) the transfer of `index`'s blob: reserves its whole
    /// size under the bound, deleting least recently used unpinned blobs to
    /// make room, and creates its temp file. `upload`: the reservation counts
    /// against the uploads' half of the bound.
    pub fn begin(&self, index: BlobIndex, upload: bool) -> Result<Begin, BlobStoreError> {
        let id = index.id();
        if let Some(b) = self.get(id) {
            return Ok(Begin::Complete(b));
        }
        let size = index.size();
        let mut st = self
            .inner
            .state
            .lock()
            .map_err(|_| BlobStoreError::Dropped(id))?;
        if let Some(p) = st.parts.get(&id) {
            return Ok(Begin::Part(p.clone()));
        }
        self.drop_idle(&mut st);
        if st.parts.len() >= Self::MAX_PARTS {
            return Err(BlobStoreError::TooManyParts(st.parts.len()));
        }
        let bound = self.inner.bound;
        if upload && st.uploads.saturating_add(size) > bound / 2 {
            return Err(BlobStoreError::Full {
                need: size,
                bound: bound / 2,
                held: st.uploads,
            });
        }
        self.make_room(&mut st, size)?;
        let path = self.inner.tmp.join(format!("{id}.part"));
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(io_at(&path))?;
        file.set_len(size).map_err(io_at(&path))?;
        let chunks = index.chunks().len();
        let part = Arc::new(Part {
            id,
            path,
            file,
            upload,
            have: Mutex::new(PartState {
                got: vec![false; chunks],
                missing: index.chunk_count(),
                touched: Instant::now(),
                dropped: false,
            }),
            index: Arc::new(index),
        });
        st.reserved += size;
        if upload {
            st.uploads += size;
        }
        st.parts.insert(id, part.clone());
        drop(st);
        self.report();
        debug!(blob = %id, size, upload, "blob transfer started");
        Ok(Begin::Part(part))
    }

    /// Makes `part` a complete blob once every chunk is in (blocking: syncs
    /// and renames its file, writes its index). Another caller that
    /// finished it first is fine: the blob is returned all the same.
    pub fn finish(&self, part: &Part) -> Result<Blob, BlobStoreError> {
        let id = part.id;
        if let Some(b) = self.get(id) {
            return Ok(b);
        }
        let missing = part.missing();
        if missing > 0 {
            return Err(BlobStoreError::Incomplete { id, missing });
        }
        let dir = &self.inner.dir;
        let data = dir.join(id.to_string());
        let idx = dir.join(format!("{id}.idx"));
        let idx_tmp = self.inner.tmp.join(format!("{id}.idx"));
        // One finisher at a time per blob: the table's lock is not held
        // across the syncs, the part's is.
        let mut h = part.have.lock().map_err(|_| BlobStoreError::Dropped(id))?;
        if let Some(b) = self.get(id) {
            return Ok(b);
        }
        if h.dropped {
            return Err(BlobStoreError::Dropped(id));
        }
        part.file.sync_all().map_err(io_at(&part.path))?;
        fs::rename(&part.path, &data).map_err(io_at(&data))?;
        write_synced(&idx_tmp, &part.index.encode())?;
        fs::rename(&idx_tmp, &idx).map_err(io_at(&idx))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_at(dir))?;
        h.dropped = true; // no more writes to the renamed file
        drop(h);
        let mut st = self
            .inner
            .state
            .lock()
            .map_err(|_| BlobStoreError::Dropped(id))?;
        if st.parts.remove(&id).is_some() {
            st.reserved = st.reserved.saturating_sub(part.index.size());
            if part.upload {
                st.uploads = st.uploads.saturating_sub(part.index.size());
            }
        }
        st.clock += 1;
        let clock = st.clock;
        st.used += part.index.size();
        st.complete.insert(
            id,
            Entry {
                index: part.index.clone(),
                used_at: clock,
                pins: 1,
            },
        );
        drop(st);
        self.report();
        debug!(blob = %id, size = part.index.size(), "blob complete");
        Ok(self.handle(part.index.clone()))
    }

    /// Ids of the complete blobs held.
    pub fn list(&self) -> Vec<BlobId> {
        self.inner
            .state
            .lock()
            .map_or_else(|_| Vec::new(), |st| st.complete.keys().copied().collect())
    }

    fn handle(&self, index: Arc<BlobIndex>) -> Blob {
        let id = index.id();
        Blob {
            path: self.inner.dir.join(id.to_string()),
            index,
            _pin: Arc::new(Pin {
                store: self.inner.clone(),
                id,
            }),
        }
    }

    fn report(&self) {
        if let Some(g) = &self.inner.gauge {
            g.set(i64::try_from(self.bytes_used()).unwrap_or(i64::MAX));
        }
    }

    /// Deletes least recently used unpinned blobs until `need` more bytes fit.
    fn make_room(&self, st: &mut State, need: u64) -> Result<(), BlobStoreError> {
        let bound = self.inner.bound;
        while st.used + st.reserved + need > bound {
            let victim = st
                .complete
                .iter()
                .filter(|(_, e)| e.pins == 0)
                .min_by_key(|(_, e)| e.used_at)
                .map(|(id, _)| *id);
            let Some(id) = victim else {
                return Err(BlobStoreError::Full {
                    need,
                    bound,
                    held: st.used + st.reserved,
                });
            };
            if let Some(e) = st.complete.remove(&id) {
                st.used = st.used.saturating_sub(e.index.size());
            }
            let dir = &self.inner.dir;
            for p in [dir.join(id.to_string()), dir.join(format!("{id}.idx"))] {
                if let Err(e) = fs::remove_file(&p) {
                    warn!(path = %p.display(), error = %e, "could not delete an evicted blob");
                }
            }
            debug!(blob = %id, "blob evicted (least recently used)");
        }
        Ok(())
    }

    /// Drops parts nobody wrote to for [`Self::PART_IDLE`].
    fn drop_idle(&self, st: &mut State) {
        let idle: Vec<BlobId> = st
            .parts
            .iter()
            .filter(|(_, p)| {
                p.have
                    .lock()
                    .is_ok_and(|h| h.touched.elapsed() > Self::PART_IDLE)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in idle {
            if let Some(p) = st.parts.remove(&id) {
                if let Ok(mut h) = p.have.lock() {
                    h.dropped = true;
                }
                st.reserved = st.reserved.saturating_sub(p.index.size());
                if p.upload {
                    st.uploads = st.uploads.saturating_sub(p.index.size());
                }
                let _ = fs::remove_file(&p.path);
                warn!(blob = %id, "dropped an idle blob transfer");
            }
        }
    }
}

/// Writes `bytes` to `path` and syncs it.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), BlobStoreError> {
    use std::io::Write;
    let mut f = File::create(path).map_err(io_at(path))?;
    f.write_all(bytes).map_err(io_at(path))?;
    f.sync_all().map_err(io_at(path))
}

#[cfg(test)]
mod tests {
    use chorus_sdk::blob::CHUNK_BYTES;

    use super::*;

    fn data(n: usize, seed: u8) -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
    }

    fn put_all(store: &BlobStore, bytes: &[u8], upload: bool) -> Result<Blob, BlobStoreError> {
        let index = BlobIndex::of(bytes).unwrap();
        match store.begin(index, upload)? {
            Begin::Complete(b) => Ok(b),
            Begin::Part(p) => {
                for (i, c) in bytes.chunks(CHUNK_BYTES).enumerate() {
                    p.put(i as u32, c)?;
                }
                store.finish(&p)
            }
        }
    }

    #[test]
    fn a_sweep_deletes_only_temporary_stores_whose_lock_nobody_holds() {
        let base = std::env::temp_dir().join(format!("chorus-sweep-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let store = |name: &str| {
            let d = base.join(format!("{TEMPORARY_PREFIX}{name}"));
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("blob"), b"bytes").unwrap();
            d
        };
        // A live store: its lock held (as a running node holds it).
        let live = store("live");
        let held = hold_lock(&live).unwrap();
        // A dead store: its lock taken and let go (the process is gone).
        let dead = store("dead");
        drop(hold_lock(&dead).unwrap());
        // A directory without a lock, and one not named as a store.
        let unlocked = store("no-lock");
        let other = base.join("someone-else");
        fs::create_dir_all(&other).unwrap();
        fs::File::create(other.join(LOCK_FILE)).unwrap();

        sweep_dead_temporaries(&base);
        assert!(live.join("blob").exists(), "a live store is kept");
        assert!(!dead.exists(), "a dead store is deleted");
        assert!(unlocked.join("blob").exists(), "no lock file: left alone");
        assert!(other.exists(), "not a store: left alone");
        // Once its process goes, the live one is dead too.
        drop(held);
        sweep_dead_temporaries(&base);
        assert!(!live.exists());
        // A store reopened from its directory keeps its lock file.
        let dir = base.join("reopened");
        drop(BlobStore::open(&dir, 1 << 20).unwrap());
        fs::write(dir.join(LOCK_FILE), b"").unwrap();
        drop(BlobStore::open(&dir, 1 << 20).unwrap());
        assert!(dir.join(LOCK_FILE).exists());
        let _ = fs::remove_dir_all(&base);
    }

    #[test]
    fn blobs_survive_a_restart_and_the_bound_holds_with_pins() {
        let dir = std::env::temp_dir().join(format!("chorus-blobstore-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let mb = CHUNK_BYTES as u64;
        let store = BlobStore::open(&dir, 5 * mb).unwrap();
        let a = data(2 * CHUNK_BYTES, 1);
        let blob_a = put_all(&store, &a, false).unwrap();
        assert_eq!(blob_a.read_all().unwrap(), a);
        // A wrong chunk is refused and not written.
        let b = data(2 * CHUNK_BYTES, 2);
        let Begin::Part(p) = store.begin(BlobIndex::of(&b).unwrap(), false).unwrap() else {
            panic!("new blob")
        };
        assert!(matches!(
            p.put(0, &a[..CHUNK_BYTES]),
            Err(BlobStoreError::Chunk(_))
        ));
        assert_eq!(p.missing(), 2);
        assert!(matches!(
            store.finish(&p),
            Err(BlobStoreError::Incomplete { .. })
        ));
        p.put(0, &b[..CHUNK_BYTES]).unwrap();
        p.put(1, &b[CHUNK_BYTES..]).unwrap();
        let blob_b = store.finish(&p).unwrap();
        drop(blob_b);
        assert_eq!(store.bytes_used(), 4 * mb);
        // A third blob of 2 MiB: b (unpinned, least recently used after a
        // is touched) goes; a, pinned, stays.
        let _ = store.get(blob_a.id());
        let c = data(2 * CHUNK_BYTES, 3);
        let blob_c = put_all(&store, &c, false).unwrap();
        assert!(store.get(blob_a.id()).is_some());
        assert!(store.index(BlobIndex::of(&b).unwrap().id()).is_none());
        // Both pinned, 4 MiB used: 2 more do not fit.
        assert!(matches!(
            put_all(&store, &data(2 * CHUNK_BYTES, 4), false),
            Err(BlobStoreError::Full { .. })
        ));
        // Uploads get half of the bound at most.
        drop(blob_c);
        assert!(matches!(
            put_all(&store, &data(3 * CHUNK_BYTES, 5), true),
            Err(BlobStoreError::Full { .. })
        ));
        assert!(store.bytes_used() <= 5 * mb);
        let id_a = blob_a.id();
        drop(blob_a);
        drop(store);
        // Restart: the complete blobs are there; a stray temp file is gone.
        fs::write(dir.join("tmp").join("junk.part"), b"x").unwrap();
        fs::write(dir.join("garbage"), b"x").unwrap();
        let store = BlobStore::open(&dir, 5 * mb).unwrap();
        assert_eq!(store.get(id_a).unwrap().read_all().unwrap(), a);
        assert_eq!(store.list().len(), 2);
        assert!(!dir.join("garbage").exists());
        assert_eq!(fs::read_dir(dir.join("tmp")).unwrap().count(), 0);
        assert_eq!(store.read_chunk(id_a, 1).unwrap(), a[CHUNK_BYTES..]);
        drop(store);
        fs::remove_dir_all(&dir).unwrap();
    }
}
