//! `chorus run`: one task in the local sandbox, exactly as a node runs it.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use chorus_sdk::bundle::Bundle;

use crate::sandbox::{Engine, EngineConfig, Limits, Outcome, TaskSpec};

/// Arguments of `chorus run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The task: a WebAssembly module (WASI preview 1 command) or a signed
    /// bundle (checked before it runs; its manifest gives the default limits).
    pub bundle: PathBuf,
    /// File whose bytes go to the task's stdin (default: this process's stdin
    /// when it is not a terminal, else nothing).
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// An argument for the task (repeat for more).
    #[arg(long = "arg", value_name = "A", allow_hyphen_values = true)]
    pub args: Vec<String>,
    /// Fuel limit (about one unit per wasm instruction).
    #[arg(long, value_name = "N")]
    pub fuel: Option<u64>,
    /// Linear memory limit in MiB.
    #[arg(long, value_name = "N")]
    pub memory_mb: Option<u64>,
    /// Wall-clock deadline in seconds (fractions allowed).
    #[arg(long, value_name = "S")]
    pub timeout_s: Option<f64>,
    /// Seed of the task's random stream.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    /// Cache compiled modules in DIR/modules.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Print one JSON object instead of the task's output.
    #[arg(long)]
    pub json: bool,
}

/// Runs `chorus run`.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let file = std::fs::read(&args.bundle)
        .with_context(|| format!("cannot read {}", args.bundle.display()))?;
    let (module, mut limits) = if file.starts_with(b"\0asm") {
        (file, Limits::default())
    } else {
        let bundle = Bundle::decode(&file)
            .and_then(Bundle::verify)
            .with_context(|| {
                format!(
                    "{} is neither a wasm module nor a valid bundle",
                    args.bundle.display()
                )
            })?;
        tracing::info!(id = %bundle.id(), name = %bundle.manifest().name, "verified bundle");
        (bundle.module().to_vec(), bundle.manifest().limits)
    };
    if let Some(fuel) = args.fuel {
        limits.fuel = fuel;
    }
    if let Some(mb) = args.memory_mb {
        limits.memory_bytes = mb
            .checked_mul(1 << 20)
            .context("--memory-mb is too large")?;
    }
    if let Some(s) = args.timeout_s {
        if !(s.is_finite() && s > 0.0) {
            bail!("--timeout-s must be a positive number of seconds");
        }
        limits.wall_ms = (s * 1000.0).ceil() as u64;
    }
    let input = match &args.input {
        Some(path) => {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?
        }
        None if std::io::stdin().is_terminal() => Vec::new(),
        None => {
            let mut buf = Vec::new();
            std::io::stdin()
                .lock()
                .read_to_end(&mut buf)
                .context("cannot read stdin")?;
            buf
        }
    };

    let mut config = match &args.data_dir {
        Some(dir) => EngineConfig::with_data_dir(dir),
        None => EngineConfig::default(),
    };
    config.slots = 1;
    let engine = Engine::new(config)?;
    let spec = TaskSpec {
        input,
        args: args.args,
        seed: args.seed,
        limits,
    };
    let report = engine.run_module_blocking(&module, spec)?;

    std::io::stderr().write_all(&report.stderr).ok();
    let ok = report.outcome.is_ok();
    if args.json {
        let json = serde_json::json!({
            "status": if ok { "ok" } else { "error" },
            "error": if ok { None } else { Some(report.outcome.to_string()) },
            "verdict": report.outcome.is_verdict(),
            "outcome_digest": report.digest().map(|d| d.to_string()),
            "output_sha256": hex::encode(ring::digest::digest(&ring::digest::SHA256, &report.stdout)),
            "fuel_used": report.fuel_used,
            "wall_ms": report.wall.as_secs_f64() * 1000.0,
            "stdout_bytes": report.stdout.len(),
            "stderr_bytes": report.stderr.len(),
        });
        println!("{json}");
    } else {
        let mut out = std::io::stdout().lock();
        out.write_all(&report.stdout)
            .context("cannot write the output")?;
        out.flush().context("cannot write the output")?;
        if !ok {
            eprintln!(
                "error: task failed: {} (fuel used {})",
                report.outcome, report.fuel_used
            );
        }
    }
    Ok(match report.outcome {
        Outcome::Ok => ExitCode::SUCCESS,
        Outcome::Exit(code) => {
            ExitCode::from(u8::try_from(code).ok().filter(|c| *c != 0).unwrap_or(1))
        }
        _ => ExitCode::FAILURE,
    })
}
