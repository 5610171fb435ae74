//! `chorus submit`: sign a module into a bundle, submit it with one task per
//! input file, wait for the verified results and write them next to each other.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use chorus_sdk::blob::BlobId;
use chorus_sdk::bundle::{Bundle, Manifest, VerifiedBundle};
use chorus_sdk::client::{Client, JobBuilder};
use chorus_sdk::identity::Identity;

use super::limits::LimitArgs;
use super::results::{
    JobRecord, finish, key_dir, progress_bar, read_inputs, save_record, wait_with_bar,
};

/// Arguments of `chorus submit`.
#[derive(Debug, clap::Args)]
pub struct SubmitArgs {
    /// A node to submit through (HOST:PORT); any node of the ring will do.
    #[arg(long, value_parser = super::addr::parse)]
    pub node: SocketAddr,
    /// The task: a WebAssembly module (WASI preview 1 command), signed here
    /// into a bundle with your key, or a bundle signed already.
    #[arg(required_unless_present = "python", conflicts_with = "python")]
    pub bundle: Option<PathBuf>,
    /// A Python script to run once per input (the input on its stdin) on the
    /// Python runtime (`chorus runtime import python DIR`): the job carries
    /// only the script; nodes that accept the runtime run it.
    #[arg(long, value_name = "SCRIPT.py")]
    pub python: Option<PathBuf>,
    /// The runtime for --python, by id (default: the one last imported
    /// with `chorus runtime import python`).
    #[arg(long, value_name = "ID", requires = "python")]
    pub runtime: Option<chorus_sdk::runtime::RuntimeId>,
    /// Mount HOST_DIR at GUEST_PATH in every task (repeatable; wasmtime's
    /// syntax): a copy-on-write view of its content. The files are signed
    /// into the bundle by hash and uploaded in chunks.
    #[arg(long = "dir", value_name = "HOST_DIR::GUEST_PATH", value_parser = super::files::parse_dir)]
    pub dirs: Vec<super::files::DirArg>,
    /// An environment variable for every task (repeatable); signed into the bundle.
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = super::files::parse_env)]
    pub env: Vec<(String, String)>,
    /// Directory of inputs: every regular file, sorted by name, is one task's stdin.
    #[arg(long, value_name = "DIR")]
    pub inputs: PathBuf,
    /// How results are accepted: adaptive (replicas added until the
    /// result's credibility, from the coordinator's trust in its workers,
    /// meets --max-error; one result from a trusted worker may do) or full
    /// (--replicas on distinct nodes, --quorum equal results). Default:
    /// adaptive, or full when --replicas or --quorum is given.
    #[arg(long, value_name = "MODE")]
    pub verify: Option<chorus_core::jobs::Verify>,
    /// Adaptive: the largest acceptable chance that an accepted result is
    /// wrong, by the credibility rule (see SECURITY.md).
    #[arg(long, value_name = "E", default_value_t = chorus_core::jobs::DEFAULT_MAX_ERROR)]
    pub max_error: f64,
    /// Full: replicas per task, each on a distinct node (default 2).
    #[arg(long, value_name = "N")]
    pub replicas: Option<u32>,
    /// Full: matching replicas needed to accept a result (default: a majority).
    #[arg(long, value_name = "Q")]
    pub quorum: Option<u32>,
    /// Most replicas per task, counting extra ones sent on disagreement
    /// (default: twice the replicas; adaptive: 8).
    #[arg(long, value_name = "M")]
    pub max_replicas: Option<u32>,
    /// An argument every task gets (repeatable, in order: argv[1], argv[2],
    /// ...). Signed into the bundle, so part of what workers attest.
    #[arg(long = "arg", value_name = "A", allow_hyphen_values = true)]
    pub args: Vec<String>,
    /// The seed of the tasks' random_get: task i gets SEED + i (task 0 sees
    /// what `chorus run --seed SEED` sees). Default: derived from the job id.
    /// Signed into the bundle.
    #[arg(long, value_name = "SEED")]
    pub seed: Option<u64>,
    /// Limit overrides (fuel, memory, wall clock, input size) for every task.
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Directory for the outputs: OUT/<input name> with OUT/<input name>.proof,
    /// or OUT/<input name>.error. Default: chorus-out/<job id>.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Your key (created on first use) and the task names of your jobs.
    /// Default: ~/.chorus-client.
    #[arg(long, value_name = "DIR")]
    pub key_dir: Option<PathBuf>,
    /// Print JSON: the summary at the end, or `{"job": ...}` with --detach.
    #[arg(long)]
    pub json: bool,
    /// Return once the job is acknowledged, printing its id (alone on
    /// stdout, or `{"job": ...}` with --json); fetch the outputs later with
    /// `chorus results`.
    #[arg(long)]
    pub detach: bool,
}

/// Runs `chorus submit`. Exits 0 when every task produced an accepted
/// output, 2 when any ended in an agreed error or has no accepted result,
/// 130 when interrupted (the job runs on; its id and the command that
/// fetches it are printed), 1 on any other error.
pub fn run(args: SubmitArgs) -> anyhow::Result<ExitCode> {
    let start = Instant::now();
    let key_dir = key_dir(args.key_dir.clone());
    let identity = Identity::load_or_create(&key_dir)
        .with_context(|| format!("loading your key from {}", key_dir.display()))?;
    let (bundle, uploads) = load_bundle(&args, &identity, &key_dir)?;
    let limits = args.limits.apply(bundle.manifest().limits)?;
    let source = args
        .bundle
        .clone()
        .or_else(|| args.python.clone())
        .unwrap_or_default();
    if bundle.manifest().runtime.is_none() {
        check_module(&bundle, &limits, &source)?;
    }
    let inputs = read_inputs(&args.inputs)?;
    if inputs.is_empty() {
        bail!(
            "{} holds no input files: a job needs at least one task",
            args.inputs.display()
        );
    }
    let names: Vec<String> = inputs.iter().map(|(n, _)| n.clone()).collect();
    let mut job = JobBuilder::new(&bundle)
        .inputs(inputs.into_iter().map(|(_, bytes)| bytes))
        .max_error(args.max_error)
        .limits(limits);
    if let Some(v) = args.verify {
        job = job.verify(v);
    }
    match (args.verify, args.replicas) {
        (_, Some(r)) => job = job.replicas(r),
        (Some(chorus_core::jobs::Verify::Full), None) => job = job.replicas(2),
        _ => {}
    }
    if let Some(q) = args.quorum {
        job = job.quorum(q);
    }
    if let Some(m) = args.max_replicas {
        job = job.max_replicas(m);
    }
    let spec = job.build(&identity).context("building the job")?;

    let job = spec.id();
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("chorus-out").join(job.to_string()));
    let fetch = format!(
        "chorus results --node {} {job} --out {}",
        args.node,
        out.display()
    );
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let waited = rt.block_on(async {
        let client = Client::connect(args.node)
            .await
            .with_context(|| format!("connecting to {}", args.node))?;
        if !uploads.is_empty() {
            super::files::upload(args.node, &uploads)
                .await
                .context("uploading the job's files")?;
        }
        // One listener for the whole wait, registered before the job is
        // sent: a Ctrl-C between the two waits below (just after the id is
        // printed) is not lost, as it was with a listener made per wait.
        let interrupt = tokio::signal::ctrl_c();
        tokio::pin!(interrupt);
        // `biased`, the listener first: polled (so registered) at once.
        let submitted = tokio::select! {
            biased;
            _ = &mut interrupt => return Ok(Waited::InterruptedUnacknowledged),
            r = client.submit(&spec) => r.context("submitting the job")?,
        };
        let record = JobRecord {
            job: submitted.to_string(),
            names: names.clone(),
            node: args.node.to_string(),
            module: source.display().to_string(),
            out: out.display().to_string(),
            submitted: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        if let Err(e) = save_record(&key_dir, &record) {
            eprintln!(
                "warning: cannot record job {job} in {}: {e:#}",
                key_dir.display()
            );
        }
        if args.detach {
            client.close();
            return Ok(Waited::Detached);
        }
        // The id, as soon as it exists: whatever happens next, the job can
        // be found again.
        eprintln!("job {job} submitted; Ctrl-C leaves it running (`{fetch}` fetches it later)");
        let bar = progress_bar();
        bar.set_prefix(format!("job {job}"));
        let waited = tokio::select! {
            biased;
            _ = &mut interrupt => Ok(Waited::Interrupted),
            r = wait_with_bar(&client, job, &bar) => r.map(|r| Waited::Done(Box::new(r))),
        };
        bar.finish_and_clear();
        client.close();
        waited
    })?;
    match waited {
        Waited::Done(results) => finish(&results, &names, &out, start.elapsed(), args.json),
        Waited::Detached => {
            if args.json {
                println!("{}", serde_json::json!({ "job": job.to_string() }));
            } else {
                // The id alone on stdout, for `JOB=$(chorus submit … --detach)`.
                println!("{job}");
                eprintln!("job {job} submitted: `{fetch}` fetches its outputs");
            }
            Ok(ExitCode::SUCCESS)
        }
        Waited::Interrupted => {
            eprintln!("interrupted: job {job} runs on; fetch its outputs with\n  {fetch}");
            Ok(ExitCode::from(130))
        }
        Waited::InterruptedUnacknowledged => {
            eprintln!(
                "interrupted before job {job} was acknowledged: it may or may not exist; if it does,\n  {fetch}\nfetches it"
            );
            Ok(ExitCode::from(130))
        }
    }
}

/// How waiting for a job ended.
enum Waited {
    /// Every task decided.
    Done(Box<chorus_sdk::client::JobResults>),
    /// `--detach`: acknowledged, not waited for.
    Detached,
    /// SIGINT after the job was acknowledged.
    Interrupted,
    /// SIGINT before any node acknowledged the job.
    InterruptedUnacknowledged,
}

/// Refuses at once what no node would run, with the node's own check
/// (`Engine::module`): the module parses and validates, imports only what
/// the sandbox provides, exports a WASI `_start`, and fits the job's module
/// size. Nothing is sent before it passes.
fn check_module(
    bundle: &VerifiedBundle,
    limits: &chorus_sdk::bundle::Limits,
    path: &std::path::Path,
) -> anyhow::Result<()> {
    let config = crate::sandbox::EngineConfig {
        slots: 1,
        // Only the module is checked here: whether some node donates these
        // limits is the grid's answer.
        ceiling: *limits,
        ..crate::sandbox::EngineConfig::default()
    };
    let engine =
        crate::sandbox::Engine::new(config).context("starting the sandbox to check the module")?;
    if !bundle.module().starts_with(b"\0asm") {
        anyhow::bail!(
            "{} cannot run on the grid: not a WebAssembly module (it does not start with \\0asm)",
            path.display()
        );
    }
    engine.module(bundle.module(), limits).map_err(|e| {
        // One line: the parser's own message may span several.
        let why = e
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        anyhow::anyhow!("{} cannot run on the grid: {why}", path.display())
    })?;
    Ok(())
}

/// The bundle: a signed bundle file as it is (checked), a raw module signed
/// with `identity` and named after its file, or a script on a runtime; with
/// the blobs (by id, from local files) the grid must be given for it.
fn load_bundle(
    args: &SubmitArgs,
    identity: &Identity,
    key_dir: &std::path::Path,
) -> anyhow::Result<(VerifiedBundle, Vec<(BlobId, PathBuf)>)> {
    let mut uploads = Vec::new();
    let mut mounts = Vec::new();
    for d in &args.dirs {
        let (mount, blobs) = super::files::HostTree::read(d)?.to_mount()?;
        mounts.push(mount);
        uploads.extend(blobs);
    }
    mounts.sort_by(|a, b| a.guest.cmp(&b.guest));
    let env = chorus_sdk::files::canonical_env(args.env.iter().cloned());
    let (path, runtime) = match (&args.bundle, &args.python) {
        (Some(p), _) => (p, None),
        (None, Some(script)) => {
            let store = super::runtime::LocalBlobs::new(key_dir);
            let (id, rt) = match &args.runtime {
                Some(id) => (*id, store.runtime(id)?),
                None => store.runtime_named("python")?,
            };
            // The runtime, its interpreter and its files, for the grid.
            let mut need = vec![BlobId(id.0), rt.manifest.module.blob];
            for m in &rt.manifest.mounts {
                for e in &m.entries {
                    if let chorus_sdk::files::EntryKind::File(f) = &e.kind {
                        need.push(f.blob);
                    }
                }
            }
            for b in need {
                let p = store.path(&b).with_context(|| {
                    format!("blob {b} of runtime {id} is not in {}", key_dir.display())
                })?;
                uploads.push((b, p));
            }
            (script, Some((id, rt)))
        }
        (None, None) => bail!("give a module, a bundle or --python SCRIPT.py"),
    };
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if runtime.is_none()
        && !bytes.starts_with(b"\0asm")
        && let Ok(bundle) = Bundle::decode(&bytes)
    {
        if !args.args.is_empty() || args.seed.is_some() || !mounts.is_empty() || !env.is_empty() {
            bail!(
                "{} is a signed bundle: its arguments, seed, mounts and environment are signed in it; give --arg, --seed, --dir and --env with the module instead",
                path.display()
            );
        }
        let bundle = bundle
            .verify()
            .with_context(|| format!("{} is a bundle that does not verify", path.display()))?;
        if !bundle.manifest().mounts.is_empty() || bundle.manifest().runtime.is_some() {
            bail!(
                "{} names files or a runtime by hash that this client cannot upload: submit the module or script with --dir or --python instead",
                path.display()
            );
        }
        return Ok((bundle, uploads));
    }
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty())
        .unwrap_or("task");
    let name: String = stem.chars().take(64).collect();
    let mut manifest = Manifest::new(name, "1", identity.public_key());
    manifest.args = args.args.clone();
    manifest.seed = args.seed;
    manifest.env = env;
    manifest.mounts = mounts;
    if let Some((id, rt)) = runtime {
        manifest.runtime = Some(id);
        manifest.limits = rt.manifest.limits;
        if manifest.mounts.iter().any(|m| {
            rt.manifest.mounts.iter().any(|r| r.guest == m.guest)
                || m.guest == rt.manifest.program_mount().0
        }) {
            bail!(
                "--dir may not mount where the runtime does ({})",
                rt.manifest
                    .mounts
                    .iter()
                    .map(|m| m.guest.as_str())
                    .chain([rt.manifest.program_mount().0])
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    let bundle = Bundle::sign(manifest, bytes, identity).context("signing the bundle")?;
    Ok((bundle, uploads))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use chorus_sdk::bundle::Limits;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(extra: &[&str]) -> SubmitArgs {
        let mut argv = vec![
            "chorus",
            "submit",
            "--node",
            "127.0.0.1:7001",
            "task.wasm",
            "--inputs",
            "in",
        ];
        argv.extend_from_slice(extra);
        match Cli::parse_from(argv).command {
            Command::Submit(a) => a,
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn a_module_no_node_would_run_is_refused_before_anything_is_sent() {
        let dir = std::env::temp_dir().join(format!("chorus-submit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("in")).unwrap();
        std::fs::write(dir.join("in/a"), b"x").unwrap();
        let no_start = wat::parse_str("(module (memory (export \"memory\") 1))").unwrap();
        let bad_import =
            wat::parse_str("(module (import \"env\" \"f\" (func)) (func (export \"_start\")))")
                .unwrap();
        let cases: [(&str, &[u8], &str); 4] = [
            ("README.md", b"# Not a module\n", "cannot run on the grid"),
            (
                "random.wasm",
                &[0x00, 0x61, 0x73, 0x6d, 9, 9, 9, 9],
                "cannot run on the grid",
            ),
            ("nostart.wasm", &no_start, "_start"),
            ("import.wasm", &bad_import, "cannot run on the grid"),
        ];
        for (name, bytes, says) in cases {
            std::fs::write(dir.join(name), bytes).unwrap();
            // Port 9 on loopback: nothing listens, and nothing is dialled.
            let mut args = parse(&["--key-dir", dir.join("key").to_str().unwrap()]);
            args.node = "127.0.0.1:9".parse().unwrap();
            args.bundle = Some(dir.join(name));
            args.inputs = dir.join("in");
            let t = Instant::now();
            let e = run(args).expect_err(name);
            let msg = format!("{e:#}");
            assert!(msg.contains(says), "{name}: {msg}");
            assert!(!msg.contains("connecting"), "{name}: {msg}");
            assert!(t.elapsed() < std::time::Duration::from_secs(30), "{name}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn limits_come_from_the_manifest_unless_overridden() {
        let base = Limits::default();
        assert_eq!(parse(&[]).limits.apply(base).unwrap(), base);
        let l = parse(&["--fuel", "1000", "--memory-mb", "64", "--timeout-s", "1.5"])
            .limits
            .apply(base)
            .unwrap();
        assert_eq!((l.fuel, l.memory_bytes, l.wall_ms), (1000, 64 << 20, 1500));
        assert!(parse(&["--timeout-s", "0"]).limits.apply(base).is_err());
        let a = parse(&["--replicas", "3", "--quorum", "2", "--detach", "--json"]);
        assert_eq!(
            (a.replicas, a.quorum, a.detach, a.json),
            (Some(3), Some(2), true, true)
        );
        let a = parse(&[]);
        assert_eq!((a.verify, a.replicas, a.max_error), (None, None, 1e-4));
        let a = parse(&["--verify", "full"]);
        assert_eq!(a.verify, Some(chorus_core::jobs::Verify::Full));
        let a = parse(&["--verify", "adaptive", "--max-error", "1e-6"]);
        assert_eq!(a.max_error, 1e-6);
    }
}
