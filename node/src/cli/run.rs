//! `chorus run`: one task in the local sandbox (filled in by the sandbox work).

use std::process::ExitCode;

/// Arguments of `chorus run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {}

/// Runs `chorus run`.
pub fn run(_args: RunArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not built yet")
}
