//! `chorus results`: wait for a job through any node and write its outputs,
//! plus what `submit` shares with it: task names, output files, the progress
//! bar and the summary.

use std::fs;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chorus_sdk::client::{Client, JobResults};
use chorus_sdk::job::{JobId, JobStatus, TaskResult};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

/// Arguments of `chorus results`.
#[derive(Debug, clap::Args)]
pub struct ResultsArgs {
    /// A node to ask (HOST:PORT); any node of the ring will do.
    #[arg(long, value_parser = super::addr::parse)]
    pub node: SocketAddr,
    /// The job, 16 hex digits (as `chorus submit --detach` printed it).
    pub job: JobId,
    /// Directory to write the outputs to (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Name the outputs after the files of this input directory (as `submit`
    /// does). Default: the names `submit` recorded in the key directory, else
    /// the task indices.
    #[arg(long, value_name = "DIR")]
    pub inputs: Option<PathBuf>,
    /// Where `submit` keeps the key and the task names of its jobs.
    #[arg(long, value_name = "DIR")]
    pub key_dir: Option<PathBuf>,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Runs `chorus results`.
pub fn run(args: ResultsArgs) -> anyhow::Result<ExitCode> {
    let start = Instant::now();
    let key_dir = key_dir(args.key_dir);
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let results = rt.block_on(async {
        let client = Client::connect(args.node)
            .await
            .with_context(|| format!("connecting to {}", args.node))?;
        let bar = progress_bar();
        bar.set_prefix(format!("job {}", args.job));
        let results = wait_with_bar(&client, args.job, &bar).await;
        bar.finish_and_clear();
        client.close();
        results
    })?;
    let names = match &args.inputs {
        Some(dir) => read_inputs(dir)?.into_iter().map(|(n, _)| n).collect(),
        None => load_names(&key_dir, args.job)
            .unwrap_or_else(|| index_names(results.status.tasks as usize)),
    };
    if names.len() != results.len() {
        bail!(
            "job {} has {} tasks but {} names were found for them",
            args.job,
            results.len(),
            names.len()
        );
    }
    finish(&results, &names, &args.out, start.elapsed(), args.json)
}

/// The summary printed at the end of `submit` and `results`, in this order.
#[derive(Debug, PartialEq, Serialize)]
pub struct Summary {
    /// The job, 16 hex digits.
    pub job: String,
    /// Tasks in the job.
    pub tasks: u32,
    /// Tasks with an accepted output.
    pub verified: u32,
    /// Tasks whose replicas agreed on a task error (a trap, a limit, a
    /// non-zero exit): verified too, but no output.
    pub errors: u32,
    /// Tasks with no accepted result.
    pub failed: u32,
    /// Replicas that returned a vote.
    pub replicas_run: u64,
    /// Results that disagreed with the accepted one.
    pub disagreements: u64,
    /// Executions per task: every vote, spot checks and re-runs included.
    pub replicas_per_task: f64,
    /// Spot checks answered (accepted tasks run again by workers the
    /// coordinator does not trust yet).
    pub spot_checks: u64,
    /// Results accepted on the credibility rule (adaptive verification),
    /// fewer than a quorum of signers among them.
    pub by_credibility: u32,
    /// Seconds from the start of the command, to the millisecond.
    pub seconds: f64,
    /// Results the client refused because their proof did not hold
    /// (fetched again from other nodes).
    pub refused: usize,
    /// The nodes that served refused results.
    pub refused_from: Vec<String>,
}

impl Summary {
    /// The summary of `results` after `elapsed`.
    pub fn of(results: &JobResults, elapsed: Duration) -> Summary {
        let s = &results.status;
        let count = |f: fn(&TaskResult) -> bool| {
            let n = results.iter().filter(|(_, r)| r.is_some_and(f)).count();
            u32::try_from(n).unwrap_or(u32::MAX)
        };
        let verified = count(|r| matches!(r, TaskResult::Output(_)));
        let errors = count(|r| matches!(r, TaskResult::Error { .. }));
        Summary {
            job: s.job.to_string(),
            tasks: s.tasks,
            verified,
            errors,
            failed: s.tasks.saturating_sub(verified).saturating_sub(errors),
            replicas_run: s.replicas_run,
            disagreements: s.disagreements,
            replicas_per_task: (s.replicas_per_task * 1000.0).round() / 1000.0,
            spot_checks: s.spot_checks,
            by_credibility: u32::try_from(
                (0..s.tasks)
                    .filter(|&t| {
                        matches!(
                            results.rule(t),
                            chorus_sdk::attest::AcceptRule::Credibility { .. }
                        )
                    })
                    .count(),
            )
            .unwrap_or(u32::MAX),
            seconds: (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
            refused: results.refused().len(),
            refused_from: refused_from(results),
        }
    }
}

/// The nodes that served refused results, each once, in order of first refusal.
fn refused_from(results: &JobResults) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in results.refused() {
        let node = r.node.to_string();
        if !out.contains(&node) {
            out.push(node);
        }
    }
    out
}

/// Writes the outputs, prints the summary, and says how to exit: 0 when every
/// task produced an accepted output, 2 when any ended in an agreed error or
/// has no accepted result.
pub fn finish(
    results: &JobResults,
    names: &[String],
    out: &Path,
    elapsed: Duration,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let written = write_outputs(out, names, results)?;
    let summary = Summary::of(results, elapsed);
    // Say who lied, once per node: the results it served were refused and
    // fetched from other nodes; none of its bytes were written.
    for node in &summary.refused_from {
        let refused: Vec<_> = results
            .refused()
            .iter()
            .filter(|r| r.node.to_string() == *node)
            .collect();
        eprintln!(
            "warning: node {node} served {} results whose proofs do not hold (first: task {}, {}); they were refused and fetched from other nodes",
            refused.len(),
            refused[0].task,
            refused[0].reason
        );
    }
    if json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!(
            "job {}: {} tasks, {} verified, {} errors, {} failed; {} replicas run ({:.2} per task, {} spot checks), {} disagreements; {:.3} s",
            summary.job,
            summary.tasks,
            summary.verified,
            summary.errors,
            summary.failed,
            summary.replicas_run,
            summary.replicas_per_task,
            summary.spot_checks,
            summary.disagreements,
            summary.seconds
        );
        if summary.by_credibility > 0 {
            println!(
                "{} results accepted by credibility (adaptive verification: the coordinator's trust in their signers bounds the chance each is wrong by the job's max_error)",
                summary.by_credibility
            );
        }
        println!(
            "{} outputs with {} proofs and {} error files in {}",
            written.outputs,
            written.proofs,
            written.errors,
            out.display()
        );
    }
    if summary.verified == summary.tasks {
        return Ok(ExitCode::SUCCESS);
    }
    if summary.errors > 0 {
        let first = first_error(results, names).unwrap_or_default();
        eprintln!(
            "error: {} of {} tasks ended in an error their replicas agreed on (first: {}); see the .error files in {}",
            summary.errors,
            summary.tasks,
            first,
            out.display()
        );
    }
    if summary.failed > 0 {
        eprintln!(
            "error: {} of {} tasks have no accepted result; see the .error files in {}",
            summary.failed,
            summary.tasks,
            out.display()
        );
    }
    Ok(ExitCode::from(2))
}

/// Files written by [`write_outputs`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// `OUT/<name>` files: accepted outputs.
    pub outputs: usize,
    /// `OUT/<name>.proof` files: the attestations of each output.
    pub proofs: usize,
    /// `OUT/<name>.error` files: agreed task errors and tasks without an accepted result.
    pub errors: usize,
}

/// Writes task `i`'s result under `names[i]` in `out`: an output to
/// `OUT/<name>` with its proof in `OUT/<name>.proof` (see
/// [`chorus_sdk::proof`]; `chorus verify OUT` checks them offline), an agreed
/// task error to `OUT/<name>.error` (the outcome, then anything the task
/// printed), and a task with no accepted result to `OUT/<name>.error` too (why).
pub fn write_outputs(
    out: &Path,
    names: &[String],
    results: &JobResults,
) -> anyhow::Result<Written> {
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut written = Written::default();
    for (task, result) in results.iter() {
        let name = names
            .get(task as usize)
            .with_context(|| format!("no name for task {task}"))?;
        let (path, bytes) = match result {
            Some(TaskResult::Output(bytes)) => {
                written.outputs += 1;
                if let Some(proof) = results.proof(task) {
                    let path = out.join(format!("{name}.proof"));
                    fs::write(&path, proof.to_json())
                        .with_context(|| format!("writing {}", path.display()))?;
                    written.proofs += 1;
                }
                (out.join(name), bytes.to_vec())
            }
            other => {
                written.errors += 1;
                (out.join(format!("{name}.error")), error_text(other))
            }
        };
        fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(written)
}

/// `name.error: outcome, stderr's first line` of the first agreed task error.
fn first_error(results: &JobResults, names: &[String]) -> Option<String> {
    results.iter().find_map(|(task, r)| match r {
        Some(TaskResult::Error {
            outcome, stderr, ..
        }) => {
            let name = names.get(task as usize).cloned().unwrap_or_default();
            let line = String::from_utf8_lossy(stderr);
            let line = line.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            Some(if line.is_empty() {
                format!("{name}: {outcome}")
            } else {
                format!("{name}: {outcome}: {}", line.trim())
            })
        }
        _ => None,
    })
}

/// What goes into `<name>.error`: the outcome; what the task wrote to stderr
/// (the start of one agreeing replica's, marked as not covered by the
/// proof); what it wrote to stdout before it failed.
fn error_text(result: Option<&TaskResult>) -> Vec<u8> {
    match result {
        Some(TaskResult::Error {
            outcome,
            output,
            stderr,
        }) => {
            let mut text = format!("{outcome}\n").into_bytes();
            if !stderr.is_empty() {
                text.extend_from_slice(
                    b"stderr (one replica's, at most 4 KiB; not covered by the proof):\n",
                );
                text.extend_from_slice(stderr);
                if !stderr.ends_with(b"\n") {
                    text.push(b'\n');
                }
            }
            if !output.is_empty() {
                text.extend_from_slice(b"output:\n");
                text.extend_from_slice(output);
            }
            text
        }
        Some(TaskResult::Failed { reason }) => {
            format!("no accepted result: {reason}\n").into_bytes()
        }
        Some(TaskResult::Output(_)) => Vec::new(),
        None => b"no accepted result: the task was not decided\n".to_vec(),
    }
}

/// Every regular file of `dir` (symbolic links followed), sorted by name:
/// `(name, contents)`, one task each.
pub fn read_inputs(dir: &Path) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let path = entry.path();
        if !fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            continue;
        }
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            bail!("{}: file names must be UTF-8", path.display());
        };
        names.push(name);
    }
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let path = dir.join(&name);
            let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            Ok((name, bytes))
        })
        .collect()
}

/// Names for tasks without recorded ones: their indices, zero-padded to one width.
pub fn index_names(tasks: usize) -> Vec<String> {
    let width = tasks.saturating_sub(1).to_string().len();
    (0..tasks).map(|i| format!("{i:0width$}")).collect()
}

/// The key directory: `--key-dir`, else `~/.chorus-client`.
pub fn key_dir(arg: Option<PathBuf>) -> PathBuf {
    arg.unwrap_or_else(|| {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default()
            .join(".chorus-client")
    })
}

/// What `submit` records of a job in `KEY_DIR/jobs/<job>.json`: enough for
/// `chorus results` to name the outputs as `submit` would have, and for
/// `chorus jobs` to list it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct JobRecord {
    /// The job, 16 hex digits.
    pub job: String,
    /// Its task names (the input files), in task order.
    pub names: Vec<String>,
    /// The node it was submitted through.
    pub node: String,
    /// The module's file.
    pub module: String,
    /// Where `submit` writes (or would write) its outputs.
    pub out: String,
    /// Seconds since the Unix epoch when it was acknowledged.
    pub submitted: u64,
}

/// Records `record` in `KEY_DIR/jobs/<job>.json`.
pub fn save_record(key_dir: &Path, record: &JobRecord) -> anyhow::Result<()> {
    let dir = key_dir.join("jobs");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{}.json", record.job));
    fs::write(&path, serde_json::to_vec(record)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// The record of `job` in `key_dir`, if any. Files of older versions hold
/// only the names.
pub fn load_record(key_dir: &Path, job: JobId) -> Option<JobRecord> {
    let path = key_dir.join("jobs").join(format!("{job}.json"));
    let bytes = fs::read(path).ok()?;
    if let Ok(r) = serde_json::from_slice::<JobRecord>(&bytes) {
        return Some(r);
    }
    let names: Vec<String> = serde_json::from_slice(&bytes).ok()?;
    Some(JobRecord {
        job: job.to_string(),
        names,
        node: String::new(),
        module: String::new(),
        out: String::new(),
        submitted: 0,
    })
}

/// The names recorded for `job`, if any.
pub fn load_names(key_dir: &Path, job: JobId) -> Option<Vec<String>> {
    load_record(key_dir, job).map(|r| r.names)
}

/// [`Client::wait_with`] behind `bar` (see [`progress_bar`]).
pub async fn wait_with_bar(
    client: &Client,
    job: JobId,
    bar: &ProgressBar,
) -> anyhow::Result<JobResults> {
    client
        .wait_with(job, |s| update_bar(bar, s))
        .await
        .with_context(|| format!("waiting for job {job}"))
}

/// A bar of verified tasks on stderr, hidden unless stderr is a terminal.
pub fn progress_bar() -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(None, target);
    let style = ProgressStyle::with_template(
        "{spinner} {prefix} [{elapsed_precise}] {bar:32} {pos}/{len} tasks decided  {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Shows `s` on `bar`.
pub fn update_bar(bar: &ProgressBar, s: &JobStatus) {
    bar.set_length(u64::from(s.tasks));
    bar.set_position(u64::from(s.verified) + u64::from(s.failed));
    bar.set_message(progress_text(s));
}

/// One line of progress: `running R, pending P, failed F, replicas N, rejected D`.
pub fn progress_text(s: &JobStatus) -> String {
    format!(
        "running {}, pending {}, failed {}, replicas {}, rejected {}",
        s.running, s.pending, s.failed, s.replicas_run, s.disagreements
    )
}

#[cfg(test)]
mod tests {
    use chorus_core::RingPos;
    use chorus_sdk::outcome::{Outcome, TrapCode};
    use chorus_sdk::wire::Peer;

    use super::*;

    pub(crate) fn status(tasks: u32) -> JobStatus {
        JobStatus {
            job: JobId(RingPos(0x00ab_cdef_0123_4567)),
            coordinator: Peer {
                id: RingPos(1),
                addr: "127.0.0.1:7001".parse().unwrap(),
            },
            tasks,
            pending: 0,
            running: 0,
            verified: tasks,
            failed: 0,
            replicas_run: 9,
            disagreements: 2,
            rejected: Vec::new(),
            done: true,
            cancelled: false,
            failovers: 0,
            waiting_for_networks: 0,
            replicas_per_task: 0.0,
            spot_checks: 0,
            reopened: 0,
            reputation: Vec::new(),
            version: 0,
        }
    }

    fn results() -> JobResults {
        JobResults::from_parts(
            status(3),
            vec![
                (0, TaskResult::Output(b"zero".to_vec().into())),
                (
                    1,
                    TaskResult::Error {
                        outcome: Outcome::Exit(3),
                        output: b"partial".to_vec().into(),
                        stderr: b"cannot decode the input\n".to_vec().into(),
                    },
                ),
                (
                    2,
                    TaskResult::Failed {
                        reason: "no quorum after 6 replicas".into(),
                    },
                ),
            ],
        )
    }

    #[test]
    fn outputs_and_errors_are_named_after_the_inputs() {
        let dir = std::env::temp_dir().join(format!("chorus-cli-out-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let names: Vec<String> = ["a.bin", "b", "c.txt"].map(String::from).to_vec();
        let w = write_outputs(&dir, &names, &results()).unwrap();
        assert_eq!(
            w,
            Written {
                outputs: 1,
                proofs: 0,
                errors: 2
            }
        );
        assert_eq!(fs::read(dir.join("a.bin")).unwrap(), b"zero");
        assert_eq!(
            fs::read_to_string(dir.join("b.error")).unwrap(),
            "exit code 3\nstderr (one replica's, at most 4 KiB; not covered by the proof):\ncannot decode the input\noutput:\npartial"
        );
        assert!(!dir.join("b").exists());
        let failed = fs::read_to_string(dir.join("c.txt.error")).unwrap();
        assert!(failed.contains("no quorum after 6 replicas"), "{failed}");
        let trap = error_text(Some(&TaskResult::Error {
            outcome: Outcome::Trap(TrapCode::Unreachable),
            output: Vec::new().into(),
            stderr: Vec::new().into(),
        }));
        assert!(String::from_utf8(trap).unwrap().starts_with("Trap: "));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_summary_counts_agreed_errors_apart_and_keeps_its_field_order() {
        let s = Summary::of(&results(), Duration::from_micros(1_234_567));
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"job":"00abcdef01234567","tasks":3,"verified":1,"errors":1,"failed":1,"replicas_run":9,"disagreements":2,"replicas_per_task":0.0,"spot_checks":0,"by_credibility":0,"seconds":1.235,"refused":0,"refused_from":[]}"#
        );
    }

    #[test]
    fn inputs_are_the_regular_files_sorted_by_name() {
        let dir = std::env::temp_dir().join(format!("chorus-cli-in-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("sub")).unwrap();
        for (name, body) in [("b", "2"), ("a", "1"), ("10", "x"), ("sub/ignored", "-")] {
            fs::write(dir.join(name), body).unwrap();
        }
        let inputs = read_inputs(&dir).unwrap();
        let names: Vec<&str> = inputs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["10", "a", "b"]);
        assert_eq!(inputs[1].1, b"1");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn names_are_recorded_per_job_and_indices_are_padded() {
        let dir = std::env::temp_dir().join(format!("chorus-cli-key-{}", std::process::id()));
        let job = JobId(RingPos(42));
        assert_eq!(load_names(&dir, job), None);
        let names = vec!["x".to_string(), "y".to_string()];
        let record = JobRecord {
            job: job.to_string(),
            names: names.clone(),
            node: "127.0.0.1:7001".into(),
            module: "m.wasm".into(),
            out: "out".into(),
            submitted: 1,
        };
        save_record(&dir, &record).unwrap();
        assert_eq!(load_names(&dir, job), Some(names.clone()));
        assert_eq!(load_record(&dir, job), Some(record));
        // The format of older versions: the names alone.
        let old = JobId(RingPos(43));
        fs::write(dir.join("jobs").join(format!("{old}.json")), b"[\"a\"]").unwrap();
        assert_eq!(load_names(&dir, old), Some(vec!["a".to_string()]));
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(index_names(3), ["0", "1", "2"]);
        assert_eq!(index_names(11)[0], "00");
        assert_eq!(index_names(11)[10], "10");
    }
}
