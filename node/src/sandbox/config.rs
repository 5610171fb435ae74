//! Engine configuration: [`EngineConfig`] and its [`Instrumentation`], the
//! constants that bound every task's [`Limits`] and this node's ceiling, and
//! the deterministic wasmtime [`Config`](wasmtime::Config) built from them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chorus_sdk::bundle::Limits;
use wasmtime::{InstanceAllocationStrategy, PoolingAllocationConfig};

/// The largest wasm stack a task may ask for (interpreters such as CPython
/// need several MiB). Tasks run on threads of their own whose native stack
/// holds it and the host frames under it (`TASK_THREAD_STACK`).
pub const MAX_STACK_BYTES: u32 = 8 << 20;
/// At most this many different stack sizes (one wasmtime engine each) per
/// [`Engine`](super::Engine).
pub const MAX_STACK_FLAVORS: usize = 4;
/// The most instances, memories and tables (each) a task may ask for; a
/// module with more is invalid on every node.
pub const MAX_INSTANCES: u32 = 16;
/// The most table elements a task may ask for; a module whose tables start
/// larger is invalid on every node.
pub const MAX_TABLE_ELEMENTS: u32 = 1 << 20;

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
    /// any of these is refused
    /// ([`SandboxError::LimitAboveCeiling`](super::SandboxError::LimitAboveCeiling)),
    /// never run under lowered limits. Default: [`EngineConfig::default_ceiling`].
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
            scratch_bytes: 1 << 30,
        }
    }
}

/// The wasmtime configuration of one engine flavor: `config`'s
/// instrumentation (fuel, epochs, NaN canonicalization, deterministic relaxed
/// SIMD), a `stack_bytes` wasm stack, 32-bit memories only, and with
/// [`EngineConfig::pooling`] a pooling allocator sized by the slots and the
/// ceiling. Its `Debug` form is part of the module cache's fingerprint.
pub(super) fn wasmtime_config(config: &EngineConfig, stack_bytes: u32) -> wasmtime::Config {
    let instr = config.instrumentation;
    let mut c = wasmtime::Config::new();
    c.consume_fuel(instr.fuel)
        .epoch_interruption(instr.epoch)
        .cranelift_nan_canonicalization(instr.nan_canonicalization)
        .relaxed_simd_deterministic(instr.deterministic_relaxed_simd)
        .max_wasm_stack(stack_bytes as usize)
        // wasmtime requires room for the wasm stack on fibers, although
        // tasks never run on them (calls are synchronous).
        .async_stack_size(stack_bytes as usize + (1 << 20))
        .wasm_memory64(false)
        // Exception handling (clang's setjmp/longjmp, CPython builds): its
        // control flow is as deterministic as calls; exception objects live
        // in a GC heap collected by reference counting, at points fixed by
        // the program's own allocations.
        .wasm_exceptions(true)
        .cranelift_opt_level(wasmtime::OptLevel::Speed);
    if config.pooling {
        let n = u32::try_from(config.slots.saturating_mul(2).saturating_add(2)).unwrap_or(u32::MAX);
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
    c
}
