//! `chorus verify OUT`: check every output in a directory against its proof
//! (`OUT/NAME.proof`, written by `chorus submit` and `chorus results`),
//! offline, with no node running. See [`chorus_sdk::proof`] for the format
//! and what a proof does and does not establish.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use chorus_sdk::proof::Proof;
use serde::Serialize;

/// Arguments of `chorus verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The directory of outputs and their `.proof` files.
    pub out: PathBuf,
    /// Print `{"checked": N, "ok": N, "by_credibility": N, "failed": [{"file": ..., "reason": ...}]}`.
    #[arg(long)]
    pub json: bool,
}

/// What `chorus verify` found.
#[derive(Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Files checked (outputs, and proofs without their output).
    pub checked: usize,
    /// Outputs whose proof holds.
    pub ok: usize,
    /// Of the outputs that hold, those accepted by the credibility rule
    /// (adaptive verification: fewer than a quorum of signers, the
    /// coordinator's error bound at most the job's max_error).
    pub by_credibility: usize,
    /// The files that fail, and why.
    pub failed: Vec<Failure>,
}

/// One file that does not hold.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// The file's name in the directory.
    pub file: String,
    /// A stable reason: `proof_missing`, `output_missing`, `output_changed`,
    /// `signature_invalid`, `too_few_signers`, `duplicate_signer`,
    /// `rule_not_allowed` (the credibility rule in a job of full
    /// verification), `error_above_target` (a bound above the job's
    /// `max_error`), `malformed_proof` or `unreadable`.
    pub reason: String,
    /// The same for people, with details.
    pub detail: String,
}

/// Runs `chorus verify`: exit 0 when every output holds, 1 otherwise.
pub fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let report = verify_dir(&args.out)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        for f in &report.failed {
            println!("FAILED {}: {}", f.file, f.detail);
        }
        println!(
            "{} of {} outputs in {} hold their proofs",
            report.ok,
            report.checked,
            args.out.display()
        );
        if report.by_credibility > 0 {
            println!(
                "{} of them by the credibility rule (adaptive verification: at least one signer, and the coordinator's error bound within the job's max_error)",
                report.by_credibility
            );
        }
    }
    Ok(if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Checks every output of `dir` against its proof, on every core. An output
/// is a regular file whose name does not end in `.proof` or `.error`.
pub fn verify_dir(dir: &Path) -> anyhow::Result<Report> {
    let mut outputs = Vec::new();
    let mut proofs = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(output) = name.strip_suffix(".proof") {
            proofs.push(output.to_string());
        } else if !name.ends_with(".error") {
            outputs.push(name);
        }
    }
    if outputs.is_empty() && proofs.is_empty() {
        bail!("{} holds no outputs to verify", dir.display());
    }
    outputs.sort();
    let mut failed: Vec<Failure> = Vec::new();
    // A proof whose output is gone is a failure too: something was deleted.
    for p in &proofs {
        if outputs.binary_search(p).is_err() {
            failed.push(Failure {
                file: p.clone(),
                reason: "output_missing".into(),
                detail: format!("output missing (only {p}.proof is there)"),
            });
        }
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(outputs.len().max(1));
    let chunk = outputs.len().div_ceil(threads).max(1);
    let results: Vec<Result<bool, Failure>> = std::thread::scope(|s| {
        let handles: Vec<_> = outputs
            .chunks(chunk)
            .map(|names| {
                s.spawn(move || names.iter().map(|n| check_one(dir, n)).collect::<Vec<_>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let by_credibility = results.iter().filter(|r| matches!(r, Ok(true))).count();
    failed.extend(results.into_iter().filter_map(Result::err));
    failed.sort_by(|a, b| a.file.cmp(&b.file));
    Ok(Report {
        checked: outputs.len()
            + failed
                .iter()
                .filter(|f| f.reason == "output_missing")
                .count(),
        ok,
        by_credibility,
        failed,
    })
}

/// Checks one output against its proof; `None` when it holds.
fn check_one(dir: &Path, name: &str) -> Result<bool, Failure> {
    let fail = |reason: &str, detail: String| {
        Err(Failure {
            file: name.to_string(),
            reason: reason.to_string(),
            detail,
        })
    };
    let proof_path = dir.join(format!("{name}.proof"));
    let proof = match fs::read(&proof_path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return fail("proof_missing", format!("proof missing ({name}.proof)"));
        }
        Err(e) => return fail("unreadable", format!("cannot read {name}.proof: {e}")),
    };
    let output = match fs::read(dir.join(name)) {
        Ok(b) => b,
        Err(e) => return fail("unreadable", format!("cannot read {name}: {e}")),
    };
    let checked = Proof::from_json(&proof).and_then(|p| {
        p.check(&output)?;
        Ok(matches!(
            p.rule,
            chorus_sdk::attest::AcceptRule::Credibility { .. }
        ))
    });
    match checked {
        Ok(by_credibility) => Ok(by_credibility),
        Err(e) => fail(e.kind(), e.to_string()),
    }
}
