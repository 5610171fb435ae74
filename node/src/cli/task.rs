//! `chorus task new|build|test`: a task author's path from an empty directory
//! to a module the grid runs. The work is done by [`crate::author`]; this file
//! maps it onto the command line.
//!
//! - `task new DIR [--lang rust|c] [--sdk PATH]` writes a project.
//! - `task build DIR [--json]` prints the module's path (or
//!   `{"module", "sha256", "bytes"}`); the compiler talks on stderr.
//! - `task test DIR [--input FILE] [--json]` runs the module, built first
//!   when it is missing or stale, in the local sandbox exactly as
//!   `chorus run` does, and prints its output (MessagePack as JSON).
//!
//! Environment of `build` and `test`: `CHORUS_WASM_TOOLCHAIN=rustup|debian`
//! forces the Rust route; `CHORUS_WASM_PREFIX` (default `/usr`) is where
//! Debian's rustc-web, cargo-web, rust-web-src and wasi-libc are looked for.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, anyhow};

use super::limits::LimitArgs;
use super::run::{RunArgs, execute, report_json};
use crate::author::Lang;
use crate::author::build::{BuildEnv, Built, build, ensure_built};
use crate::author::new::{NewOptions, create};
use crate::author::output::Output;

/// Arguments of `chorus task`.
#[derive(Debug, clap::Args)]
pub struct TaskArgs {
    /// What to do with a task project.
    #[command(subcommand)]
    pub command: TaskCommand,
}

/// The subcommands of `chorus task`.
#[derive(Debug, clap::Subcommand)]
pub enum TaskCommand {
    /// Write a ready task project into DIR: source, build file, sample input, README.
    New(NewArgs),
    /// Build DIR's task to a reproducible wasm32-wasip1 module and print its path.
    Build(BuildArgs),
    /// Run DIR's module (built first if missing or stale) on its sample input
    /// in the local sandbox, as `chorus run` does, and print the output.
    Test(TestArgs),
}

/// Arguments of `chorus task new`.
#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The project's directory: new, or empty.
    pub dir: PathBuf,
    /// The template's language.
    #[arg(long, value_enum, default_value_t = Lang::Rust)]
    pub lang: Lang,
    /// The guest SDK (`task-sdk/` of a Chorus clone) the Rust project depends
    /// on. Default: the one of the clone this binary was built from.
    #[arg(long, value_name = "PATH")]
    pub sdk: Option<PathBuf>,
}

/// Arguments of `chorus task build`.
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// The project's directory.
    pub dir: PathBuf,
    /// Print `{"module", "sha256", "bytes"}` instead of the path.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `chorus task test`.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// The project's directory.
    pub dir: PathBuf,
    /// The task's stdin (default: DIR/sample-input).
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// An argument for the task (repeat for more).
    #[arg(long = "arg", value_name = "A", allow_hyphen_values = true)]
    pub args: Vec<String>,
    /// Limit overrides (fuel, memory, wall clock).
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Print one JSON object: `chorus run --json`'s fields plus `module`,
    /// `output` and `output_format` (`msgpack`, `text` or `bytes` in hex).
    #[arg(long)]
    pub json: bool,
}

/// Runs `chorus task` with this process's environment and stdout.
pub fn run(args: TaskArgs) -> anyhow::Result<ExitCode> {
    let env = match args.command {
        TaskCommand::New(_) => None,
        _ => Some(BuildEnv::from_process()?),
    };
    run_with(args, env.as_ref(), &mut std::io::stdout().lock())
}

/// Runs `chorus task` with a given build environment (needed by `build` and
/// `test`), writing what it prints to `out`.
pub fn run_with(
    args: TaskArgs,
    env: Option<&BuildEnv>,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let need_env = || env.context("no build environment");
    match args.command {
        TaskCommand::New(a) => new(a, out),
        TaskCommand::Build(a) => build_cmd(a, need_env()?, out),
        TaskCommand::Test(a) => test(a, need_env()?, out),
    }
}

/// `task new`.
fn new(args: NewArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let created = create(
        &args.dir,
        &NewOptions {
            lang: args.lang,
            sdk: args.sdk,
        },
    )?;
    let shown = args.dir.display();
    writeln!(
        out,
        "wrote the {} task {} to {shown}: next, `chorus task test {shown}` (see {shown}/README.md)",
        args.lang, created.name
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `task build`.
fn build_cmd(args: BuildArgs, env: &BuildEnv, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let built = build(&args.dir, env)?;
    print_built(&built, args.json, out)?;
    Ok(ExitCode::SUCCESS)
}

/// `task test`.
fn test(args: TestArgs, env: &BuildEnv, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let input = args.input.unwrap_or_else(|| args.dir.join("sample-input"));
    if !input.is_file() {
        return Err(anyhow!(
            "no input file {}: pass --input FILE",
            input.display()
        ));
    }
    let (built, rebuilt) = ensure_built(&args.dir, env)?;
    if rebuilt {
        eprintln!(
            "built {} (it was missing or older than its sources)",
            built.module.display()
        );
    }
    let report = execute(RunArgs {
        bundle: built.module.clone(),
        input: Some(input),
        args: args.args,
        dirs: Vec::new(),
        env: Vec::new(),
        limits: args.limits,
        seed: None,
        data_dir: None,
        json: args.json,
        python: false,
        runtime: None,
        key_dir: None,
    })?;
    let output = Output::of(&report.stdout);
    if args.json {
        let mut json = report_json(&report);
        json["module"] = serde_json::json!(built.module);
        json["output_format"] = output.format().into();
        json["output"] = output.to_json();
        writeln!(out, "{json}")?;
        return Ok(if report.outcome.is_ok() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    if !report.outcome.is_ok() {
        let said = String::from_utf8_lossy(&report.stderr);
        let last = said.lines().rev().find(|l| !l.trim().is_empty()).map(|l| {
            let l = l.trim();
            format!(": {}", l.strip_prefix("error: ").unwrap_or(l))
        });
        return Err(anyhow!(
            "the task failed: {} (fuel used {}){}",
            report.outcome,
            report.fuel_used,
            last.unwrap_or_default()
        ));
    }
    std::io::stderr().write_all(&report.stderr).ok();
    match output {
        Output::Text(t) => out.write_all(t.as_bytes()),
        Output::MessagePack(v) => writeln!(out, "{v}"),
        Output::Bytes(b) => out.write_all(&b),
    }
    .and_then(|()| out.flush())
    .context("cannot write the output")?;
    Ok(ExitCode::SUCCESS)
}

/// The module's path, or its JSON description.
fn print_built(built: &Built, json: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    if json {
        let v = serde_json::json!({
            "module": built.module,
            "sha256": built.sha256,
            "bytes": built.bytes,
        });
        writeln!(out, "{v}")?;
    } else {
        writeln!(out, "{}", built.module.display())?;
    }
    Ok(())
}
