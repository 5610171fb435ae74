//! A deterministic, sans-IO implementation of WASI preview 1
//! (`wasi_snapshot_preview1`) for Chorus tasks.
//!
//! The task sees fixed clocks, a seeded random stream, an in-memory standard
//! input, capped standard output and error, and preopened directories that
//! are copy-on-write views over read-only base [`Tree`]s. Nothing here reads
//! a clock, touches the OS or blocks: guest memory comes in as a byte slice
//! on every [`Wasi::call`], so the same calls on the same state give the same
//! bytes on every machine. A wasmtime binding defines each import of
//! [`Wasi::FUNCS`] as a host function that forwards to [`Wasi::call`], and
//! turns a [`Stop`] into a trap with a named outcome.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod abi;
mod fs;
mod mem;
mod ops;
mod rng;
mod tree;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use rng::DeterministicRng;
pub use tree::{BaseNode, Tree, TreeError};

use abi::{errno, rights};
use fs::{Fs, NodeId};

/// What the task's wall clock always reads: 2001-09-09T01:46:40Z (UNIX 10^9 s), in ns.
pub const FIXED_WALL_CLOCK_NS: u64 = 1_000_000_000 * 1_000_000_000;
/// What the task's monotonic (and CPU-time) clocks always read, in ns.
pub const FIXED_MONOTONIC_NS: u64 = 0;
/// Most descriptors open at once; past it `path_open` is `EMFILE`.
pub const MAX_FDS: usize = 1024;

/// Everything a task's WASI world is made of.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// Command-line arguments, `argv[0]` included.
    pub args: Vec<String>,
    /// Environment variables, in the order given.
    pub env: Vec<(String, String)>,
    /// The whole of standard input.
    pub stdin: Vec<u8>,
    /// Most bytes standard output may hold; a write past it is [`Stop::StdoutCap`].
    pub stdout_cap: u64,
    /// Most bytes standard error may hold; a write past it is [`Stop::StderrCap`].
    pub stderr_cap: u64,
    /// Preopened directories as (guest path, base content), fds 3, 4, ... in order.
    pub preopens: Vec<(String, Arc<Tree>)>,
    /// Seed of the `random_get` stream (`DeterministicRng::new(seed, 0)`).
    pub seed: u64,
    /// Most bytes the task's changes may add over the base content (files it
    /// created or changed at their size, plus [`SCRATCH_NODE_COST`] per node
    /// and the names of directory entries it made); past it, [`Stop::ScratchLimit`].
    pub scratch_bytes: u64,
}

/// Scratch bytes each created or changed node costs on top of its contents.
pub const SCRATCH_NODE_COST: u64 = fs::NODE_COST;

/// Why the task must end now. The binding turns each into a trap with a named
/// outcome; the state is left as it was before the call that stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Stop {
    /// The task called `proc_exit` with this code.
    #[error("the task exited with code {0}")]
    Exit(u32),
    /// A write to standard output would have passed its cap; nothing was written.
    #[error("standard output over its cap")]
    StdoutCap,
    /// A write to standard error would have passed its cap; nothing was written.
    #[error("standard error over its cap")]
    StderrCap,
    /// The task's filesystem changes would have passed `scratch_bytes`.
    #[error("filesystem scratch space over its limit")]
    ScratchLimit,
    /// The binding called an index outside [`Wasi::FUNCS`] or with the wrong
    /// number of arguments: a host bug, not the guest's doing.
    #[error("import {index} called with a bad index or argument count")]
    BadCall {
        /// The index passed to [`Wasi::call`].
        index: usize,
    },
}

/// A core wasm value type in an import's signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValKind {
    /// `i32`.
    I32,
    /// `i64`.
    I64,
}

/// One import of `wasi_snapshot_preview1`: its name and core wasm signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FuncSig {
    /// The import's field name.
    pub name: &'static str,
    /// Parameter types, in order.
    pub params: &'static [ValKind],
    /// Result types: `[I32]` (the errno) for all but `proc_exit`, which has none.
    pub results: &'static [ValKind],
}

/// The module name of every import in [`Wasi::FUNCS`].
pub const MODULE: &str = "wasi_snapshot_preview1";

/// Internal failure of a call: an errno for the guest, or a stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fail {
    Errno(u16),
    Stop(Stop),
}

impl From<Stop> for Fail {
    fn from(s: Stop) -> Self {
        Fail::Stop(s)
    }
}

pub(crate) type R<T> = Result<T, Fail>;

/// What a descriptor refers to.
#[derive(Clone, Debug)]
pub(crate) enum Handle {
    Stdin,
    Stdout,
    Stderr,
    File {
        node: NodeId,
        pos: u64,
    },
    Dir {
        node: NodeId,
        preopen: Option<String>,
    },
}

#[derive(Clone, Debug)]
pub(crate) struct Fd {
    pub(crate) handle: Handle,
    pub(crate) flags: u16,
    pub(crate) base: u64,
    pub(crate) inheriting: u64,
}

/// One task's WASI world. See the crate documentation.
pub struct Wasi {
    pub(crate) args: Vec<String>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) stdin: Vec<u8>,
    pub(crate) stdin_pos: usize,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
    pub(crate) stdout_cap: u64,
    pub(crate) stderr_cap: u64,
    pub(crate) fs: Fs,
    pub(crate) fds: BTreeMap<u32, Fd>,
    pub(crate) rng: DeterministicRng,
    pub(crate) work: u64,
}

impl Wasi {
    /// A fresh world from `config`: fds 0-2 are the standard streams, the
    /// preopens follow from fd 3 in order.
    pub fn new(config: Config) -> Self {
        let mut fs = Fs::new(config.scratch_bytes);
        let mut fds = BTreeMap::new();
        let std_fd = |handle, base| Fd {
            handle,
            flags: 0,
            base,
            inheriting: 0,
        };
        fds.insert(0, std_fd(Handle::Stdin, rights::STDIN));
        fds.insert(1, std_fd(Handle::Stdout, rights::STDOUT));
        fds.insert(2, std_fd(Handle::Stderr, rights::STDOUT));
        for (i, (guest_path, tree)) in config.preopens.iter().enumerate() {
            let node = fs.mount(i, tree);
            fs.get_mut(node).opens += 1;
            fds.insert(
                3 + i as u32,
                Fd {
                    handle: Handle::Dir {
                        node,
                        preopen: Some(guest_path.clone()),
                    },
                    flags: 0,
                    base: rights::DIR,
                    inheriting: rights::DIR | rights::FILE,
                },
            );
        }
        Wasi {
            args: config.args,
            env: config.env,
            stdin: config.stdin,
            stdin_pos: 0,
            stdout: Vec::new(),
            stderr: Vec::new(),
            stdout_cap: config.stdout_cap,
            stderr_cap: config.stderr_cap,
            fs,
            fds,
            rng: DeterministicRng::new(config.seed, 0),
            work: 0,
        }
    }

    /// Every `wasi_snapshot_preview1` import, in a fixed order; [`Wasi::call`]
    /// takes an index into this table.
    pub const FUNCS: &'static [FuncSig] = ops::FUNCS;

    /// The index of import `name` in [`Wasi::FUNCS`].
    pub fn func_index(name: &str) -> Option<usize> {
        Self::FUNCS.iter().position(|f| f.name == name)
    }

    /// Calls import `index` of [`Wasi::FUNCS`] with raw arguments (an `i32` as
    /// its `u32` bits zero-extended, an `i64` as its `u64` bits), on guest
    /// memory `mem`. `Ok(errno)` is the `i32` the guest gets back (0 for
    /// `proc_exit`'s absent result never happens: it always stops).
    pub fn call(&mut self, mem: &mut [u8], index: usize, args: &[u64]) -> Result<i32, Stop> {
        let Some(sig) = Self::FUNCS.get(index) else {
            return Err(Stop::BadCall { index });
        };
        if sig.params.len() != args.len() {
            return Err(Stop::BadCall { index });
        }
        self.work += 1;
        let mut mem = mem::Mem::new(mem);
        match self.dispatch(&mut mem, index, args) {
            Ok(()) => Ok(i32::from(errno::SUCCESS)),
            Err(Fail::Errno(e)) => Ok(i32::from(e)),
            Err(Fail::Stop(s)) => Err(s),
        }
    }

    /// Everything written to standard output so far.
    pub fn stdout(&self) -> &[u8] {
        &self.stdout
    }

    /// Everything written to standard error so far.
    pub fn stderr(&self) -> &[u8] {
        &self.stderr
    }

    /// Takes standard output, leaving it empty (the cap still counts what was taken).
    pub fn take_stdout(&mut self) -> Vec<u8> {
        self.stdout_cap = self.stdout_cap.saturating_sub(self.stdout.len() as u64);
        std::mem::take(&mut self.stdout)
    }

    /// Takes standard error, leaving it empty (the cap still counts what was taken).
    pub fn take_stderr(&mut self) -> Vec<u8> {
        self.stderr_cap = self.stderr_cap.saturating_sub(self.stderr.len() as u64);
        std::mem::take(&mut self.stderr)
    }

    /// Host work done so far, in units: 1 per call plus 1 per 8 bytes the host
    /// copied, scanned or produced. Deterministic, so the binding can charge
    /// it as fuel.
    pub fn work(&self) -> u64 {
        self.work
    }

    /// Scratch bytes the task's filesystem changes use now.
    pub fn scratch_used(&self) -> u64 {
        self.fs.used()
    }

    pub(crate) fn charge_bytes(&mut self, n: u64) {
        self.work = self.work.saturating_add(n.div_ceil(8));
    }
}
