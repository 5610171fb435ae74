//! The WebAssembly sandbox: runs one task the way every replica runs it.
//!
//! A task is a WASI preview 1 module (a command, or a reactor with `run`):
//! input on stdin, arguments in argv, output on stdout, diagnostics on stderr
//! (capped). It sees the environment and the directories its job gives it
//! (in-memory copy-on-write views over read-only content, bounded by
//! [`Limits::scratch_bytes`]; nothing reaches the host) and no sockets; its
//! clocks are fixed, its `random_get` is a
//! stream seeded from the task, and the engine is configured so that floating
//! point and SIMD give the same bits on every CPU (NaN canonicalization,
//! deterministic relaxed SIMD, no threads). Two nodes that run the same task
//! under the same [`Limits`] produce the same [`TaskReport::digest`].
//!
//! # Use
//!
//! ```no_run
//! # async fn demo(module_bytes: &[u8]) -> Result<(), chorus_node::sandbox::SandboxError> {
//! use chorus_node::sandbox::{Engine, EngineConfig, Limits, TaskSpec};
//!
//! let engine = Engine::new(EngineConfig::default())?;
//! let limits = Limits::default();
//! let module = engine.module(module_bytes, &limits)?; // compiled once, then cached
//! let spec = TaskSpec { input: b"hello".to_vec(), seed: 7, limits, ..TaskSpec::default() };
//! let report = engine.run(&module, spec).await?;
//! println!("{} {:?}", report.outcome, report.digest());
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! - this file: [`Engine`] (slots, the epoch ticker, the engine per stack size)
//!   and [`SandboxError`].
//! - `config`: [`EngineConfig`], [`Instrumentation`], the limit constants and the
//!   deterministic wasmtime `Config`.
//! - `cache`: the compiled-module cache ([`TaskModule`], [`CacheStats`]): in
//!   memory per stack size, and on disk bounded by least recently used.
//! - `exec`: running one task ([`TaskSpec`]): store, limiter, fuel and epoch
//!   deadline, WASI context, and the outcome it ends with.
//! - [`layout`]: a task's directories, environment and arguments from its
//!   bundle and its runtime.
//! - `outcome`: [`Outcome`], [`TrapCode`], [`TaskReport`] and the digest replicas compare.
//! - `wasi`: the binding of our WASI preview 1 (`chorus-wasi`: files, clocks,
//!   [`DeterministicRng`], capped pipes,
//!   virtual-time `poll_oneoff`).
//!
//! # Concurrency
//!
//! Tasks run synchronously on threads of their own (with a native stack
//! that holds the largest wasm stack), never on the async workers, and at most
//! [`EngineConfig::slots`] at a time (a semaphore: one slot per donated core).
//! A background thread advances the wasmtime epoch every
//! [`EngineConfig::epoch_tick`]; a task past its wall-clock deadline traps at
//! its next epoch check, so a slot is never held longer than the deadline plus
//! a tick. Host calls cannot stall: the only blocking WASI call, `poll_oneoff`,
//! runs on virtual time and returns at once.

mod cache;
mod config;
mod exec;
pub mod layout;
mod outcome;
mod wasi;

use std::collections::HashMap;
use std::fs;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

pub use cache::{CacheStats, TaskModule};
pub use chorus_sdk::bundle::Limits;
pub use config::{
    EngineConfig, Instrumentation, MAX_INSTANCES, MAX_STACK_BYTES, MAX_STACK_FLAVORS,
    MAX_TABLE_ELEMENTS,
};
pub(crate) use exec::TaskState;
pub use exec::{ARGV0, TaskSpec};
pub use outcome::{Outcome, OutcomeDigest, TaskReport, TrapCode};
pub use wasi::{DeterministicRng, FIXED_MONOTONIC_NS, FIXED_WALL_CLOCK};

use cache::{Flavor, Stats};
use exec::execute;

/// Native stack of the threads tasks run on: the largest wasm stack plus
/// room for the host frames under it.
pub const TASK_THREAD_STACK: usize = MAX_STACK_BYTES as usize + (4 << 20);

/// Runs `f` on a thread with a [`TASK_THREAD_STACK`] stack and waits for it:
/// for callers outside the node (`chorus run`, benchmarks) whose own thread
/// may be too small for a task's wasm stack.
pub fn on_task_thread<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, SandboxError> {
    std::thread::Builder::new()
        .name("chorus-task".into())
        .stack_size(TASK_THREAD_STACK)
        .spawn(f)
        .map_err(|e| SandboxError::Worker(format!("cannot start a task thread: {e}")))?
        .join()
        .map_err(|_| SandboxError::Worker("the task thread panicked".into()))
}

/// Why the sandbox did not run a task. A task that ran, whatever it did, gives
/// a [`TaskReport`] instead; these errors change no state.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The engine config is unusable.
    #[error("bad sandbox config: {0}")]
    Config(String),
    /// wasmtime refused to build an engine or linker.
    #[error("cannot set up the wasmtime engine: {0}")]
    Engine(String),
    /// A task limit is above what this node donates: the task is refused.
    #[error("the task's {0} limit is above what this node donates")]
    LimitAboveCeiling(&'static str),
    /// The module is not a valid WASI command (or is over its size cap). Every
    /// node agrees on this: report it with [`SandboxError::into_outcome`].
    #[error("invalid module: {0}")]
    InvalidModule(String),
    /// The module needs more memories, tables, initial memory or initial
    /// table elements than the task's limits allow. Every node agrees: it is
    /// reported as [`Outcome::MemoryLimit`] by [`SandboxError::into_outcome`].
    #[error("the module needs more memory or tables than the task's limits allow")]
    OverLimits,
    /// The module was compiled for another stack size than the task asks for.
    #[error("module compiled for a {module} byte stack, task asks for {task}")]
    StackMismatch {
        /// Stack size the module was compiled for.
        module: u32,
        /// Stack size in the task's limits.
        task: u32,
    },
    /// Too many different stack sizes are in use on this node at once: the
    /// least recently used ones are evicted when a new one is needed, but
    /// not while tasks compiled for them may still run. Ask again later.
    #[error("more than {MAX_STACK_FLAVORS} different stack sizes in use at once")]
    TooManyStackSizes,
    /// The blocking thread that ran the task failed or the engine shut down.
    #[error("sandbox worker failed: {0}")]
    Worker(String),
}

impl SandboxError {
    /// The outcome to report for an error every node reproduces
    /// ([`SandboxError::InvalidModule`], [`SandboxError::OverLimits`]); any
    /// other error is given back.
    pub fn into_outcome(self) -> Result<Outcome, SandboxError> {
        match self {
            SandboxError::InvalidModule(why) => Ok(Outcome::InvalidModule(why)),
            SandboxError::OverLimits => Ok(Outcome::MemoryLimit),
            other => Err(other),
        }
    }
}

/// The sandbox of a node: wasmtime engines, the module cache and the slots.
/// Cheap to clone (a handle).
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Builds the sandbox: checks the config, sets up the engine for the
    /// default stack size and starts the epoch ticker.
    pub fn new(config: EngineConfig) -> Result<Engine, SandboxError> {
        if config.slots == 0 {
            return Err(SandboxError::Config("slots must be at least 1".into()));
        }
        if config.ceiling.stack_bytes > MAX_STACK_BYTES || config.ceiling.stack_bytes < 4096 {
            return Err(SandboxError::Config(format!(
                "stack ceiling must be 4 KiB..={MAX_STACK_BYTES} bytes"
            )));
        }
        if config.epoch_tick.is_zero() {
            return Err(SandboxError::Config("epoch_tick must be positive".into()));
        }
        if config.ceiling.instances == 0 || config.ceiling.instances > MAX_INSTANCES {
            return Err(SandboxError::Config(format!(
                "instances ceiling must be 1..={MAX_INSTANCES}"
            )));
        }
        if config.ceiling.table_elements > MAX_TABLE_ELEMENTS {
            return Err(SandboxError::Config(format!(
                "table elements ceiling must be at most {MAX_TABLE_ELEMENTS}"
            )));
        }
        if config.ceiling.memory_bytes > 1 << 32 {
            return Err(SandboxError::Config(
                "memory ceiling must be at most 4 GiB (32-bit memories)".into(),
            ));
        }
        if let Some(dir) = &config.cache_dir {
            fs::create_dir_all(dir).map_err(|e| {
                SandboxError::Config(format!("cannot create cache dir {}: {e}", dir.display()))
            })?;
        }
        let default_stack = Limits::default()
            .stack_bytes
            .min(config.ceiling.stack_bytes);
        let inner = Arc::new(Inner {
            slots: Arc::new(tokio::sync::Semaphore::new(config.slots)),
            flavors: Mutex::new(Flavors {
                default_stack,
                live: HashMap::new(),
                clock: 0,
                retired: Vec::new(),
            }),
            stats: Stats::default(),
            config,
        });
        inner.flavor(default_stack)?;
        if inner.config.instrumentation.epoch {
            let weak = Arc::downgrade(&inner);
            let tick = inner.config.epoch_tick;
            std::thread::Builder::new()
                .name("chorus-epoch".into())
                .spawn(move || epoch_ticker(weak, tick))
                .map_err(|e| SandboxError::Engine(format!("cannot start the epoch thread: {e}")))?;
        }
        Ok(Engine { inner })
    }

    /// The config this engine was built with.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// Task slots free right now.
    pub fn free_slots(&self) -> usize {
        self.inner.slots.available_permits()
    }

    /// Counters of the module cache.
    pub fn cache_stats(&self) -> CacheStats {
        CacheStats {
            compiled: self.inner.stats.compiled.load(Ordering::Relaxed),
            loaded_from_disk: self.inner.stats.loaded_from_disk.load(Ordering::Relaxed),
            memory_hits: self.inner.stats.memory_hits.load(Ordering::Relaxed),
        }
    }

    /// The compiled module for `bytes` under `limits` (its size cap and stack
    /// size): from memory, else from the disk cache, else compiled (and then
    /// cached). Precompiled code is never accepted from outside: only this
    /// node's own serialized modules are loaded. Blocking (compiling takes
    /// milliseconds to seconds); from async code prefer [`Engine::run_module`].
    pub fn module(&self, bytes: &[u8], limits: &Limits) -> Result<TaskModule, SandboxError> {
        self.module_capped(bytes, limits, limits.module_bytes)
    }

    /// [`Engine::module`] for a runtime's interpreter, which the donor chose
    /// to accept (`--accept-runtime`): its size is bounded by
    /// [`chorus_sdk::runtime::MAX_RUNTIME_MODULE_BYTES`], not by the task's
    /// module cap.
    pub fn runtime_module(
        &self,
        bytes: &[u8],
        limits: &Limits,
    ) -> Result<TaskModule, SandboxError> {
        self.module_capped(bytes, limits, chorus_sdk::runtime::MAX_RUNTIME_MODULE_BYTES)
    }

    /// [`Engine::runtime_module`] on a thread of its own in a slot, for
    /// async callers (compiling a 100 MB interpreter takes a minute of a core).
    pub async fn compile_runtime(
        &self,
        bytes: Arc<[u8]>,
        limits: Limits,
    ) -> Result<TaskModule, SandboxError> {
        self.in_slot(move |engine| engine.runtime_module(&bytes, &limits))
            .await
    }

    fn module_capped(
        &self,
        bytes: &[u8],
        limits: &Limits,
        cap: u64,
    ) -> Result<TaskModule, SandboxError> {
        if let Some(name) = limits.first_above(&self.inner.config.ceiling) {
            return Err(SandboxError::LimitAboveCeiling(name));
        }
        if bytes.len() as u64 > cap {
            return Err(SandboxError::InvalidModule(format!(
                "module is {} bytes, over the cap of {cap}",
                bytes.len(),
            )));
        }
        let flavor = self.inner.flavor(limits.stack_bytes)?;
        flavor.module(bytes, limits, &self.inner.config, &self.inner.stats)
    }

    /// Runs one task on the calling thread, without taking a slot (for the
    /// command line and benchmarks; a node uses [`Engine::run`]). Whatever the
    /// task does, the result is a [`TaskReport`]; an `Err` means it was refused.
    ///
    /// Never call this from an async task: WASI output blocks on tokio
    /// internally, which panics on a runtime worker thread. A plain thread or
    /// [`tokio::task::spawn_blocking`] is fine.
    pub fn run_blocking(
        &self,
        module: &TaskModule,
        spec: TaskSpec,
    ) -> Result<TaskReport, SandboxError> {
        if let Some(name) = spec.limits.first_above(&self.inner.config.ceiling) {
            return Err(SandboxError::LimitAboveCeiling(name));
        }
        if module.inner.stack_bytes != spec.limits.stack_bytes {
            return Err(SandboxError::StackMismatch {
                module: module.inner.stack_bytes,
                task: spec.limits.stack_bytes,
            });
        }
        let input_len =
            spec.input.len() as u64 + spec.args.iter().map(|a| a.len() as u64 + 1).sum::<u64>();
        if input_len > spec.limits.input_bytes {
            return Ok(TaskReport::without_run(Outcome::InputTooLarge));
        }
        Ok(execute(&module.inner, spec, &self.inner.config))
    }

    /// [`Engine::module`] on a blocking thread in a slot, for async callers:
    /// compiling can take seconds of a core, so it counts against the
    /// donated cores like a task does (a module found in the cache costs
    /// the slot only for the lookup).
    pub async fn compile(
        &self,
        bytes: Arc<[u8]>,
        limits: Limits,
    ) -> Result<TaskModule, SandboxError> {
        self.in_slot(move |engine| engine.module(&bytes, &limits))
            .await
    }

    /// Runs one task in a slot, on a blocking thread. Waits for a free slot
    /// first. If the returned future is dropped, the task still runs to its end
    /// (at most its wall-clock limit) and its slot is released then.
    pub async fn run(
        &self,
        module: &TaskModule,
        spec: TaskSpec,
    ) -> Result<TaskReport, SandboxError> {
        let module = module.clone();
        self.in_slot(move |engine| engine.run_blocking(&module, spec))
            .await
    }

    /// Compiles (or fetches from the cache) and runs, in a slot: the whole path
    /// from module bytes to report. An invalid module is reported as
    /// [`Outcome::InvalidModule`], a verdict like any other.
    pub async fn run_module(
        &self,
        bytes: Arc<[u8]>,
        spec: TaskSpec,
    ) -> Result<TaskReport, SandboxError> {
        self.in_slot(move |engine| engine.run_module_blocking(&bytes, spec))
            .await
    }

    /// Runs `work` on a thread of its own while holding one of the donated
    /// slots, so tasks never run on the async runtime's workers and never
    /// exceed the slots. The thread's native stack holds the largest wasm
    /// stack a task may ask for ([`TASK_THREAD_STACK`]), whoever built the
    /// async runtime.
    async fn in_slot<T: Send + 'static>(
        &self,
        work: impl FnOnce(Engine) -> Result<T, SandboxError> + Send + 'static,
    ) -> Result<T, SandboxError> {
        let permit = self
            .inner
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| SandboxError::Worker(e.to_string()))?;
        let engine = self.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("chorus-task".into())
            .stack_size(TASK_THREAD_STACK)
            .spawn(move || {
                let result = work(engine);
                // The slot is free before the caller hears the result, so a
                // caller that sees its task done also sees its slot back.
                drop(permit);
                let _ = tx.send(result);
            })
            .map_err(|e| SandboxError::Worker(format!("cannot start a task thread: {e}")))?;
        rx.await
            .map_err(|_| SandboxError::Worker("the task thread ended without a report".into()))?
    }

    /// [`Engine::run_module`] on the calling thread, without a slot.
    pub fn run_module_blocking(
        &self,
        bytes: &[u8],
        spec: TaskSpec,
    ) -> Result<TaskReport, SandboxError> {
        match self.module(bytes, &spec.limits) {
            Ok(module) => self.run_blocking(&module, spec),
            Err(e) => e.into_outcome().map(TaskReport::without_run),
        }
    }

    /// Measures this node's speed in fuel per second: runs a built-in
    /// integer-mixing loop under the deterministic configuration until it has
    /// burnt `fuel` units, on the calling thread. For the capacity record
    /// ("measured speed"); 10^8 fuel takes about 0.1 s.
    pub fn fuel_per_second(&self, fuel: u64) -> Result<u64, SandboxError> {
        if !self.inner.config.instrumentation.fuel {
            return Err(SandboxError::Config(
                "fuel metering is off in this engine".into(),
            ));
        }
        // An xorshift loop: a few integer operations per iteration, no memory.
        let calibration = wat::parse_str(
            r#"(module
                 (memory (export "memory") 1)
                 (func (export "_start") (local $x i64)
                   (local.set $x (i64.const 88172645463325252))
                   (loop $l
                     (local.set $x (i64.xor (local.get $x) (i64.shl (local.get $x) (i64.const 13))))
                     (local.set $x (i64.xor (local.get $x) (i64.shr_u (local.get $x) (i64.const 7))))
                     (local.set $x (i64.xor (local.get $x) (i64.shl (local.get $x) (i64.const 17))))
                     (br $l))))"#,
        )
        .map_err(|e| SandboxError::Engine(format!("calibration module: {e}")))?;
        let limits = Limits {
            fuel: fuel.min(self.inner.config.ceiling.fuel),
            wall_ms: self.inner.config.ceiling.wall_ms,
            ..Limits::default()
        };
        let module = self.module(&calibration, &limits)?;
        let report = self.run_blocking(
            &module,
            TaskSpec {
                limits,
                ..TaskSpec::default()
            },
        )?;
        if report.outcome != Outcome::FuelExhausted {
            return Err(SandboxError::Worker(format!(
                "calibration ended with {} instead of running out of fuel",
                report.outcome
            )));
        }
        let secs = report.wall.as_secs_f64().max(1e-9);
        Ok((report.fuel_used as f64 / secs) as u64)
    }
}

// ---------------------------------------------------------------------------
// Internals.

struct Inner {
    config: EngineConfig,
    slots: Arc<tokio::sync::Semaphore>,
    flavors: Mutex<Flavors>,
    stats: Stats,
}

/// The engines per stack size: at most [`MAX_STACK_FLAVORS`] live, the least
/// recently used evicted (never the default stack size's) when another is
/// needed. An evicted engine whose modules may still run stays ticked until
/// its last module is dropped; at most [`MAX_STACK_FLAVORS`] of those at once.
struct Flavors {
    default_stack: u32,
    /// By stack size, with when each was last used.
    live: HashMap<u32, (Arc<Flavor>, u64)>,
    clock: u64,
    /// Evicted engines, ticked while their flavor or a module of it lives.
    retired: Vec<(wasmtime::Engine, Weak<()>)>,
}

impl Flavors {
    /// Drops the evicted engines nothing uses any more.
    fn prune(&mut self) {
        self.retired.retain(|(_, users)| users.strong_count() > 0);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The maps behind these locks stay consistent even if a holder panicked.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    /// The engine for `stack_bytes`, made (evicting the least recently
    /// used other than the default) if needed.
    fn flavor(&self, stack_bytes: u32) -> Result<Arc<Flavor>, SandboxError> {
        let mut flavors = lock(&self.flavors);
        flavors.clock += 1;
        let now = flavors.clock;
        if let Some((f, used)) = flavors.live.get_mut(&stack_bytes) {
            *used = now;
            return Ok(f.clone());
        }
        flavors.prune();
        if flavors.live.len() >= MAX_STACK_FLAVORS {
            if flavors.retired.len() >= MAX_STACK_FLAVORS {
                // Evicted engines are all still running tasks: making more
                // would grow without bound under a flood of odd stack sizes.
                return Err(SandboxError::TooManyStackSizes);
            }
            let default_stack = flavors.default_stack;
            let victim = flavors
                .live
                .iter()
                .filter(|(stack, _)| **stack != default_stack)
                .min_by_key(|(_, (_, used))| *used)
                .map(|(stack, _)| *stack);
            if let Some((old, _)) = victim.and_then(|v| flavors.live.remove(&v)) {
                tracing::debug!(stack_bytes = old.stack_bytes, "evicted a stack-size engine");
                let users = Arc::downgrade(&old.users);
                flavors.retired.push((old.engine.clone(), users));
            }
        }
        let f = Arc::new(Flavor::new(&self.config, stack_bytes)?);
        flavors.live.insert(stack_bytes, (f.clone(), now));
        Ok(f)
    }
}

/// Advances the epoch of every flavor each `tick` until the engine is dropped.
fn epoch_ticker(inner: Weak<Inner>, tick: Duration) {
    loop {
        std::thread::sleep(tick);
        let Some(inner) = inner.upgrade() else { return };
        let mut flavors = lock(&inner.flavors);
        flavors.prune();
        for (f, _) in flavors.live.values() {
            f.engine.increment_epoch();
        }
        for (engine, _) in &flavors.retired {
            engine.increment_epoch();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An empty WASI command, and one that loops forever.
    fn modules() -> (Vec<u8>, Vec<u8>) {
        let empty =
            wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "_start")))"#)
                .unwrap();
        let spin = wat::parse_str(
            r#"(module (memory (export "memory") 1)
                 (func (export "_start") (loop $l (br $l))))"#,
        )
        .unwrap();
        (empty, spin)
    }

    fn limits(stack_bytes: u32) -> Limits {
        Limits {
            stack_bytes,
            wall_ms: 300,
            ..Limits::default()
        }
    }

    #[test]
    fn odd_stack_sizes_are_evicted_and_do_not_break_others() {
        let engine = Engine::new(EngineConfig::default()).unwrap();
        let (empty, spin) = modules();
        let default_stack = Limits::default().stack_bytes;
        let odd = [
            64 << 10,
            96 << 10,
            128 << 10,
            160 << 10,
            192 << 10,
            224 << 10,
        ];
        // Keep a module of the first odd stack size: its engine is evicted
        // while the module may still run.
        let held = engine.module(&spin, &limits(odd[0])).unwrap();
        for stack in odd {
            let m = engine.module(&empty, &limits(stack)).unwrap();
            let r = engine
                .run_blocking(
                    &m,
                    TaskSpec {
                        limits: limits(stack),
                        ..TaskSpec::default()
                    },
                )
                .unwrap();
            assert_eq!(r.outcome, Outcome::Ok, "stack {stack}");
            assert!(lock(&engine.inner.flavors).live.len() <= MAX_STACK_FLAVORS);
        }
        {
            let flavors = lock(&engine.inner.flavors);
            assert!(
                flavors.live.contains_key(&default_stack),
                "the default is never evicted"
            );
            assert!(
                !flavors.live.contains_key(&odd[0]),
                "the oldest odd one was"
            );
        }
        // The default stack size still works, and so does the first odd one again.
        for stack in [default_stack, odd[0]] {
            let m = engine.module(&empty, &limits(stack)).unwrap();
            let spec = TaskSpec {
                limits: limits(stack),
                ..TaskSpec::default()
            };
            assert_eq!(engine.run_blocking(&m, spec).unwrap().outcome, Outcome::Ok);
        }
        // A module of an evicted engine still meets its wall-clock deadline:
        // the engine is ticked while the module lives.
        let spec = TaskSpec {
            limits: Limits {
                fuel: engine.config().ceiling.fuel,
                ..limits(odd[0])
            },
            ..TaskSpec::default()
        };
        let r = engine.run_blocking(&held, spec).unwrap();
        assert_eq!(r.outcome, Outcome::Timeout);
        drop(held);
    }
}
