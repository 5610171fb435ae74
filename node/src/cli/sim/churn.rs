//! `chorus sim lookups-under-churn`: lookups while nodes join and crash, the
//! Chord paper's Table III (see `chorus_core::sim::churn` for the method and
//! how it differs from the paper's).

use std::process::ExitCode;
use std::time::Instant;

use anyhow::bail;
use chorus_core::Config;
use chorus_core::sim::churn::{self, ChurnConfig, Table3Row};

/// Arguments of `chorus sim lookups-under-churn`.
#[derive(Debug, clap::Args)]
pub struct ChurnArgs {
    /// Nodes at the start (the ring starts whole).
    #[arg(long, default_value_t = 1000)]
    pub nodes: usize,
    /// Joins per second, and crashes per second (two Poisson processes).
    #[arg(long, default_value_t = 0.05)]
    pub rate: f64,
    /// Run every rate of the paper's Table III (0.05 to 0.40) and print our
    /// numbers beside the paper's.
    #[arg(long, conflicts_with = "rate")]
    pub table3: bool,
    /// Virtual seconds of lookups per run (churn goes on throughout).
    #[arg(long, default_value_t = 3600)]
    pub duration_s: u64,
    /// Virtual seconds of churn before lookups are counted.
    #[arg(long, default_value_t = 600)]
    pub warmup_s: u64,
    /// Lookups per second (Poisson), random live node, random key.
    #[arg(long, default_value_t = 1.0)]
    pub lookup_rate: f64,
    /// Runs (seeds) per rate; the 95% intervals are over runs. Default 1,
    /// or 10 with --table3.
    #[arg(long)]
    pub runs: Option<usize>,
    /// Ring maintenance: `paper` (stabilize, fix fingers and check
    /// predecessor every 15 to 45 s, no owner verification) or `ours` (the
    /// node's defaults: every 0.25 to 1.1 s, owners verified).
    #[arg(long, default_value = "paper", value_parser = ["paper", "ours"])]
    pub profile: String,
    /// Override the profile's owner verification (a lookup asks the owner it
    /// found whether it is alive and claims the key).
    #[arg(long, value_parser = ["on", "off"])]
    pub verify_owner: Option<String>,
    /// Successor list length r.
    #[arg(long, default_value_t = 8)]
    pub successors: usize,
    /// Seed of the first run; run k uses seed + k.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Runs simulated at once.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `chorus sim lookups-under-churn`.
pub fn run(args: ChurnArgs) -> anyhow::Result<ExitCode> {
    if args.nodes < 2 || args.nodes > u32::MAX as usize / 2 {
        bail!("--nodes must be between 2 and {}", u32::MAX / 2);
    }
    for (what, v) in [("--rate", args.rate), ("--lookup-rate", args.lookup_rate)] {
        if !(v.is_finite() && v >= 0.0) {
            bail!("{what} must be a rate per second, not {v}");
        }
    }
    let rates = if args.table3 {
        churn::paper_rates()
    } else {
        vec![args.rate]
    };
    let runs = args.runs.unwrap_or(if args.table3 { 10 } else { 1 }).max(1);
    let ring = ring_config(&args);
    let stabilize_s = ring.stabilize_interval as f64 / 1000.0;
    let make = |rate, seed| {
        let mut c = ChurnConfig::paper(rate, seed);
        c.sim.ring = ring.clone();
        c.nodes = args.nodes;
        c.lookup_rate = args.lookup_rate;
        c.warmup = args.warmup_s.saturating_mul(1000);
        c.duration = args.duration_s.saturating_mul(1000);
        c
    };
    let start = Instant::now();
    let rows = churn::table3(&rates, runs, args.seed, args.threads, make);
    let seconds = start.elapsed().as_secs_f64();
    if args.json {
        let v = serde_json::json!({
            "nodes": args.nodes,
            "profile": args.profile,
            "verify_owner": ring.verify_owner,
            "stabilize_interval_ms": ring.stabilize_interval,
            "duration_s": args.duration_s,
            "warmup_s": args.warmup_s,
            "runs": runs,
            "seed": args.seed,
            "seconds": seconds,
            "rows": rows,
        });
        println!("{v}");
    } else {
        print_table(&rows, &args, &ring, runs, seconds, stabilize_s);
    }
    Ok(ExitCode::SUCCESS)
}

fn ring_config(args: &ChurnArgs) -> Config {
    let mut ring = if args.profile == "ours" {
        Config::default()
    } else {
        churn::paper_ring()
    };
    if let Some(v) = &args.verify_owner {
        ring.verify_owner = v == "on";
    }
    ring.successors = args.successors.max(1);
    ring
}

fn print_table(
    rows: &[Table3Row],
    args: &ChurnArgs,
    ring: &Config,
    runs: usize,
    seconds: f64,
    stabilize_s: f64,
) {
    println!(
        "lookups under churn: {} nodes, {} profile (stabilize every {:.1} s on average, owners {}verified), r = {}, {} s of lookups after {} s of warm-up, {} run(s) per rate from seed {}",
        args.nodes,
        args.profile,
        stabilize_s,
        if ring.verify_owner { "" } else { "not " },
        ring.successors,
        args.duration_s,
        args.warmup_s,
        runs,
        args.seed
    );
    println!(
        "{:>6} {:>9} | {:>15} {:>15} | {:>13} {:>8} | {:>5} {:>8} {:>6} {:>6}",
        "rate/s",
        "per stab.",
        "failed (ours)",
        "failed (paper)",
        "timeouts",
        "(paper)",
        "hops",
        "lookups",
        "wrong",
        "error"
    );
    for r in rows {
        let (pf, pt) = r.paper.map_or(("-".to_string(), "-".to_string()), |p| {
            (
                format!("{:.1}% ±{:.1}", p.failed_pct, p.failed_ci_pct),
                format!("{:.1}", p.timeouts),
            )
        });
        let wrong: u64 = r.reports.iter().map(|x| x.wrong_owner).sum();
        let errors: u64 = r.reports.iter().map(|x| x.errors).sum();
        println!(
            "{:>6.2} {:>9.1} | {:>15} {:>15} | {:>13} {:>8} | {:>5.2} {:>8} {:>6} {:>6}",
            r.rate,
            r.rate * stabilize_s,
            // One run has no interval.
            if r.runs > 1 {
                format!("{:.2}% ±{:.2}", r.failed_pct, r.failed_ci_pct)
            } else {
                format!("{:.2}%", r.failed_pct)
            },
            pf,
            if r.runs > 1 {
                format!("{:.3} ±{:.3}", r.timeouts, r.timeouts_ci)
            } else {
                format!("{:.3}", r.timeouts)
            },
            pt,
            r.avg_hops,
            r.lookups,
            wrong,
            errors
        );
    }
    println!("{seconds:.1} s wall");
}
