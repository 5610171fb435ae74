//! A task author's path: write a task project from a template, build it to a
//! reproducible `wasm32-wasip1` module, and show what the module printed.
//! `chorus task new|build|test` (the [`cli::task`](crate::cli::task)
//! subcommands) are thin over these.
//!
//! # Layout
//!
//! - [`new`]: the Rust and C templates (`node/templates/`, embedded) and the
//!   project they become.
//! - [`build`]: the toolchain a build needs (found, or named with its install
//!   command), the reproducible build, and the freshness of a built module.
//! - [`output`]: a task's output for people: text, MessagePack as JSON, or bytes.

pub mod build;
pub mod new;
pub mod output;

/// The language of a task project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust with the guest SDK (`chorus_sdk::guest`), MessagePack in and out.
    Rust,
    /// C with wasi-libc: stdin in, stdout out.
    C,
    /// Python on the grid's Python runtime: a script, stdin in, stdout out.
    Python,
}

impl std::fmt::Display for Lang {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Lang::Rust => "rust",
            Lang::C => "c",
            Lang::Python => "python",
        })
    }
}
