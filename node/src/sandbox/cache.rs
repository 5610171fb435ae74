//! The compiled-module cache: one wasmtime engine ([`Flavor`]) per wasm
//! stack size, each keeping its compiled, pre-linked modules in memory (and
//! the modules found invalid), backed by an on-disk cache of serialized
//! modules bounded in bytes and trimmed least recently used first.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chorus_sdk::bundle::Limits;
use chorus_sdk::job::sha256;
use wasmtime::{InstancePre, Linker, Module};

use super::config::{self, MAX_INSTANCES, MAX_TABLE_ELEMENTS};
use super::exec::TaskState;
use super::{EngineConfig, SandboxError, lock, wasi};

/// Counters of the compiled-module cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Modules compiled by Cranelift.
    pub compiled: u64,
    /// Modules loaded from the on-disk cache.
    pub loaded_from_disk: u64,
    /// Lookups answered from memory.
    pub memory_hits: u64,
}

/// A compiled, pre-linked module ready to instantiate. Cheap to clone.
#[derive(Clone)]
pub struct TaskModule {
    pub(super) inner: Arc<ModuleInner>,
}

impl TaskModule {
    /// SHA-256 of the module's bytes.
    pub fn hash(&self) -> [u8; 32] {
        self.inner.hash
    }

    /// The wasm stack size this module was compiled for.
    pub fn stack_bytes(&self) -> u32 {
        self.inner.stack_bytes
    }
}

impl std::fmt::Debug for TaskModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskModule")
            .field("hash", &hex::encode(self.inner.hash))
            .field("stack_bytes", &self.inner.stack_bytes)
            .finish()
    }
}

/// Bytes in a wasm page.
const WASM_PAGE: u64 = 64 * 1024;

#[derive(Default)]
pub(super) struct Stats {
    pub(super) compiled: AtomicU64,
    pub(super) loaded_from_disk: AtomicU64,
    pub(super) memory_hits: AtomicU64,
}

/// One wasmtime engine, for one wasm stack size, with its linker and modules.
pub(super) struct Flavor {
    pub(super) engine: wasmtime::Engine,
    linker: Linker<TaskState>,
    /// SHA-256 over the wasmtime version and the full engine configuration.
    fingerprint: [u8; 32],
    pub(super) stack_bytes: u32,
    modules: Mutex<HashMap<[u8; 32], TaskModule>>,
    /// Modules found invalid, with the reason (not worth compiling again).
    invalid: Mutex<HashMap<[u8; 32], String>>,
    /// One gate per module being compiled right now.
    compiling: Mutex<HashMap<[u8; 32], Arc<Mutex<()>>>>,
    /// Held by the flavor and by each of its modules: once an evicted
    /// flavor's last holder is gone, its engine no longer needs epoch ticks.
    pub(super) users: Arc<()>,
}

pub(super) struct ModuleInner {
    pub(super) hash: [u8; 32],
    pub(super) stack_bytes: u32,
    pub(super) pre: InstancePre<TaskState>,
    pub(super) engine: wasmtime::Engine,
    /// Keeps the flavor's engine ticked while this module may run.
    _users: Arc<()>,
}

impl Flavor {
    pub(super) fn new(config: &EngineConfig, stack_bytes: u32) -> Result<Flavor, SandboxError> {
        let instr = config.instrumentation;
        let c = config::wasmtime_config(config, stack_bytes);
        let engine =
            wasmtime::Engine::new(&c).map_err(|e| SandboxError::Engine(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        wasi::add_to_linker(&mut linker).map_err(|e| SandboxError::Engine(format!("{e:#}")))?;
        // The fingerprint keys the on-disk cache. The serialized empty module
        // carries wasmtime's version and its compatibility header; the Debug
        // form of the config covers every setting, including the ones the
        // compatibility check ignores (NaN canonicalization).
        let empty = Module::new(&engine, b"(module)")
            .and_then(|m| m.serialize())
            .map_err(|e| SandboxError::Engine(format!("{e:#}")))?;
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(b"chorus sandbox cache v1\0");
        ctx.update(&empty);
        // wasmtime prints some settings from hash maps, in varying order: cut
        // the text at every separator and sort the pieces so that the
        // fingerprint is a function of the settings alone.
        let debug = format!("{c:?}").replace(['{', '}', '[', ']', '(', ')'], ",");
        let mut pieces: Vec<&str> = debug
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        pieces.sort_unstable();
        ctx.update(pieces.join(",").as_bytes());
        // And what we set, explicitly.
        ctx.update(format!("{:?} {:?}", config.pooling, config.ceiling).as_bytes());
        ctx.update(format!("{instr:?} stack={stack_bytes}").as_bytes());
        let mut fingerprint = [0u8; 32];
        fingerprint.copy_from_slice(ctx.finish().as_ref());
        Ok(Flavor {
            engine,
            linker,
            fingerprint,
            stack_bytes,
            modules: Mutex::new(HashMap::new()),
            invalid: Mutex::new(HashMap::new()),
            compiling: Mutex::new(HashMap::new()),
            users: Arc::new(()),
        })
    }

    pub(super) fn module(
        &self,
        bytes: &[u8],
        limits: &Limits,
        config: &EngineConfig,
        stats: &Stats,
    ) -> Result<TaskModule, SandboxError> {
        let hash = sha256(bytes);
        if let Some(found) = self.cached(&hash, stats) {
            return found;
        }
        // One compile per module even when a job's first tasks arrive together:
        // the others wait for it, then find it in memory.
        let gate = lock(&self.compiling).entry(hash).or_default().clone();
        let _compiling = lock(&gate);
        if let Some(found) = self.cached(&hash, stats) {
            return found;
        }
        let result = self.build(bytes, hash, limits, config, stats);
        lock(&self.compiling).remove(&hash);
        if let Err(SandboxError::InvalidModule(why)) = &result {
            let mut invalid = lock(&self.invalid);
            if invalid.len() >= config.memory_cache_entries.max(1)
                && let Some(victim) = invalid.keys().next().copied()
            {
                invalid.remove(&victim);
            }
            invalid.insert(hash, why.clone());
        }
        result
    }

    /// The module, or the reason it is invalid, if known in memory. A job of a
    /// thousand tasks of an invalid module does not compile a thousand times either.
    fn cached(&self, hash: &[u8; 32], stats: &Stats) -> Option<Result<TaskModule, SandboxError>> {
        if let Some(m) = lock(&self.modules).get(hash) {
            stats.memory_hits.fetch_add(1, Ordering::Relaxed);
            return Some(Ok(m.clone()));
        }
        lock(&self.invalid)
            .get(hash)
            .map(|why| Err(SandboxError::InvalidModule(why.clone())))
    }

    /// Loads or compiles, checks and pre-links a module not in memory yet.
    fn build(
        &self,
        bytes: &[u8],
        hash: [u8; 32],
        limits: &Limits,
        config: &EngineConfig,
        stats: &Stats,
    ) -> Result<TaskModule, SandboxError> {
        let _span = tracing::debug_span!("module", hash = %hex::encode(&hash[..8])).entered();
        let disk_path = config.cache_dir.as_ref().map(|dir| {
            let mut key = Vec::with_capacity(64);
            key.extend_from_slice(&self.fingerprint);
            key.extend_from_slice(&hash);
            dir.join(format!("{}.cwasm", hex::encode(sha256(&key))))
        });
        let module = match disk_path.as_deref().and_then(|p| self.load(p)) {
            Some(m) => {
                stats.loaded_from_disk.fetch_add(1, Ordering::Relaxed);
                m
            }
            None => {
                let started = Instant::now();
                let m = Module::from_binary(&self.engine, bytes)
                    .map_err(|e| SandboxError::InvalidModule(format!("{e:#}")))?;
                stats.compiled.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(elapsed = ?started.elapsed(), "compiled");
                if let (Some(p), Some(dir)) = (&disk_path, &config.cache_dir) {
                    store_serialized(&m, p);
                    trim_disk_cache(dir, config.disk_cache_bytes, p);
                }
                m
            }
        };
        if entry_of(&module).is_none() {
            return Err(SandboxError::InvalidModule(
                "not a WASI command: no `_start` function of type [] -> [] (nor a reactor's \
                 `run` of type [] -> [i32])"
                    .into(),
            ));
        }
        // A module that cannot fit its limits is the task's own doing, the same
        // on every node: say so before the pooling allocator (sized by this
        // node's ceiling) refuses it in its own words.
        let needs = module.resources_required();
        if needs.num_memories > MAX_INSTANCES
            || needs.num_tables > MAX_INSTANCES
            || needs
                .max_initial_table_size
                .is_some_and(|n| n > u64::from(MAX_TABLE_ELEMENTS))
        {
            // What the pooling allocator refuses at compile time, refused the
            // same way without it.
            return Err(SandboxError::InvalidModule(format!(
                "more than {MAX_INSTANCES} memories or tables, or a table over \
                 {MAX_TABLE_ELEMENTS} elements"
            )));
        }
        if needs.num_memories > limits.instances
            || needs.num_tables > limits.instances
            || needs
                .max_initial_memory_size
                .is_some_and(|pages| pages.saturating_mul(WASM_PAGE) > limits.memory_bytes)
            || needs
                .max_initial_table_size
                .is_some_and(|n| n > u64::from(limits.table_elements))
        {
            return Err(SandboxError::OverLimits);
        }
        let pre = self
            .linker
            .instantiate_pre(&module)
            .map_err(|e| SandboxError::InvalidModule(format!("{e:#}")))?;
        let handle = TaskModule {
            inner: Arc::new(ModuleInner {
                hash,
                stack_bytes: self.stack_bytes,
                pre,
                engine: self.engine.clone(),
                _users: self.users.clone(),
            }),
        };
        let mut modules = lock(&self.modules);
        if modules.len() >= config.memory_cache_entries.max(1)
            && let Some(victim) = modules.keys().next().copied()
        {
            modules.remove(&victim);
        }
        modules.insert(hash, handle.clone());
        Ok(handle)
    }

    /// A module from this node's own disk cache, if present and loadable.
    fn load(&self, path: &Path) -> Option<Module> {
        // Read into memory rather than `deserialize_file`: a mapped file that
        // someone truncates later would kill the process with SIGBUS.
        let bytes = fs::read(path).ok()?;
        // SAFETY: the file is in this node's data dir, was written by
        // `store_serialized` from a module this node compiled itself, and is
        // named by a hash of the engine fingerprint and the module: nothing from
        // the network is ever deserialized. wasmtime checks the version and
        // compatibility header and refuses a mismatch or a truncated file.
        match unsafe { Module::deserialize(&self.engine, &bytes) } {
            Ok(m) => {
                // Recently used: the disk cache is trimmed oldest-modified first.
                if let Ok(f) = fs::File::options().write(true).open(path) {
                    let _ = f.set_modified(std::time::SystemTime::now());
                }
                Some(m)
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "dropping unusable cached module");
                let _ = fs::remove_file(path);
                None
            }
        }
    }
}

/// Writes a compiled module to the disk cache (temp file, then rename). A
/// failure only costs a recompile later, so it is logged, not returned.
fn store_serialized(module: &Module, path: &Path) {
    let result = module
        .serialize()
        .map_err(|e| format!("{e:#}"))
        .and_then(|bytes| {
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            let write = || -> std::io::Result<()> {
                let mut f = fs::File::create(&tmp)?;
                f.write_all(&bytes)?;
                f.sync_all()?;
                fs::rename(&tmp, path)
            };
            write().map_err(|e| {
                let _ = fs::remove_file(&tmp);
                e.to_string()
            })
        });
    if let Err(e) = result {
        tracing::warn!(path = %path.display(), error = %e, "cannot cache compiled module");
    }
}

/// Deletes the least recently used compiled modules in `dir` until their
/// total size is at most `cap` bytes, never `keep` (the module just stored).
/// Temporary files left by a crash (older than ten minutes) go too. Errors
/// only leave files behind, so they are logged, not returned.
fn trim_disk_cache(dir: &Path, cap: u64, keep: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let now = std::time::SystemTime::now();
    let mut files = Vec::new();
    let mut total = 0u64;
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let modified = meta.modified().unwrap_or(now);
        match path.extension().and_then(|e| e.to_str()) {
            Some("cwasm") => {
                total += meta.len();
                if path != keep {
                    files.push((modified, meta.len(), path));
                }
            }
            Some(ext)
                if ext.starts_with("tmp")
                    && now
                        .duration_since(modified)
                        .is_ok_and(|age| age > Duration::from_secs(600)) =>
            {
                let _ = fs::remove_file(&path);
            }
            _ => {}
        }
    }
    if total <= cap {
        return;
    }
    files.sort();
    for (_, len, path) in files {
        if total <= cap {
            break;
        }
        match fs::remove_file(&path) {
            Ok(()) => {
                total -= len;
                tracing::debug!(path = %path.display(), "evicted from the module cache");
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot evict cached module")
            }
        }
    }
}

/// How a module is entered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Entry {
    /// A WASI command: `_start`, `[] -> []`.
    Start,
    /// A reactor (interpreters built as libraries, CPython's WASI builds):
    /// `_initialize` if exported, then `run`, `[] -> [i32]`, whose result is
    /// the exit code.
    Run,
}

/// The entry of `module`, `None` when it has neither.
pub(crate) fn entry_of(module: &Module) -> Option<Entry> {
    let func = |name: &str| match module.get_export(name) {
        Some(wasmtime::ExternType::Func(f)) => Some(f),
        _ => None,
    };
    if let Some(f) = func("_start") {
        return (f.params().len() == 0 && f.results().len() == 0).then_some(Entry::Start);
    }
    let f = func("run")?;
    let mut results = f.results();
    let one_i32 =
        matches!(results.next(), Some(wasmtime::ValType::I32)) && results.next().is_none();
    (f.params().len() == 0 && one_i32).then_some(Entry::Run)
}
