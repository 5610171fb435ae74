//! `chorus sim`: the many-node simulator (filled in by the ring work).

use std::process::ExitCode;

/// Arguments of `chorus sim`.
#[derive(Debug, clap::Args)]
pub struct SimArgs {}

/// Runs `chorus sim`.
pub fn run(_args: SimArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not built yet")
}
