//! What a task needs besides its bundle's module: the files of its mounts
//! and its runtime (an interpreter, its files and environment), fetched as
//! content-addressed blobs from the batch's sender, checked on arrival, and
//! prepared once per bundle (the trees are shared by every task of it: each
//! task writes only to its own copy-on-write view).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use chorus_sdk::bundle::{Limits, VerifiedBundle};
use chorus_sdk::files::Mount;
use chorus_sdk::runtime::{RuntimeBundle, RuntimeId};
use chorus_sdk::wire::{ErrorKind, WireError};
use chorus_wasi::Tree;
use tracing::{debug, info};

use super::Shared;
use crate::sandbox::layout::{Layout, MountedTree, RuntimeFiles, file_blobs, mount_tree};
use crate::sandbox::{SandboxError, TaskModule};

/// Most prepared bundles kept (their trees share the blobs' bytes).
const MAX_PREPARED: usize = 16;
/// Most prepared runtimes kept (each holds a compiled interpreter).
const MAX_RUNTIMES: usize = 4;
/// Most verified runtime bundles kept (a few KiB each).
const MAX_RUNTIME_BUNDLES: usize = 64;

/// A bundle made ready to run: what every task of it gets besides its input.
pub(crate) struct Prepared {
    /// The runtime's compiled interpreter, for a bundle that names one (its
    /// own module is then the program, placed in the mounts).
    pub(crate) runtime: Option<Arc<PreparedRuntime>>,
    /// Directories, environment and arguments.
    pub(crate) layout: Layout,
}

/// A runtime, fetched and checked: its manifest and its files as trees.
pub(crate) struct PreparedRuntime {
    pub(crate) id: RuntimeId,
    pub(crate) bundle: Arc<RuntimeBundle>,
    pub(crate) module: Arc<[u8]>,
    pub(crate) mounts: Vec<MountedTree>,
    /// Compiled interpreters by stack size (one per flavor in use).
    compiled: tokio::sync::Mutex<Vec<(u32, TaskModule)>>,
}

impl PreparedRuntime {
    /// The interpreter compiled for `limits` (once per stack size; a slot is
    /// taken while compiling).
    pub(crate) async fn module(
        &self,
        shared: &Shared,
        limits: &Limits,
    ) -> Result<TaskModule, SandboxError> {
        let mut compiled = self.compiled.lock().await;
        if let Some((_, m)) = compiled.iter().find(|(s, _)| *s == limits.stack_bytes) {
            return Ok(m.clone());
        }
        let started = std::time::Instant::now();
        let m = shared
            .engine
            .compile_runtime(self.module.clone(), *limits)
            .await?;
        info!(runtime = %self.id, name = %self.bundle.manifest.name, elapsed = ?started.elapsed(), "runtime ready");
        compiled.push((limits.stack_bytes, m.clone()));
        Ok(m)
    }
}

fn err(kind: ErrorKind, msg: impl Into<String>) -> WireError {
    WireError::new(kind, msg.into())
}

impl Shared {
    /// Whether a bundle needs anything besides its module.
    pub(crate) fn needs_files(bundle: &VerifiedBundle) -> bool {
        let m = bundle.manifest();
        !m.mounts.is_empty() || !m.env.is_empty() || m.runtime.is_some()
    }

    /// As a job's coordinator: makes sure this node holds every blob the
    /// bundle names (its runtime and the runtime's files, its mounts'
    /// files), fetching the missing ones from `sources` (the node that
    /// forwarded the submission, which the client uploaded them to), so that
    /// workers can fetch them from here. A job whose files cannot be had is
    /// refused before it is stored.
    pub(crate) async fn ensure_blobs(
        &self,
        bundle: &VerifiedBundle,
        sources: &[SocketAddr],
    ) -> Result<(), WireError> {
        let m = bundle.manifest();
        let mut ids = Vec::new();
        if let Some(rid) = m.runtime {
            let rt = self.runtime_bundle(rid, sources).await?;
            ids.push(rt.manifest.module.blob);
            ids.extend(file_blobs(&rt.manifest.mounts));
        }
        ids.extend(file_blobs(&m.mounts));
        // Held on disk, not read: the coordinator only serves them.
        let sources: Vec<crate::blobs::BlobSource> = sources.iter().map(|a| (*a).into()).collect();
        for id in ids {
            self.blobs
                .get(id, &sources)
                .await
                .map_err(|e| err(ErrorKind::Bundle, format!("blob {id}: {e}")))?;
        }
        Ok(())
    }

    /// The prepared files of `bundle`, fetched from `sources` if needed.
    /// A runtime this node does not accept is refused as busy (the
    /// coordinator places the tasks elsewhere), before anything is fetched.
    pub(crate) async fn prepare(
        &self,
        bundle: &VerifiedBundle,
        sources: &[SocketAddr],
    ) -> Result<Arc<Prepared>, WireError> {
        let id = bundle.id();
        if let Some(p) = self.prepared.get(&id) {
            return Ok(p.clone());
        }
        let m = bundle.manifest();
        let runtime = match m.runtime {
            Some(rid) => {
                if !self.config.accept_runtimes.accepts(&rid) {
                    return Err(err(
                        ErrorKind::Busy,
                        format!("this node does not run tasks of runtime {rid} (--accept-runtime)"),
                    ));
                }
                Some(self.runtime(rid, sources).await?)
            }
            None => None,
        };
        let mut own = Vec::with_capacity(m.mounts.len());
        for mount in &m.mounts {
            own.push((mount.guest.clone(), self.tree(mount, sources).await?));
        }
        let program = runtime.as_ref().map(|rt| {
            let files = RuntimeFiles {
                manifest: &rt.bundle.manifest,
                mounts: &rt.mounts,
            };
            (files, Arc::<[u8]>::from(bundle.module()))
        });
        let layout = Layout::new(program, own, &m.env, &m.args)
            .map_err(|e| err(ErrorKind::BadBundle, e.to_string()))?;
        let prepared = Arc::new(Prepared { runtime, layout });
        if self.prepared.len() >= MAX_PREPARED
            && let Some(victim) = self.prepared.iter().next().map(|e| *e.key())
        {
            self.prepared.remove(&victim);
        }
        self.prepared.insert(id, prepared.clone());
        Ok(prepared)
    }

    /// Runtime `id`: fetched, its signature checked, its interpreter and
    /// files fetched (once per node).
    async fn runtime(
        &self,
        id: RuntimeId,
        sources: &[SocketAddr],
    ) -> Result<Arc<PreparedRuntime>, WireError> {
        let _one = self.runtime_lock.lock().await;
        if let Some(r) = self.runtimes.get(&id) {
            return Ok(r.clone());
        }
        let bundle = self.runtime_bundle(id, sources).await?;
        let module = self.blob(bundle.manifest.module.blob, sources).await?;
        if module.len() as u64 != bundle.manifest.module.size {
            return Err(err(
                ErrorKind::BadBundle,
                format!("runtime {id}: the interpreter is not the size its manifest says"),
            ));
        }
        let mut mounts = Vec::new();
        for m in &bundle.manifest.mounts {
            mounts.push((m.guest.clone(), self.tree(m, sources).await?));
        }
        debug!(runtime = %id, name = %bundle.manifest.name, "fetched runtime");
        let r = Arc::new(PreparedRuntime {
            id,
            bundle,
            module,
            mounts,
            compiled: tokio::sync::Mutex::new(Vec::new()),
        });
        if self.runtimes.len() >= MAX_RUNTIMES
            && let Some(victim) = self.runtimes.iter().next().map(|e| *e.key())
        {
            self.runtimes.remove(&victim);
        }
        self.runtimes.insert(id, r.clone());
        Ok(r)
    }

    /// The tree of one mount, its files fetched as blobs.
    async fn tree(&self, mount: &Mount, sources: &[SocketAddr]) -> Result<Arc<Tree>, WireError> {
        let mut blobs = HashMap::new();
        for id in file_blobs(std::slice::from_ref(mount)) {
            blobs.insert(id, self.blob(id, sources).await?);
        }
        let tree = mount_tree(mount, &blobs)
            .map_err(|e| err(ErrorKind::BadBundle, format!("{}: {e}", mount.guest)))?;
        Ok(Arc::new(tree))
    }

    /// Runtime `id`'s signed bundle, fetched from `sources` if this node
    /// does not hold it, its signature checked; kept (it is small) so that a
    /// coordinator that also works decodes it once.
    async fn runtime_bundle(
        &self,
        id: RuntimeId,
        sources: &[SocketAddr],
    ) -> Result<Arc<RuntimeBundle>, WireError> {
        if let Some(b) = self.runtime_bundles.get(&id) {
            return Ok(b.clone());
        }
        let bytes = self.blob(chorus_sdk::blob::BlobId(id.0), sources).await?;
        let bundle = Arc::new(
            RuntimeBundle::decode_verified(&bytes)
                .map_err(|e| err(ErrorKind::BadBundle, format!("runtime {id}: {e}")))?,
        );
        if self.runtime_bundles.len() >= MAX_RUNTIME_BUNDLES
            && let Some(victim) = self.runtime_bundles.iter().next().map(|e| *e.key())
        {
            self.runtime_bundles.remove(&victim);
        }
        self.runtime_bundles.insert(id, bundle.clone());
        Ok(bundle)
    }
}

impl Shared {
    /// Blob `id`, from this node's store or fetched from `sources` (chunk
    /// by chunk, each checked against the blob's index), read into memory.
    pub(crate) async fn blob(
        &self,
        id: chorus_sdk::blob::BlobId,
        sources: &[SocketAddr],
    ) -> Result<Arc<[u8]>, WireError> {
        let sources: Vec<crate::blobs::BlobSource> = sources.iter().map(|a| (*a).into()).collect();
        let blob = self
            .blobs
            .get(id, &sources)
            .await
            .map_err(|e| err(ErrorKind::Bundle, format!("blob {id}: {e}")))?;
        let bytes = tokio::task::spawn_blocking(move || blob.read_all())
            .await
            .map_err(|e| err(ErrorKind::Internal, e.to_string()))?
            .map_err(|e| err(ErrorKind::Internal, format!("blob {id}: {e}")))?;
        Ok(bytes.into())
    }
}
