//! Throughput and price of verification through a local ring.
//!
//! Starts 4 nodes on 127.0.1.1..127.0.4.1 in this process (real QUIC, real
//! sandboxes, one slot each), submits jobs of trivial tasks and of a real
//! task (primes) with full verification (replicas 1 and 2) and with adaptive
//! verification once the workers have earned the coordinator's trust, and
//! prints verified tasks per second, the per-task overhead beside running the
//! same task directly in the sandbox and as `chorus run`, and the CPU spent
//! per verified task divided by the CPU of one execution.
//!
//! Run: `cargo bench -p chorus-node --bench grid` (or
//! `target/release/deps/grid-* --bench` after `cargo build --release --benches`).
//! Set `CHORUS_BENCH_TASKS` to change the job size (default 20000).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chorus_core::RingPos;
use chorus_core::jobs::{DEFAULT_MAX_ERROR, Policy};
use chorus_node::net::call_node;
use chorus_node::sandbox::{Engine, EngineConfig, Limits, TaskSpec};
use chorus_sdk::bundle::{Bundle, Manifest, VerifiedBundle};
use chorus_sdk::client::Client;
use chorus_sdk::identity::Identity;
use chorus_sdk::job::{JobId, JobRequest, JobResponse, JobSpec};
use chorus_sdk::wire::{Request, Response};

/// The prime-counting example (a real task of a few milliseconds).
const PRIMES: &[u8] = include_bytes!("../../examples/wasm/primes.wasm");

/// CPU time (user + system) of this process so far.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses).
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
    let hz = 100; // USER_HZ on Linux
    Duration::from_millis((ticks(11) + ticks(12)) * 1000 / hz)
}

fn limits() -> Limits {
    Limits {
        wall_ms: 10_000,
        ..Limits::default()
    }
}

fn full(replicas: u32) -> Policy {
    Policy::new(replicas, None, None).expect("policy")
}

fn adaptive() -> Policy {
    Policy::adaptive(DEFAULT_MAX_ERROR, None).expect("policy")
}

/// A nonce from `from` on whose job `coordinator` coordinates (the owner of
/// its id among `ids`): trust records are per coordinator, so the adaptive
/// jobs measured go where the warm-up earned it.
fn nonce_at(
    bundle: &VerifiedBundle,
    inputs: &[Vec<u8>],
    policy: Policy,
    ids: &[RingPos],
    coordinator: RingPos,
    from: u64,
) -> u64 {
    let mut sorted = ids.to_vec();
    sorted.sort();
    (from..from + 10_000)
        .find(|&nonce| {
            let spec = JobSpec::new(bundle, inputs.to_vec(), Some(policy), Some(limits()), nonce)
                .expect("spec");
            let id = spec.id().0;
            let owner = *sorted.iter().find(|p| **p >= id).unwrap_or(&sorted[0]);
            owner == coordinator
        })
        .expect("a nonce that lands on the coordinator")
}

async fn run_job(
    via: SocketAddr,
    submitter: &Identity,
    bundle: &VerifiedBundle,
    inputs: Vec<Vec<u8>>,
    policy: Policy,
    nonce: u64,
) -> (Duration, Duration, JobId, u64) {
    let tasks = inputs.len();
    let spec = JobSpec::new(bundle, inputs, Some(policy), Some(limits()), nonce)
        .expect("spec")
        .sign(submitter)
        .expect("sign");
    let cpu0 = cpu_time();
    let t0 = Instant::now();
    let req = Request::Job(JobRequest::Submit {
        spec: Box::new(spec),
        forwarded: false,
    });
    let job = match call_node(via, &req, Duration::from_secs(60)).await {
        Ok(Response::Job(JobResponse::Accepted { job, .. })) => job,
        other => panic!("submit: {other:?}"),
    };
    let status = Request::Job(JobRequest::Status {
        job,
        forwarded: false,
    });
    let mut replicas_run = 0;
    for _ in 0..60_000 {
        match call_node(via, &status, Duration::from_secs(10)).await {
            Ok(Response::Job(JobResponse::Status(s))) if s.done => {
                assert_eq!(s.verified as usize, tasks, "every task verified: {s:?}");
                replicas_run = s.replicas_run;
                break;
            }
            Ok(_) => {}
            Err(e) => panic!("status: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (
        t0.elapsed(),
        cpu_time().saturating_sub(cpu0),
        job,
        replicas_run,
    )
}

fn main() {
    let tasks: usize = std::env::var("CHORUS_BENCH_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let module = wat::parse_str(common::TRIVIAL).expect("trivial task");

    // One execution in the sandbox, in process (what a worker does per task).
    let engine = Engine::new(EngineConfig {
        slots: 1,
        ..EngineConfig::default()
    })
    .expect("engine");
    let compiled = engine.module(&module, &limits()).expect("compile");
    let runs = 20_000u32;
    let cpu0 = cpu_time();
    let t0 = Instant::now();
    for i in 0..runs {
        let spec = TaskSpec {
            input: Vec::new(),
            args: Vec::new(),
            seed: u64::from(i),
            limits: limits(),
            ..TaskSpec::default()
        };
        let r = engine.run_blocking(&compiled, spec).expect("run");
        assert_eq!(r.stdout, b"chorus!\n");
    }
    let direct_wall = t0.elapsed() / runs;
    let direct_cpu = cpu_time().saturating_sub(cpu0) / runs;

    // The same task as `chorus run` (a process per task: start, compile, run).
    let dir = std::env::temp_dir().join(format!("chorus-bench-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let wasm = dir.join("trivial.wasm");
    std::fs::write(&wasm, &module).expect("write module");
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent()?.parent().map(|d| d.join("chorus")))
        .filter(|p| p.exists());
    let cli = exe.map(|exe| {
        let n = 10u32;
        let t0 = Instant::now();
        for _ in 0..n {
            let out = std::process::Command::new(&exe)
                .arg("run")
                .arg(&wasm)
                .stdin(std::process::Stdio::null())
                .output()
                .expect("chorus run");
            assert!(out.status.success());
        }
        t0.elapsed() / n
    });

    let prime_inputs = |n: u64| -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                let lo = 1_000_000_000 + i * 2_000_000;
                rmp_serde::to_vec(&(lo, lo + 2_000_000)).expect("encode")
            })
            .collect()
    };
    let one_primes = {
        let compiled = engine.module(PRIMES, &limits()).expect("compile primes");
        let inputs = prime_inputs(200);
        let cpu0 = cpu_time();
        let t0 = Instant::now();
        for input in inputs {
            let spec = TaskSpec {
                input,
                args: Vec::new(),
                seed: 0,
                limits: limits(),
                ..TaskSpec::default()
            };
            let r = engine.run_blocking(&compiled, spec).expect("run");
            assert!(r.outcome.is_ok());
        }
        (t0.elapsed() / 200, cpu_time().saturating_sub(cpu0) / 200)
    };
    // The grid: 4 nodes, one slot each, on this process's runtime.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let nodes = common::start_ring(4).await;
        let submitter = Identity::generate().expect("key");
        let bundle = Bundle::sign(
            Manifest::new("trivial", "1", submitter.public_key()),
            module.clone(),
            &submitter,
        )
        .expect("bundle");
        // Warm up: bundles fetched, modules compiled on every node.
        let _ = run_job(nodes[0].me().addr, &submitter, &bundle, vec![Vec::new(); 400], full(2), 0).await;
        // Adaptive verification trusts workers one coordinator has seen
        // pass checks: a warm-up job earns it (at 1e-4 a worker needs 194
        // checks), then the measured adaptive jobs go to the same
        // coordinator.
        let ids: Vec<RingPos> = nodes.iter().map(|n| n.me().id).collect();
        let coordinator = ids[0];
        let warm = vec![b"warm".to_vec(); 3_000];
        let nonce = nonce_at(&bundle, &warm, adaptive(), &ids, coordinator, 1_000);
        let (_, _, _, warm_run) =
            run_job(nodes[0].me().addr, &submitter, &bundle, warm, adaptive(), nonce).await;

        println!("Chorus grid benchmark: 4 nodes on 127.0.1.1..127.0.4.1, 1 slot each, {tasks} trivial tasks per job, 2 cores");
        println!();
        println!("| path | tasks/s | per task (µs) | CPU per verified task (µs) | CPU ÷ one execution |");
        println!("| --- | --- | --- | --- | --- |");
        let one = direct_cpu.as_secs_f64() * 1e6;
        println!(
            "| sandbox, in process (one execution) | {:.0} | {:.1} | {:.1} | 1.0 |",
            1.0 / direct_wall.as_secs_f64(),
            direct_wall.as_secs_f64() * 1e6,
            one
        );
        let mut checked_job = None;
        let trivial = vec![Vec::new(); tasks];
        let adaptive_nonce = nonce_at(&bundle, &trivial, adaptive(), &ids, coordinator, 2_000);
        for (name, policy, nonce) in [
            ("replicas 1".to_string(), full(1), 1u64),
            ("replicas 2".to_string(), full(2), 2),
            (
                format!("adaptive 1e-4, trusted workers ({warm_run} replicas warmed up)"),
                adaptive(),
                adaptive_nonce,
            ),
        ] {
            let (wall, cpu, job, replicas_run) = run_job(
                nodes[1].me().addr,
                &submitter,
                &bundle,
                trivial.clone(),
                policy,
                nonce,
            )
            .await;
            let per_task = wall.as_secs_f64() / tasks as f64;
            let cpu_per = cpu.as_secs_f64() / tasks as f64 * 1e6;
            println!(
                "| grid, {name} (job {job}, {replicas_run} replicas run) | {:.0} | {:.1} | {:.1} | {:.1} |",
                1.0 / per_task,
                per_task * 1e6,
                cpu_per,
                cpu_per / one
            );
            if policy.replicas == 2 && !policy.is_adaptive() {
                checked_job = Some(job);
            }
        }
        // What a client pays to check every result it fetches (signatures,
        // signers, digests, input hashes; the membership of the 4 workers
        // was learned by a first fetch and is cached).
        if let Some(job) = checked_job {
            let client = Client::connect(nodes[3].me().addr).await.expect("client");
            let _ = client.results(job).await.expect("results");
            let cpu0 = cpu_time();
            let t0 = Instant::now();
            let r = client.results(job).await.expect("results");
            let (wall, cpu) = (t0.elapsed(), cpu_time().saturating_sub(cpu0));
            assert!(r.all_accepted() && r.refused().is_empty() && r.len() == tasks);
            let per_task = wall.as_secs_f64() / tasks as f64;
            let cpu_per = cpu.as_secs_f64() / tasks as f64 * 1e6;
            println!(
                "| client: fetch and check every result of the replicas-2 job | {:.0} | {:.1} | {:.1} | {:.1} |",
                1.0 / per_task,
                per_task * 1e6,
                cpu_per,
                cpu_per / one
            );
        }
        // A real task: counting primes in a range of 2 million (about 2 ms).
        let primes = Bundle::sign(
            Manifest::new("primes", "1", submitter.public_key()),
            PRIMES.to_vec(),
            &submitter,
        )
        .expect("bundle");
        let one = one_primes.1.as_secs_f64() * 1e6;
        println!(
            "| primes (2M range), sandbox in process | {:.0} | {:.1} | {:.1} | 1.0 |",
            1.0 / one_primes.0.as_secs_f64(),
            one_primes.0.as_secs_f64() * 1e6,
            one
        );
        let _ = run_job(nodes[0].me().addr, &submitter, &primes, prime_inputs(8), full(2), 100).await;
        let n = 2_000u64;
        let adaptive_nonce =
            nonce_at(&primes, &prime_inputs(n), adaptive(), &ids, coordinator, 3_000);
        for (name, policy, nonce) in [
            ("replicas 1", full(1), 101u64),
            ("replicas 2", full(2), 102),
            ("adaptive 1e-4, trusted workers", adaptive(), adaptive_nonce),
        ] {
            let (wall, cpu, job, replicas_run) =
                run_job(nodes[2].me().addr, &submitter, &primes, prime_inputs(n), policy, nonce).await;
            let per_task = wall.as_secs_f64() / n as f64;
            let cpu_per = cpu.as_secs_f64() / n as f64 * 1e6;
            println!(
                "| primes, grid, {name} (job {job}, {replicas_run} replicas run) | {:.0} | {:.1} | {:.1} | {:.2} |",
                1.0 / per_task,
                per_task * 1e6,
                cpu_per,
                cpu_per / one
            );
        }
        if let Some(cli) = cli {
            println!(
                "| `chorus run` (a process per task, compiles each time) | {:.1} | {:.0} | - | - |",
                1.0 / cli.as_secs_f64(),
                cli.as_secs_f64() * 1e6
            );
        }
        for n in nodes {
            n.leave().await;
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
}
