//! Latency of one verified task, end to end.
//!
//! Starts 4 nodes on 127.0.0.1 in this process (real QUIC, real sandboxes,
//! one slot each), warms every worker up (bundle fetched, module compiled),
//! then measures:
//!
//! 1. inside one client process (`chorus_sdk::client::Client`): submit a
//!    one-task job with replicas 2 and wait for its verified result;
//! 2. the whole `chorus submit` process for the same kind of job (start,
//!    sign, connect, submit, wait, write the output), entering through each
//!    of the 4 nodes in turn.
//!
//! Prints the median, the 90th and the 99th percentile of each. Targets (issue
//! "progress pushed, not polled"): (1) median ≤ 10 ms; (2) median ≤ 50 ms and
//! p90 ≤ 100 ms.
//!
//! Run: `cargo bench -p chorus-node --bench latency` (builds the `chorus`
//! binary too). `CHORUS_BENCH_RUNS` sets the runs of each part (default 60).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use chorus_sdk::bundle::{Bundle, Manifest};
use chorus_sdk::client::{Client, JobBuilder};
use chorus_sdk::identity::Identity;

fn percentiles(mut v: Vec<Duration>) -> (f64, f64, f64) {
    v.sort();
    let at = |q: f64| {
        let i = ((v.len() as f64 - 1.0) * q).round() as usize;
        v[i.min(v.len() - 1)].as_secs_f64() * 1e3
    };
    (at(0.5), at(0.9), at(0.99))
}

fn main() {
    let runs: usize = std::env::var("CHORUS_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let module = wat::parse_str(common::TRIVIAL).expect("trivial task");
    let dir = std::env::temp_dir().join(format!("chorus-latency-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("inputs")).expect("dir");
    std::fs::write(dir.join("trivial.wasm"), &module).expect("module");
    std::fs::write(dir.join("inputs").join("task"), b"").expect("input");
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent()?.parent().map(|d| d.join("chorus")))
        .filter(|p| p.exists());

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
        let client = Client::connect(nodes[0].me().addr).await.expect("client");
        // Warm up every worker: jobs until each node has run the module.
        for i in 0..16u64 {
            let spec = JobBuilder::new(&bundle)
                .inputs((0..8).map(|_| Vec::new()))
                .replicas(2)
                .nonce(1_000_000 + i)
                .build(&submitter)
                .expect("spec");
            let job = client.submit(&spec).await.expect("submit");
            client.wait(job).await.expect("wait");
        }
        println!("Chorus latency benchmark: 4 nodes on 127.0.1.1..127.0.4.1, 1 slot each, one-task jobs, replicas 2, {runs} runs each, 2 cores");
        println!();
        println!("| path | median (ms) | p90 (ms) | p99 (ms) |");
        println!("| --- | --- | --- | --- |");
        let mut lat = Vec::with_capacity(runs);
        let mut acked = Vec::with_capacity(runs);
        let mut fetched = Vec::with_capacity(runs);
        for i in 0..runs as u64 {
            let spec = JobBuilder::new(&bundle)
                .input(Vec::new())
                .replicas(2)
                .nonce(i)
                .build(&submitter)
                .expect("spec");
            let t0 = Instant::now();
            let job = client.submit(&spec).await.expect("submit");
            acked.push(t0.elapsed());
            let results = client.wait(job).await.expect("wait");
            lat.push(t0.elapsed());
            assert_eq!(results.output(0).expect("verified"), b"chorus!\n");
            // Fetching (and checking) the results of a done job again.
            let t1 = Instant::now();
            let again = client.results(job).await.expect("results");
            fetched.push(t1.elapsed());
            assert!(again.refused().is_empty());
        }
        let (p50, p90, p99) = percentiles(lat);
        println!("| one-task job, inside one client process | {p50:.1} | {p90:.1} | {p99:.1} |");
        let (p50, p90, p99) = percentiles(acked);
        println!("| of which: submit until acknowledged (stored and copied) | {p50:.1} | {p90:.1} | {p99:.1} |");
        let (p50, p90, p99) = percentiles(fetched);
        println!("| fetch and check the results of a done job | {p50:.1} | {p90:.1} | {p99:.1} |");
        client.close();

        let Some(exe) = exe else {
            println!("(the chorus binary is not built: `cargo build --release` first for the CLI row)");
            return;
        };
        let home = dir.join("home");
        let _ = std::fs::create_dir_all(&home);
        let mut lat = Vec::with_capacity(runs);
        for i in 0..runs {
            let via = nodes[i % nodes.len()].me().addr;
            let out = dir.join(format!("out{i}"));
            let t0 = Instant::now();
            let o = tokio::process::Command::new(&exe)
                .env("HOME", &home)
                .arg("submit")
                .arg("--node")
                .arg(via.to_string())
                .arg(dir.join("trivial.wasm"))
                .arg("--inputs")
                .arg(dir.join("inputs"))
                .arg("--replicas")
                .arg("2")
                .arg("--out")
                .arg(&out)
                .arg("--json")
                .output()
                .await
                .expect("chorus submit");
            lat.push(t0.elapsed());
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            assert_eq!(
                std::fs::read(Path::new(&out).join("task")).expect("output"),
                b"chorus!\n"
            );
        }
        let (p50, p90, p99) = percentiles(lat);
        println!("| `chorus submit` process, one-task job, via each node in turn | {p50:.1} | {p90:.1} | {p99:.1} |");
        for n in nodes {
            n.leave().await;
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
}
