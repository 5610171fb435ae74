//! The WebAssembly sandbox: runs one task the way every replica runs it.
//!
//! A task is a WASI preview 1 command module: input on stdin, arguments in
//! argv, output on stdout, diagnostics on stderr (capped). It sees no files, no
//! sockets and no environment; its clocks are fixed, its `random_get` is a
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
//! let spec = TaskSpec { input: b"hello".to_vec(), args: vec![], seed: 7, limits };
//! let report = engine.run(&module, spec).await?;
//! println!("{} {:?}", report.outcome, report.digest());
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! - this file: [`Engine`] (config, module cache, slots, running), [`TaskSpec`].
//! - `outcome`: [`Outcome`], [`TrapCode`], [`TaskReport`] and the digest replicas compare.
//! - `wasi`: the deterministic WASI world (clocks, [`DeterministicRng`], capped pipes,
//!   virtual-time `poll_oneoff`).
//!
//! # Concurrency
//!
//! Tasks run synchronously on threads of tokio's blocking pool
//! ([`tokio::task::spawn_blocking`]), never on the async workers, and at most
//! [`EngineConfig::slots`] at a time (a semaphore: one slot per donated core).
//! A background thread advances the wasmtime epoch every
//! [`EngineConfig::epoch_tick`]; a task past its wall-clock deadline traps at
//! its next epoch check, so a slot is never held longer than the deadline plus
//! a tick. Host calls cannot stall: the only blocking WASI call, `poll_oneoff`,
//! runs on virtual time and returns at once.

mod outcome;
mod wasi;

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use wasmtime::{
    InstanceAllocationStrategy, InstancePre, Linker, Module, PoolingAllocationConfig,
    ResourceLimiter, Store,
};
use wasmtime_wasi::I32Exit;
use wasmtime_wasi::p1::WasiP1Ctx;

pub use chorus_sdk::bundle::Limits;
pub use outcome::{Outcome, OutcomeDigest, TaskReport, TrapCode};
pub use wasi::{DeterministicRng, FIXED_MONOTONIC_NS, FIXED_WALL_CLOCK};

/// The largest wasm stack a task may ask for. Tasks run on tokio's blocking
/// threads (2 MiB native stacks), which must hold the wasm stack and the host
/// frames under it.
pub const MAX_STACK_BYTES: u32 = 1 << 20;
/// At most this many different stack sizes (one wasmtime engine each) per [`Engine`].
pub const MAX_STACK_FLAVORS: usize = 4;
/// The most instances, memories and tables (each) a task may ask for; a
/// module with more is invalid on every node.
pub const MAX_INSTANCES: u32 = 16;
/// The most table elements a task may ask for; a module whose tables start
/// larger is invalid on every node.
pub const MAX_TABLE_ELEMENTS: u32 = 1 << 20;
/// Bytes in a wasm page.
const WASM_PAGE: u64 = 64 * 1024;
/// The name a task sees as argv\[0\].
pub const ARGV0: &str = "task";

/// Which kinds of instrumentation the engine compiles in.
///
/// A node always uses [`Instrumentation::DETERMINISTIC`]; the others exist to
/// measure what each costs (the `sandbox` benchmark). Without `fuel` the fuel
/// limit is not enforced; without `epoch` the wall-clock deadline is not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Instrumentation {
    /// Fuel metering (deterministic work limit and accounting).
    pub fuel: bool,
    /// Epoch interruption (wall-clock deadline).
    pub epoch: bool,
    /// NaN canonicalization of every float result.
    pub nan_canonicalization: bool,
    /// Deterministic lowering of relaxed SIMD instructions.
    pub deterministic_relaxed_simd: bool,
}

impl Instrumentation {
    /// Everything on: what a node runs with.
    pub const DETERMINISTIC: Instrumentation = Instrumentation {
        fuel: true,
        epoch: true,
        nan_canonicalization: true,
        deterministic_relaxed_simd: true,
    };
    /// Nothing on: plain wasm, for comparison only.
    pub const NONE: Instrumentation = Instrumentation {
        fuel: false,
        epoch: false,
        nan_canonicalization: false,
        deterministic_relaxed_simd: false,
    };
}

/// How a node's sandbox is set up.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Tasks that may run at once: the donated cores. Default: all cores.
    pub slots: usize,
    /// The most this node donates to one task: a task whose limits are above
    /// any of these is refused ([`SandboxError::LimitAboveCeiling`]), never run
    /// under lowered limits. Default: [`EngineConfig::default_ceiling`].
    pub ceiling: Limits,
    /// Where compiled modules are kept on disk (`DATA_DIR/modules`); `None`
    /// keeps them in memory only. Default `None`.
    pub cache_dir: Option<PathBuf>,
    /// Most bytes of compiled modules kept in `cache_dir`. Past it, the least
    /// recently used files are deleted (a module loaded from disk counts as
    /// used). Default 1 GiB: anyone may submit bundles, so without a bound
    /// the cache would grow with every new module the node ever ran.
    pub disk_cache_bytes: u64,
    /// Compiled modules kept in memory per stack size. Default 64.
    pub memory_cache_entries: usize,
    /// How often the epoch advances, i.e. the resolution of wall-clock
    /// deadlines. Default 10 ms.
    pub epoch_tick: Duration,
    /// Pre-reserve instance slots (wasmtime's pooling allocator): faster
    /// instantiation, more virtual address space. Default `true`. Keep the
    /// default on every node: the pooling allocator refuses a few extreme
    /// modules (e.g. an instance over 16 MiB of VM context) at compile time.
    pub pooling: bool,
    /// What is compiled in. Default (and the only choice for a node):
    /// [`Instrumentation::DETERMINISTIC`].
    pub instrumentation: Instrumentation,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            slots: std::thread::available_parallelism().map_or(1, |n| n.get()),
            ceiling: Self::default_ceiling(),
            cache_dir: None,
            disk_cache_bytes: 1 << 30,
            memory_cache_entries: 64,
            epoch_tick: Duration::from_millis(10),
            pooling: true,
            instrumentation: Instrumentation::DETERMINISTIC,
        }
    }
}

impl EngineConfig {
    /// A default config whose compiled modules are cached in `data_dir/modules`.
    pub fn with_data_dir(data_dir: &Path) -> Self {
        EngineConfig {
            cache_dir: Some(data_dir.join("modules")),
            ..Self::default()
        }
    }

    /// What a node donates by default: 10^13 fuel, 10 minutes, 1 GiB of
    /// memory, a 1 MiB stack, 64 MiB of output, input and module.
    pub fn default_ceiling() -> Limits {
        Limits {
            fuel: 10_000_000_000_000,
            wall_ms: 600_000,
            memory_bytes: 1 << 30,
            table_elements: 1_000_000,
            instances: 4,
            stack_bytes: MAX_STACK_BYTES,
            stdout_bytes: 64 << 20,
            stderr_bytes: 1 << 20,
            input_bytes: 64 << 20,
            module_bytes: 64 << 20,
        }
    }
}

/// What a task gets: input, arguments, random seed and limits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskSpec {
    /// Bytes on the task's stdin.
    pub input: Vec<u8>,
    /// The task's arguments (argv after [`ARGV0`]).
    pub args: Vec<String>,
    /// Seed of the task's `random_get` stream (derive it from the task id).
    pub seed: u64,
    /// The task's limits; must be the same on every replica.
    pub limits: Limits,
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
    /// Too many different stack sizes are in use on this node.
    #[error("more than {MAX_STACK_FLAVORS} different stack sizes requested")]
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

/// The sandbox of a node: wasmtime engines, the module cache and the slots.
/// Cheap to clone (a handle).
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// A compiled, pre-linked module ready to instantiate. Cheap to clone.
#[derive(Clone)]
pub struct TaskModule {
    inner: Arc<ModuleInner>,
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
        let inner = Arc::new(Inner {
            slots: Arc::new(tokio::sync::Semaphore::new(config.slots)),
            flavors: Mutex::new(HashMap::new()),
            stats: Stats::default(),
            config,
        });
        let default_stack = Limits::default()
            .stack_bytes
            .min(inner.config.ceiling.stack_bytes);
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
        if let Some(name) = limits.first_above(&self.inner.config.ceiling) {
            return Err(SandboxError::LimitAboveCeiling(name));
        }
        if bytes.len() as u64 > limits.module_bytes {
            return Err(SandboxError::InvalidModule(format!(
                "module is {} bytes, over the cap of {}",
                bytes.len(),
                limits.module_bytes
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

    /// [`Engine::module`] on a blocking thread (compiling can take seconds),
    /// for async callers.
    pub async fn compile(
        &self,
        bytes: Arc<[u8]>,
        limits: Limits,
    ) -> Result<TaskModule, SandboxError> {
        let engine = self.clone();
        tokio::task::spawn_blocking(move || engine.module(&bytes, &limits))
            .await
            .map_err(|e| SandboxError::Worker(e.to_string()))?
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

    /// Runs `work` on a blocking thread while holding one of the donated slots,
    /// so tasks never run on the async runtime's workers and never exceed the slots.
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
        tokio::task::spawn_blocking(move || {
            let _slot = permit;
            work(engine)
        })
        .await
        .map_err(|e| SandboxError::Worker(e.to_string()))?
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
    flavors: Mutex<HashMap<u32, Arc<Flavor>>>,
    stats: Stats,
}

#[derive(Default)]
struct Stats {
    compiled: AtomicU64,
    loaded_from_disk: AtomicU64,
    memory_hits: AtomicU64,
}

/// One wasmtime engine, for one wasm stack size, with its linker and modules.
struct Flavor {
    engine: wasmtime::Engine,
    linker: Linker<TaskState>,
    /// SHA-256 over the wasmtime version and the full engine configuration.
    fingerprint: [u8; 32],
    stack_bytes: u32,
    modules: Mutex<HashMap<[u8; 32], TaskModule>>,
    /// Modules found invalid, with the reason (not worth compiling again).
    invalid: Mutex<HashMap<[u8; 32], String>>,
    /// One gate per module being compiled right now.
    compiling: Mutex<HashMap<[u8; 32], Arc<Mutex<()>>>>,
}

struct ModuleInner {
    hash: [u8; 32],
    stack_bytes: u32,
    pre: InstancePre<TaskState>,
    engine: wasmtime::Engine,
}

/// Per-task store data.
pub(crate) struct TaskState {
    pub(crate) wasi: WasiP1Ctx,
    pub(crate) rng: DeterministicRng,
    /// Whether fuel is metered (host functions charge fuel only then).
    pub(crate) metered: bool,
    limiter: TaskLimiter,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The maps behind these locks stay consistent even if a holder panicked.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    fn flavor(&self, stack_bytes: u32) -> Result<Arc<Flavor>, SandboxError> {
        let mut flavors = lock(&self.flavors);
        if let Some(f) = flavors.get(&stack_bytes) {
            return Ok(f.clone());
        }
        if flavors.len() >= MAX_STACK_FLAVORS {
            return Err(SandboxError::TooManyStackSizes);
        }
        let f = Arc::new(Flavor::new(&self.config, stack_bytes)?);
        flavors.insert(stack_bytes, f.clone());
        Ok(f)
    }
}

impl Flavor {
    fn new(config: &EngineConfig, stack_bytes: u32) -> Result<Flavor, SandboxError> {
        let instr = config.instrumentation;
        let mut c = wasmtime::Config::new();
        c.consume_fuel(instr.fuel)
            .epoch_interruption(instr.epoch)
            .cranelift_nan_canonicalization(instr.nan_canonicalization)
            .relaxed_simd_deterministic(instr.deterministic_relaxed_simd)
            .max_wasm_stack(stack_bytes as usize)
            .wasm_memory64(false)
            .cranelift_opt_level(wasmtime::OptLevel::Speed);
        if config.pooling {
            let n =
                u32::try_from(config.slots.saturating_mul(2).saturating_add(2)).unwrap_or(u32::MAX);
            let per = config.ceiling.instances;
            let mut pool = PoolingAllocationConfig::default();
            pool.total_core_instances(n)
                .total_memories(n.saturating_mul(per))
                .total_tables(n.saturating_mul(per))
                .total_stacks(n)
                // Per-module shapes are constants, not this node's ceiling: a
                // module that does not fit them is refused at compile time, and
                // that refusal must read the same on every node.
                .max_memories_per_module(MAX_INSTANCES)
                .max_tables_per_module(MAX_INSTANCES)
                .max_memory_size(1 << 32)
                .table_elements(MAX_TABLE_ELEMENTS as usize)
                .max_core_instance_size(16 << 20);
            c.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
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
        })
    }

    fn module(
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
        match module.get_export("_start") {
            Some(wasmtime::ExternType::Func(f))
                if f.params().len() == 0 && f.results().len() == 0 => {}
            _ => {
                return Err(SandboxError::InvalidModule(
                    "not a WASI command: no `_start` function of type [] -> []".into(),
                ));
            }
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

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Advances the epoch of every flavor each `tick` until the engine is dropped.
fn epoch_ticker(inner: Weak<Inner>, tick: Duration) {
    loop {
        std::thread::sleep(tick);
        let Some(inner) = inner.upgrade() else { return };
        for f in lock(&inner.flavors).values() {
            f.engine.increment_epoch();
        }
    }
}

/// Instantiates and runs one task. Never panics on anything the task does.
fn execute(module: &ModuleInner, spec: TaskSpec, config: &EngineConfig) -> TaskReport {
    let started = Instant::now();
    let _span =
        tracing::debug_span!("task", module = %hex::encode(&module.hash[..8]), seed = spec.seed)
            .entered();
    let instr = config.instrumentation;
    let limits = spec.limits;
    // More memories or tables than the limits allow: the task's own doing, so a
    // verdict, decided before wasmtime refuses it with an untyped error.
    let needs = module.pre.module().resources_required();
    if needs.num_memories > limits.instances
        || needs.num_tables > limits.instances
        || limits.instances == 0
    {
        return TaskReport::without_run(Outcome::MemoryLimit);
    }
    let stdout = wasi::CappedPipe::new(limits.stdout_bytes);
    let stderr = wasi::CappedPipe::new(limits.stderr_bytes);
    let mut argv = Vec::with_capacity(spec.args.len() + 1);
    argv.push(ARGV0.to_string());
    argv.extend(spec.args);
    let state = TaskState {
        wasi: wasi::context(spec.input, &argv, spec.seed, &stdout, &stderr),
        rng: DeterministicRng::new(spec.seed, wasi::STREAM_RANDOM_GET),
        metered: instr.fuel,
        limiter: TaskLimiter::new(&limits),
    };
    let mut store = Store::new(&module.engine, state);
    store.limiter(|s| &mut s.limiter);
    if instr.fuel
        && let Err(e) = store.set_fuel(limits.fuel)
    {
        return TaskReport::without_run(Outcome::HostError(format!("{e:#}")));
    }
    if instr.epoch {
        let tick_ms = config.epoch_tick.as_millis().max(1) as u64;
        store.set_epoch_deadline(limits.wall_ms.div_ceil(tick_ms) + 1);
        store.epoch_deadline_trap();
    }
    let result = module.pre.instantiate(&mut store).and_then(|instance| {
        let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
        start.call(&mut store, ())
    });
    let fuel_used = if instr.fuel {
        limits.fuel.saturating_sub(store.get_fuel().unwrap_or(0))
    } else {
        0
    };
    let limit_hit = store.data().limiter.hit;
    drop(store);
    let outcome = match result {
        Ok(()) => Outcome::Ok,
        Err(e) => classify(&e, limit_hit, stdout.overflowed() || stderr.overflowed()),
    };
    tracing::debug!(%outcome, fuel_used, "task done");
    TaskReport {
        outcome,
        stdout: stdout.take(),
        stderr: stderr.take(),
        fuel_used,
        wall: started.elapsed(),
    }
}

/// Maps a wasmtime error to the outcome it means.
fn classify(e: &wasmtime::Error, limit_hit: Option<LimitHit>, output_overflow: bool) -> Outcome {
    if output_overflow {
        return Outcome::OutputTooLarge;
    }
    match limit_hit {
        Some(LimitHit::Resource) => return Outcome::MemoryLimit,
        Some(LimitHit::HostGrowFailed) => {
            return Outcome::HostError(format!("the host could not grow memory: {e:#}"));
        }
        None => {}
    }
    if let Some(exit) = e.downcast_ref::<I32Exit>() {
        return if exit.0 == 0 {
            Outcome::Ok
        } else {
            Outcome::Exit(exit.0)
        };
    }
    if let Some(trap) = e.downcast_ref::<wasmtime::Trap>() {
        return match trap {
            wasmtime::Trap::OutOfFuel => Outcome::FuelExhausted,
            wasmtime::Trap::Interrupt => Outcome::Timeout,
            t => match outcome::trap_code(*t) {
                Some(code) => Outcome::Trap(code),
                None => Outcome::HostError(format!("{e:#}")),
            },
        };
    }
    if e.chain()
        .any(|cause| cause.downcast_ref::<wiggle::GuestError>().is_some())
    {
        return Outcome::Trap(TrapCode::BadWasiArgument);
    }
    Outcome::HostError(format!("{e:#}"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LimitHit {
    /// The task asked for more than its limits allow (deterministic).
    Resource,
    /// The host failed to provide memory within the limits (not deterministic).
    HostGrowFailed,
}

/// The error a limiter returns to stop the task.
#[derive(Debug, thiserror::Error)]
#[error("{0} limit exceeded")]
struct ResourceLimitExceeded(&'static str);

struct TaskLimiter {
    memory_limit: u64,
    memory_used: u64,
    table_elements: u64,
    count: usize,
    hit: Option<LimitHit>,
}

impl TaskLimiter {
    fn new(limits: &Limits) -> Self {
        TaskLimiter {
            memory_limit: limits.memory_bytes,
            memory_used: 0,
            table_elements: limits.table_elements.into(),
            count: limits.instances as usize,
            hit: None,
        }
    }
}

impl ResourceLimiter for TaskLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self
            .memory_used
            .saturating_sub(current as u64)
            .saturating_add(desired as u64);
        if total > self.memory_limit {
            self.hit.get_or_insert(LimitHit::Resource);
            return Err(wasmtime::Error::new(ResourceLimitExceeded("memory")));
        }
        self.memory_used = total;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.hit.get_or_insert(LimitHit::HostGrowFailed);
        Err(error)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.table_elements {
            self.hit.get_or_insert(LimitHit::Resource);
            return Err(wasmtime::Error::new(ResourceLimitExceeded("table")));
        }
        Ok(true)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.hit.get_or_insert(LimitHit::HostGrowFailed);
        Err(error)
    }

    fn instances(&self) -> usize {
        self.count
    }

    fn tables(&self) -> usize {
        self.count
    }

    fn memories(&self) -> usize {
        self.count
    }
}
