//! Running one task: its [`TaskSpec`], the store and its [`TaskState`] (the
//! WASI context, the task's random stream, the resource limiter), fuel and
//! epoch deadline, and the mapping of how it ended to an [`Outcome`] in a
//! [`TaskReport`].

use std::time::Instant;

use chorus_sdk::bundle::Limits;
use std::sync::Arc;

use chorus_wasi::{Stop, Tree};
use wasmtime::{ResourceLimiter, Store};

use super::cache::{Entry, ModuleInner, entry_of};
use super::wasi::WasiStop;
use super::{EngineConfig, Outcome, TaskReport, TrapCode, outcome, wasi};

/// The name a task sees as argv\[0\].
pub const ARGV0: &str = "task";

/// What a task gets: input, arguments, environment, mounts, random seed and limits.
#[derive(Clone, Debug, Default)]
pub struct TaskSpec {
    /// Bytes on the task's stdin.
    pub input: Vec<u8>,
    /// The task's arguments (argv after [`ARGV0`]).
    pub args: Vec<String>,
    /// Seed of the task's `random_get` stream (derive it from the task id).
    pub seed: u64,
    /// The task's limits; must be the same on every replica.
    pub limits: Limits,
    /// Environment variables, in order.
    pub env: Vec<(String, String)>,
    /// Preopened directories: guest path and read-only base content, which
    /// the task sees through a copy-on-write view (fds 3, 4, ... in order).
    pub mounts: Vec<(String, Arc<Tree>)>,
    /// `argv[0]` (default [`ARGV0`]).
    pub argv0: Option<String>,
}

/// Per-task store data.
pub(crate) struct TaskState {
    pub(crate) wasi: chorus_wasi::Wasi,
    /// Whether fuel is metered (host functions charge fuel only then).
    pub(crate) metered: bool,
    limiter: TaskLimiter,
}

/// Instantiates and runs one task. Never panics on anything the task does.
pub(super) fn execute(module: &ModuleInner, spec: TaskSpec, config: &EngineConfig) -> TaskReport {
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
    let mut argv = Vec::with_capacity(spec.args.len() + 1);
    argv.push(spec.argv0.unwrap_or_else(|| ARGV0.to_string()));
    argv.extend(spec.args);
    let state = TaskState {
        wasi: wasi::context(chorus_wasi::Config {
            args: argv,
            env: spec.env,
            stdin: spec.input,
            stdout_cap: limits.stdout_bytes,
            stderr_cap: limits.stderr_bytes,
            preopens: spec.mounts,
            seed: spec.seed,
            scratch_bytes: limits.scratch_bytes,
        }),
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
        match entry_of(module.pre.module()) {
            Some(Entry::Run) => {
                if let Ok(init) = instance.get_typed_func::<(), ()>(&mut store, "_initialize") {
                    init.call(&mut store, ())?;
                }
                let run = instance.get_typed_func::<(), i32>(&mut store, "run")?;
                match run.call(&mut store, ())? {
                    0 => Ok(()),
                    code => Err(wasmtime::Error::new(ReactorExit(code))),
                }
            }
            _ => {
                let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
                start.call(&mut store, ())
            }
        }
    });
    let fuel_used = if instr.fuel {
        limits.fuel.saturating_sub(store.get_fuel().unwrap_or(0))
    } else {
        0
    };
    let limit_hit = store.data().limiter.hit;
    let stdout = store.data_mut().wasi.take_stdout();
    let stderr = store.data_mut().wasi.take_stderr();
    drop(store);
    let outcome = match result {
        Ok(()) => Outcome::Ok,
        Err(e) => classify(&e, limit_hit),
    };
    tracing::debug!(%outcome, fuel_used, "task done");
    TaskReport {
        outcome,
        stdout,
        stderr,
        fuel_used,
        wall: started.elapsed(),
    }
}

/// Maps a wasmtime error to the outcome it means.
fn classify(e: &wasmtime::Error, limit_hit: Option<LimitHit>) -> Outcome {
    if let Some(WasiStop(stop)) = e.downcast_ref::<WasiStop>() {
        return match stop {
            Stop::Exit(0) => Outcome::Ok,
            Stop::Exit(code) => Outcome::Exit(*code as i32),
            Stop::StdoutCap | Stop::StderrCap => Outcome::OutputTooLarge,
            Stop::ScratchLimit => Outcome::ScratchLimit,
            other => Outcome::HostError(other.to_string()),
        };
    }
    match limit_hit {
        Some(LimitHit::Resource) => return Outcome::MemoryLimit,
        Some(LimitHit::HostGrowFailed) => {
            return Outcome::HostError(format!("the host could not grow memory: {e:#}"));
        }
        None => {}
    }
    if let Some(exit) = e.downcast_ref::<ReactorExit>() {
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
    if e.downcast_ref::<wasi::NoMemory>().is_some() {
        return Outcome::Trap(TrapCode::BadWasiArgument);
    }
    Outcome::HostError(format!("{e:#}"))
}

/// A reactor's `run` returned this non-zero exit code.
#[derive(Debug, thiserror::Error)]
#[error("exited with code {0}")]
struct ReactorExit(i32);

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
