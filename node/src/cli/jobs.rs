//! `chorus jobs`: the jobs this client submitted, from the records `submit`
//! keeps in its key directory, newest first.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;

use super::results::{JobRecord, key_dir};

/// Arguments of `chorus jobs`.
#[derive(Debug, clap::Args)]
pub struct JobsArgs {
    /// Where `submit` keeps your key and its job records (default
    /// ~/.chorus-client).
    #[arg(long, value_name = "DIR")]
    pub key_dir: Option<PathBuf>,
    /// Print a JSON array of `{"job", "names", "node", "module", "out", "submitted"}`.
    #[arg(long)]
    pub json: bool,
}

/// Runs `chorus jobs`.
pub fn run(args: JobsArgs) -> anyhow::Result<ExitCode> {
    let dir = key_dir(args.key_dir).join("jobs");
    let records = list(&dir)?;
    if args.json {
        println!("{}", serde_json::to_string(&records)?);
        return Ok(ExitCode::SUCCESS);
    }
    if records.is_empty() {
        println!(
            "no jobs submitted from here yet ({} is empty)",
            dir.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<16}  {:<20}  {:>6}  {:<21}  {:<20}  out",
        "job", "submitted (UTC)", "tasks", "node", "module"
    );
    for r in &records {
        let when = if r.submitted == 0 {
            "-".to_string()
        } else {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(r.submitted))
                .to_string()
        };
        println!(
            "{:<16}  {:<20}  {:>6}  {:<21}  {:<20}  {}",
            r.job,
            when,
            r.names.len(),
            r.node,
            r.module,
            r.out
        );
    }
    println!("fetch one with: chorus results --node HOST:PORT JOB --out DIR");
    Ok(ExitCode::SUCCESS)
}

/// Every readable record in `dir`, newest first (unreadable files are
/// skipped with a warning; a missing dir is no jobs).
pub fn list(dir: &std::path::Path) -> anyhow::Result<Vec<JobRecord>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    for entry in entries {
        let path = entry
            .with_context(|| format!("reading {}", dir.display()))?
            .path();
        let Some(job) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".json"))
            .and_then(|n| n.parse().ok())
        else {
            continue;
        };
        match super::results::load_record(dir.parent().unwrap_or(dir), job) {
            Some(r) => out.push(r),
            None => eprintln!("warning: {} is not a job record", path.display()),
        }
    }
    out.sort_by(|a, b| b.submitted.cmp(&a.submitted).then(a.job.cmp(&b.job)));
    Ok(out)
}
