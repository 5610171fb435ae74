//! `chorus sim`: the many-node simulator, running the real ring state machine.
//!
//! Builds a stable ring of N nodes (from the oracle, or through the real join
//! protocol with `--join`), optionally fails a fraction of them at once and lets
//! the ring repair itself (or not, with `--no-repair`: the Chord paper's
//! Table II setting), then runs lookups from random live nodes for random keys
//! and checks every answer against the true owner.

pub mod churn;

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use chorus_core::sim::jobs::{self, JobSimConfig};
use chorus_core::sim::{Report, Sim, SimConfig};

/// Arguments of `chorus sim`: the ring simulator, or `chorus sim jobs`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SimArgs {
    /// `jobs`: simulate one job against many modelled workers instead.
    #[command(subcommand)]
    pub what: Option<SimWhat>,
    /// Nodes in the ring.
    #[arg(long, default_value_t = 1000)]
    pub nodes: usize,
    /// Lookups to run (random live node, random key).
    #[arg(long, default_value_t = 10_000)]
    pub lookups: u64,
    /// Fraction of the nodes to crash at once before the lookups (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    pub fail: f64,
    /// After the failure, run no maintenance at all (stabilize, fingers,
    /// predecessor checks): lookups must route around the dead nodes.
    #[arg(long)]
    pub no_repair: bool,
    /// Successor list length r.
    #[arg(long, default_value_t = 8)]
    pub successors: usize,
    /// Seed of the whole run; the same seed replays the same run.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Build the ring through the real join protocol instead of from the oracle
    /// (slower; practical up to about 10^4 nodes).
    #[arg(long)]
    pub join: bool,
    /// Ping the owner a lookup found and fall back past it if dead (always on
    /// with --no-repair).
    #[arg(long)]
    pub verify_owner: bool,
    /// Answer FindSuccessor from the whole successor list, not only from
    /// (me, successor].
    #[arg(long)]
    pub answer_from_successor_list: bool,
    /// Churn before the lookups: each round (one second), this fraction of
    /// the ring joins, half of it crashes and half leaves gracefully; Zave's
    /// invariants are checked after every round.
    #[arg(long, default_value_t = 0.0)]
    pub churn: f64,
    /// How many churn rounds to run (with --churn).
    #[arg(long, default_value_t = 30)]
    pub churn_rounds: u64,
    /// Partition the network after building the ring: this fraction of the
    /// nodes (chosen at random) cannot reach the others for
    /// --partition-rounds stabilize intervals; then it heals and the run
    /// goes on until the ring is one again (or --max-rounds).
    #[arg(long, default_value_t = 0.0)]
    pub partition: f64,
    /// How long the partition lasts, in stabilize intervals.
    #[arg(long, default_value_t = 30)]
    pub partition_rounds: u64,
    /// Give up on repair after this many stabilize intervals.
    #[arg(long, default_value_t = 2000)]
    pub max_rounds: u64,
    /// Print one JSON object instead of a summary.
    #[arg(long)]
    pub json: bool,
}

/// What else `chorus sim` can simulate.
#[derive(Debug, clap::Subcommand)]
pub enum SimWhat {
    /// One job's state machine (the node's own placement, quorum and
    /// reputation code) against many modelled workers, some lying, in virtual
    /// time; seeded and replayable.
    Jobs(JobSimArgs),
    /// Lookups while nodes join and crash (Poisson, rate R each), judged by
    /// the oracle: the Chord paper's Table III (`--table3`).
    LookupsUnderChurn(churn::ChurnArgs),
}

/// Arguments of `chorus sim jobs`.
#[derive(Debug, clap::Args)]
pub struct JobSimArgs {
    /// Modelled workers.
    #[arg(long, default_value_t = 1000)]
    pub workers: u32,
    /// Tasks in the job.
    #[arg(long, default_value_t = 10_000)]
    pub tasks: u32,
    /// Replicas started per task.
    #[arg(long, default_value_t = 3)]
    pub replicas: u32,
    /// Equal results that accept a task (default: a majority of replicas).
    #[arg(long)]
    pub quorum: Option<u32>,
    /// Most replicas that vote on one task (default: 2 x replicas).
    #[arg(long)]
    pub max_replicas: Option<u32>,
    /// Fraction of the workers that lie (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    pub saboteurs: f64,
    /// Saboteurs lie on the same tasks (a fraction --lie-rate of all tasks,
    /// chosen by the task) with the same wrong output, so they always agree.
    /// Without it each saboteur lies on its own with a wrong output of its own.
    #[arg(long)]
    pub collude: bool,
    /// Probability that a saboteur lies on a replica (without --collude), or
    /// the fraction of tasks targeted (with --collude).
    #[arg(long, default_value_t = 1.0)]
    pub lie_rate: f64,
    /// Placement policy: uniform (the closed forms' model) or two-choices
    /// (the node's: free slots, speed, reputation).
    #[arg(long, default_value = "uniform")]
    pub placement: chorus_core::jobs::PlacementPolicy,
    /// Give no work to workers at or below this reputation while enough
    /// others exist (the node uses -50); off by default.
    #[arg(long, allow_negative_numbers = true)]
    pub distrust_below: Option<i32>,
    /// Task slots per worker.
    #[arg(long, default_value_t = 1)]
    pub slots: u32,
    /// Pack the saboteurs into this many networks (0: each its own, like
    /// honest workers): an attacker with many machines in few address blocks.
    #[arg(long, default_value_t = 0)]
    pub saboteur_networks: u32,
    /// Replica diversity, as the node applies it: at most one replica of a
    /// task per network that may vote (on, the node's default) or off.
    #[arg(long, default_value = "on", value_parser = ["on", "off"])]
    pub diversity: String,
    /// Most tasks in one batch to one worker.
    #[arg(long, default_value_t = 64)]
    pub batch_tasks: usize,
    /// Verification: full (--replicas, --quorum) or adaptive (replicas
    /// added until the result's credibility meets --max-error; see
    /// node/core/README.md).
    #[arg(long, default_value = "full")]
    pub verify: chorus_core::jobs::Verify,
    /// Adaptive: the largest acceptable chance that an accepted result is
    /// wrong, by the credibility rule.
    #[arg(long, default_value_t = chorus_core::jobs::policy::DEFAULT_MAX_ERROR)]
    pub max_error: f64,
    /// Adaptive: chance that a free slot of a worker not yet trusted gets a
    /// spot check (an accepted task run again) instead of fresh work.
    #[arg(long, default_value_t = chorus_core::jobs::machine::DEFAULT_SPOT_CHECK_RATE)]
    pub spot_check: f64,
    /// Adaptive: fraction of tasks that need two agreeing results even when
    /// one would do (the audit of single results).
    #[arg(long, default_value_t = chorus_core::jobs::machine::DEFAULT_AUDIT_RATE)]
    pub audit: f64,
    /// Adaptive: the assumed largest fraction of saboteurs, the f of the
    /// credibility bound.
    #[arg(long, default_value_t = chorus_core::jobs::machine::DEFAULT_ASSUMED_SABOTEURS)]
    pub assume_saboteurs: f64,
    /// Seed of the whole run; the same seed replays the same run.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print one JSON object instead of a summary.
    #[arg(long)]
    pub json: bool,
}

/// Runs `chorus sim`.
pub fn run(args: SimArgs) -> anyhow::Result<ExitCode> {
    match args.what {
        Some(SimWhat::Jobs(a)) => return run_jobs(a),
        Some(SimWhat::LookupsUnderChurn(a)) => return churn::run(a),
        None => {}
    }
    if args.nodes == 0 || args.nodes > u32::MAX as usize {
        bail!("--nodes must be between 1 and {}", u32::MAX);
    }
    if !(0.0..1.0).contains(&args.fail) {
        bail!("--fail must be in [0, 1)");
    }
    let start = Instant::now();
    let mut cfg = SimConfig {
        seed: args.seed,
        ..SimConfig::default()
    };
    cfg.ring.successors = args.successors.max(1);
    cfg.ring.verify_owner = args.verify_owner || args.no_repair;
    // Without repair predecessors stay stale: verify liveness only.
    cfg.ring.verify_owner_claim = !args.no_repair;
    cfg.ring.answer_from_successor_list = args.answer_from_successor_list;

    let mut sim = if args.join {
        let mut sim = Sim::joined_ring(cfg, args.nodes, 1000);
        sim.converge(args.max_rounds)
            .map_err(|v| anyhow::anyhow!("ring did not converge after joins: {v}"))
            .with_context(|| format!("seed {}", args.seed))?;
        sim
    } else {
        Sim::oracle_ring(cfg, args.nodes)
    };

    let mut partition = None;
    if args.partition > 0.0 {
        if !(0.0..1.0).contains(&args.partition) {
            bail!("--partition must be in (0, 1)");
        }
        let p = sim.partition_and_heal(args.partition, args.partition_rounds, args.max_rounds);
        partition = Some(p);
    }

    let mut violations = 0;
    let mut churn_rounds = 0;
    let mut first_violation = None;
    if args.churn > 0.0 {
        if !(0.0..1.0).contains(&args.churn) {
            bail!("--churn must be in [0, 1)");
        }
        for round in 0..args.churn_rounds {
            let k = (sim.live().len() as f64 * args.churn).round() as usize;
            sim.churn(k, k / 2, k - k / 2, 1000);
            churn_rounds += 1;
            if let Err(v) = sim.check_weak() {
                violations += 1;
                first_violation.get_or_insert(format!("round {round}: {v}"));
            }
        }
        // Let the ring settle before measuring lookups.
        if let Err(v) = sim.converge(args.max_rounds) {
            first_violation.get_or_insert(format!("after churn: {v}"));
            violations += 1;
        }
    }

    let failed = (sim.live().len() as f64 * args.fail).round() as usize;
    let mut rounds = 0;
    let mut repair_error = None;
    if failed > 0 {
        sim.fail_random(failed);
        if args.no_repair {
            sim.set_maintenance(false);
        } else {
            match sim.converge(args.max_rounds) {
                Ok(r) => rounds = r,
                Err(v) => {
                    rounds = args.max_rounds;
                    repair_error = Some(v.to_string());
                }
            }
        }
    }
    sim.reset_stats();
    sim.run_lookups(args.lookups);

    let mut report = sim.report();
    report.stabilize_rounds = rounds;
    report.churn_rounds = churn_rounds;
    report.invariant_violations = violations;
    report.partition = partition;
    report.seconds = start.elapsed().as_secs_f64();
    report.peak_rss_mb = peak_rss_mb().unwrap_or(0.0);

    let ok = report.wrong_owner == 0
        && report.failed_lookups == 0
        && report.partition.as_ref().is_none_or(|p| p.healed)
        && repair_error.is_none()
        && violations == 0;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_summary(&report, &args, repair_error.as_deref());
    }
    if !ok {
        eprintln!("sim: problems found; replay with --seed {}", args.seed);
        if let Some(v) = &first_violation {
            eprintln!("  first invariant violation: {v}");
        }
        for p in sim.problems() {
            eprintln!("  {p}");
        }
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_summary(r: &Report, args: &SimArgs, repair_error: Option<&str>) {
    println!(
        "ring: {} live nodes ({} gone), r = {}, built {}, seed {}",
        r.nodes,
        r.failed_nodes,
        args.successors,
        if args.join {
            "by joins"
        } else {
            "from the oracle"
        },
        r.seed
    );
    if r.churn_rounds > 0 {
        println!(
            "churn: {} rounds of {:.1}% joins and {:.1}% departures, invariants broken after {}",
            r.churn_rounds,
            args.churn * 100.0,
            args.churn * 100.0,
            r.invariant_violations
        );
    }
    if let Some(p) = &r.partition {
        println!(
            "partition: {} | {} nodes apart for {} rounds; then {} ring(s){}; messages {}",
            p.sides[0],
            p.sides[1],
            p.partition_rounds,
            p.rings_at_heal.len(),
            if p.sides_whole_at_heal {
                ", each side whole"
            } else {
                ""
            },
            p.messages_partition
        );
        match &p.error {
            None => println!(
                "heal: one ring after {} stabilize rounds ({:.1} s virtual), {} messages",
                p.heal_rounds,
                p.heal_ms as f64 / 1000.0,
                p.messages_heal
            ),
            Some(e) => println!("heal: NOT one ring after {} rounds: {e}", p.heal_rounds),
        }
    }
    if args.fail > 0.0 {
        if args.no_repair {
            println!("repair: none (maintenance stopped at the failure)");
        } else if let Some(e) = repair_error {
            println!(
                "repair: NOT converged after {} rounds: {e}",
                r.stabilize_rounds
            );
        } else {
            println!(
                "repair: ring whole after {} stabilize rounds",
                r.stabilize_rounds
            );
        }
    }
    println!(
        "lookups: {}  hops avg {:.2} (½·log2 N = {:.2})  p99 {}  max {}",
        r.lookups, r.avg_hops, r.half_log2_n, r.p99_hops, r.max_hops
    );
    println!(
        "         wrong owner {}  failed {}  timeouts/lookup {:.3}",
        r.wrong_owner, r.failed_lookups, r.timeouts
    );
    println!(
        "cost: {:.2} s wall, {:.1} s virtual, {} messages, peak RSS {:.0} MiB, ~{:.0} B routing state per node",
        r.seconds,
        r.virtual_ms as f64 / 1000.0,
        r.messages,
        r.peak_rss_mb,
        r.routing_bytes_per_node
    );
}

/// Runs `chorus sim jobs`.
fn run_jobs(args: JobSimArgs) -> anyhow::Result<ExitCode> {
    let start = Instant::now();
    let policy = match args.verify {
        chorus_core::jobs::Verify::Full => {
            chorus_core::jobs::Policy::new(args.replicas, args.quorum, args.max_replicas)
        }
        chorus_core::jobs::Verify::Adaptive => {
            chorus_core::jobs::Policy::adaptive(args.max_error, args.max_replicas)
        }
    }
    .context("policy")?;
    for (what, v) in [
        ("--spot-check", args.spot_check),
        ("--audit", args.audit),
        ("--assume-saboteurs", args.assume_saboteurs),
    ] {
        anyhow::ensure!((0.0..1.0).contains(&v), "{what} must be in [0, 1), not {v}");
    }
    let mut cfg = JobSimConfig {
        workers: args.workers,
        tasks: args.tasks,
        policy,
        saboteurs: args.saboteurs,
        collude: args.collude,
        lie_rate: args.lie_rate,
        seed: args.seed,
        placement: args.placement,
        slots: args.slots.max(1),
        saboteur_networks: args.saboteur_networks,
        ..JobSimConfig::default()
    };
    cfg.machine.diverse = args.diversity == "on";
    cfg.machine.distrust_below = args.distrust_below;
    cfg.machine.batch_tasks = args.batch_tasks.max(1);
    cfg.machine.spot_check_rate = args.spot_check;
    cfg.machine.audit_rate = args.audit;
    cfg.machine.assumed_saboteurs = args.assume_saboteurs;
    let mut report = jobs::run(&cfg).with_context(|| format!("seed {}", args.seed))?;
    report.seconds = start.elapsed().as_secs_f64();
    let rss = peak_rss_mb().unwrap_or(0.0);
    if args.json {
        let mut v = serde_json::to_value(&report)?;
        v["peak_rss_mb"] = serde_json::json!(rss);
        v["placement"] = serde_json::json!(args.placement.as_str());
        v["collude"] = serde_json::json!(args.collude);
        v["saboteur_networks"] = serde_json::json!(args.saboteur_networks);
        v["diversity"] = serde_json::json!(args.diversity);
        v["verify"] = serde_json::json!(args.verify.as_str());
        v["max_error"] = serde_json::json!(args.max_error);
        v["spot_check"] = serde_json::json!(args.spot_check);
        v["audit"] = serde_json::json!(args.audit);
        v["lie_rate"] = serde_json::json!(args.lie_rate);
        println!("{v}");
    } else {
        println!(
            "jobs: {} workers ({} saboteurs, {}{}), {} tasks, R {} Q {} max {}, {} placement, diversity {}, seed {}",
            report.workers,
            report.saboteurs,
            if args.collude {
                "colluding"
            } else {
                "each on its own"
            },
            if args.saboteur_networks > 0 {
                format!(", in {} networks", args.saboteur_networks)
            } else {
                String::new()
            },
            report.tasks,
            policy.replicas,
            policy.quorum,
            policy.max_replicas,
            args.placement.as_str(),
            args.diversity,
            args.seed
        );
        let closed = report
            .closed_form
            .map_or(String::new(), |c| format!(" (closed form {c:.4})"));
        println!(
            "accepted {}  wrong {}  error rate {:.4}{closed}  failed {}",
            report.accepted, report.wrong_accepted, report.error_rate, report.failed
        );
        println!(
            "replicas {} ({:.2} per task), {} rejected, {} batches; reputation: saboteurs {:.1}, honest {:.1}",
            report.replicas_run,
            report.replicas_per_task,
            report.disagreements,
            report.batches,
            report.saboteur_reputation,
            report.honest_reputation
        );
        if policy.is_adaptive() {
            println!(
                "adaptive, max error {}: {} spot checks, {} reopened; trusted at the end: {} honest, {} saboteurs",
                policy.max_error,
                report.spot_checks,
                report.reopened,
                report.trusted_honest,
                report.trusted_saboteurs
            );
        }
        println!(
            "cost: {:.2} s wall, {:.1} s virtual, peak RSS {rss:.0} MiB",
            report.seconds, report.virtual_seconds
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Peak resident set size of this process (VmHWM), in MiB; Linux only.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
