//! `chorus run`: one task in the local sandbox, exactly as a node runs it.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use chorus_sdk::bundle::Bundle;

use super::limits::LimitArgs;
use crate::sandbox::layout::{Layout, MountedTree, RuntimeFiles, file_blobs, mount_tree};
use crate::sandbox::{Engine, EngineConfig, Limits, Outcome, TaskReport, TaskSpec};

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
    /// Mount HOST_DIR at GUEST_PATH (repeatable; wasmtime's syntax): the
    /// task sees a copy-on-write view of its content, read once; nothing is
    /// ever written back to HOST_DIR.
    #[arg(long = "dir", value_name = "HOST_DIR::GUEST_PATH", value_parser = super::files::parse_dir)]
    pub dirs: Vec<super::files::DirArg>,
    /// An environment variable for the task (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = super::files::parse_env)]
    pub env: Vec<(String, String)>,
    /// Limit overrides (fuel, memory, wall clock).
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Seed of the task's random stream (default: a signed bundle's seed,
    /// as its task 0 sees it on the grid, else 0).
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// Cache compiled modules in DIR/modules.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Print one JSON object instead of the task's output.
    #[arg(long)]
    pub json: bool,
    /// BUNDLE is a Python script: run it on the Python runtime imported
    /// with `chorus runtime import python DIR`, as a node runs it.
    #[arg(long)]
    pub python: bool,
    /// With --python: the runtime by id (default: the last imported).
    #[arg(long, value_name = "ID", requires = "python")]
    pub runtime: Option<chorus_sdk::runtime::RuntimeId>,
    /// With --python: where the runtime was imported (default ~/.chorus-client).
    #[arg(long, value_name = "DIR", requires = "python")]
    pub key_dir: Option<PathBuf>,
}

/// Runs `chorus run`.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let json = args.json;
    let report = execute(args)?;
    std::io::stderr().write_all(&report.stderr).ok();
    if json {
        println!("{}", report_json(&report));
    } else {
        let mut out = std::io::stdout().lock();
        out.write_all(&report.stdout)
            .context("cannot write the output")?;
        out.flush().context("cannot write the output")?;
        if !report.outcome.is_ok() {
            eprintln!(
                "error: task failed: {} (fuel used {})",
                report.outcome, report.fuel_used
            );
        }
    }
    Ok(ExitCode::from(exit_code(&report.outcome)))
}

/// Loads the module (verifying it first if it is a bundle), applies the
/// limit overrides and runs the task (`chorus task test` runs its module
/// through this too).
pub(crate) fn execute(args: RunArgs) -> anyhow::Result<TaskReport> {
    let file = std::fs::read(&args.bundle)
        .with_context(|| format!("cannot read {}", args.bundle.display()))?;
    let mut task_args = args.args;
    let mut seed = args.seed;
    let mut env = chorus_sdk::files::canonical_env(args.env);
    // With --python: the runtime's manifest and its mounts' trees, and the
    // script (the file given), which the layout places as its program.
    let mut runtime: Option<(
        chorus_sdk::runtime::RuntimeManifest,
        Vec<MountedTree>,
        Arc<[u8]>,
    )> = None;
    let (module, mut limits) = if args.python {
        let store = super::runtime::LocalBlobs::new(&super::results::key_dir(args.key_dir.clone()));
        let (id, rt) = match &args.runtime {
            Some(id) => (*id, store.runtime(id)?),
            None => store.runtime_named("python")?,
        };
        tracing::info!(runtime = %id, version = %rt.manifest.version, "runtime");
        let read = |b: &chorus_sdk::blob::BlobId| -> anyhow::Result<Vec<u8>> {
            let p = store
                .path(b)
                .with_context(|| format!("blob {b} of runtime {id} is missing"))?;
            std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))
        };
        let m = rt.manifest;
        let mut blobs = std::collections::HashMap::new();
        for b in file_blobs(&m.mounts) {
            blobs.insert(b, Arc::from(read(&b)?));
        }
        let mut trees = Vec::with_capacity(m.mounts.len());
        for mount in &m.mounts {
            let tree = mount_tree(mount, &blobs)
                .with_context(|| format!("runtime {id}: the files of {}", mount.guest))?;
            trees.push((mount.guest.clone(), Arc::new(tree)));
        }
        let module = read(&m.module.blob)?;
        let limits = m.limits;
        runtime = Some((m, trees, file.into()));
        (module, limits)
    } else if file.starts_with(b"\0asm") {
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
        // As a worker runs it: the bundle's signed arguments and seed,
        // unless given here.
        if task_args.is_empty() {
            task_args = bundle.manifest().args.clone();
        }
        seed = seed.or(bundle.manifest().seed);
        if env.is_empty() {
            env = bundle.manifest().env.clone();
        }
        if !bundle.manifest().mounts.is_empty() || bundle.manifest().runtime.is_some() {
            anyhow::bail!(
                "{} names mounts or a runtime by hash: run it on the grid with `chorus submit`, \
                 or give its files here with --dir",
                args.bundle.display()
            );
        }
        (bundle.module().to_vec(), bundle.manifest().limits)
    };
    limits = args.limits.apply(limits)?;
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

    let mut mounts = Vec::with_capacity(args.dirs.len());
    for d in &args.dirs {
        let tree = super::files::HostTree::read(d)?.load()?;
        mounts.push((d.guest.clone(), Arc::new(tree)));
    }
    let files = runtime
        .as_ref()
        .map(|(manifest, mounts, program)| (RuntimeFiles { manifest, mounts }, program.clone()));
    let layout = Layout::new(files, mounts, &env, &task_args)?;
    let runtime = runtime.is_some();
    let mut config = match &args.data_dir {
        Some(dir) => EngineConfig::with_data_dir(dir),
        None => EngineConfig::default(),
    };
    config.slots = 1;
    let engine = Engine::new(config)?;
    let spec = TaskSpec {
        input,
        args: layout.args,
        seed: seed.unwrap_or(0),
        limits,
        env: layout.env,
        mounts: layout.mounts,
        argv0: layout.argv0,
    };
    Ok(crate::sandbox::on_task_thread(move || {
        if !runtime {
            return engine.run_module_blocking(&module, spec);
        }
        let started = std::time::Instant::now();
        let compiled = engine.runtime_module(&module, &spec.limits);
        tracing::info!(elapsed = ?started.elapsed(), "runtime module ready");
        match compiled {
            Ok(m) => engine.run_blocking(&m, spec),
            Err(e) => e
                .into_outcome()
                .map(crate::sandbox::TaskReport::without_run),
        }
    })??)
}

/// The `--json` form of a report.
pub(crate) fn report_json(report: &TaskReport) -> serde_json::Value {
    let ok = report.outcome.is_ok();
    serde_json::json!({
        "status": if ok { "ok" } else { "error" },
        "error": if ok { None } else { Some(report.outcome.to_string()) },
        "verdict": report.outcome.is_verdict(),
        "outcome_digest": report.digest().map(|d| d.to_string()),
        "output_sha256": hex::encode(ring::digest::digest(&ring::digest::SHA256, &report.stdout)),
        "fuel_used": report.fuel_used,
        "wall_ms": report.wall.as_secs_f64() * 1000.0,
        "stdout_bytes": report.stdout.len(),
        "stderr_bytes": report.stderr.len(),
    })
}

/// The process exit code for an outcome: 0 on success, the task's own code
/// for `Exit` (1 when it does not fit in 1..=255), 1 for every other failure.
fn exit_code(outcome: &Outcome) -> u8 {
    match outcome {
        Outcome::Ok => 0,
        Outcome::Exit(code) => u8::try_from(*code).ok().filter(|c| *c != 0).unwrap_or(1),
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use chorus_sdk::bundle::Manifest;
    use chorus_sdk::identity::Identity;

    use super::*;

    const COLLATZ: &[u8] = include_bytes!("../../../examples/wasm/collatz.wasm");

    fn args(path: &std::path::Path) -> RunArgs {
        RunArgs {
            bundle: path.to_path_buf(),
            input: Some(PathBuf::from("/dev/null")),
            args: vec!["1".into(), "1000".into()],
            dirs: Vec::new(),
            env: Vec::new(),
            limits: LimitArgs::default(),
            seed: None,
            data_dir: None,
            json: true,
            python: false,
            runtime: None,
            key_dir: None,
        }
    }

    fn temp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("chorus-run-{}-{name}", std::process::id()))
    }

    #[test]
    fn runs_a_module_and_reports_json() {
        let path = temp("collatz.wasm");
        std::fs::write(&path, COLLATZ).unwrap();
        let report = execute(args(&path)).unwrap();
        assert_eq!(report.outcome, Outcome::Ok);
        assert_eq!(report.stdout, b"1 1000 871 178\n");
        let json = report_json(&report);
        assert_eq!(json["status"], "ok");
        assert_eq!(json["stdout_bytes"], 15);
        assert!(json["fuel_used"].as_u64().unwrap() > 0);
        assert!(json["error"].is_null());

        let mut starved = args(&path);
        starved.limits.fuel = Some(1000);
        let report = execute(starved).unwrap();
        assert_eq!(report.outcome, Outcome::FuelExhausted);
        assert_eq!(exit_code(&report.outcome), 1);
        let json = report_json(&report);
        assert_eq!(json["status"], "error");
        assert!(json["error"].as_str().unwrap().starts_with("FuelExhausted"));

        let mut bad = args(&path);
        bad.args = vec!["x".into()];
        assert_eq!(exit_code(&execute(bad).unwrap().outcome), 2);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn runs_a_signed_bundle_and_refuses_a_tampered_one() {
        let who = Identity::generate().unwrap();
        let bundle = Bundle::sign(
            Manifest::new("collatz", "1", [0; 32]),
            COLLATZ.to_vec(),
            &who,
        )
        .unwrap();
        let mut bytes = bundle.encode().unwrap();
        let path = temp("collatz.bundle");
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(execute(args(&path)).unwrap().outcome, Outcome::Ok);

        let n = bytes.len();
        bytes[n / 2] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let err = execute(args(&path)).unwrap_err();
        assert!(format!("{err:#}").contains("neither a wasm module nor a valid bundle"));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn exit_codes() {
        assert_eq!(exit_code(&Outcome::Ok), 0);
        assert_eq!(exit_code(&Outcome::Exit(3)), 3);
        assert_eq!(exit_code(&Outcome::Exit(300)), 1);
        assert_eq!(exit_code(&Outcome::Exit(-1)), 1);
        assert_eq!(exit_code(&Outcome::Timeout), 1);
    }
}
