//! Real hosts: network namespaces joined by bridges, a real `chorus node`
//! process on each, links slowed and made lossy by `--emulate-link`, and
//! partitions made by taking a trunk link down (see `chorus_tests::netns`).
//!
//! Needs root and iproute2, which CI has; elsewhere each test fails saying
//! so (none skips silently). The tests take turns: each runs up to 16 node
//! processes on a machine of 2 cores.

use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chorus_tests::netns::{self, Net, Side};
use chorus_tests::{chorus_bin, prime_input, prime_output, prime_ranges, primes};

/// One namespace test at a time.
static TURN: Mutex<()> = Mutex::new(());

/// 50 ms ± 10 ms one way and 1% loss on every datagram a node sends.
const SLOW_LOSSY: &str = "delay=50ms,jitter=10ms,loss=0.01";

/// Runs one namespace test in its turn; fails with the whole error chain.
fn on_hosts(test: impl FnOnce() -> anyhow::Result<()>) {
    if let Err(e) = netns::available() {
        panic!("network namespace tests need root and iproute2: {e}");
    }
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(e) = test() {
        panic!("{e:#}");
    }
}

/// Runs a job of `ranges` (primes, replicas 2) from host `from` and checks
/// every output against the native kernel. Returns the wall time.
fn run_primes_job(
    net: &Net,
    from: usize,
    tag: &str,
    ranges: &[primes::Range],
    limit: Duration,
) -> anyhow::Result<Duration> {
    let inputs = net.path(&format!("{tag}-in"));
    let out = net.path(&format!("{tag}-out"));
    let inputs_bytes: Vec<Vec<u8>> = ranges.iter().map(prime_input).collect();
    netns::write_inputs(&inputs, &inputs_bytes)?;
    let module = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/wasm/primes.wasm");
    let addr = net.hosts[from].addr().to_string();
    let start = Instant::now();
    let mut child = Command::new("ip")
        .args(["netns", "exec", &net.hosts[from].ns])
        .arg(chorus_bin())
        .args(["submit", "--node", &addr, "--replicas", "2", "--json"])
        .arg("--inputs")
        .arg(&inputs)
        .arg("--out")
        .arg(&out)
        .arg("--key-dir")
        .arg(net.path(&format!("{tag}-key")))
        .arg(module)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning chorus submit")?;
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output()?;
            bail!(
                "job {tag} not done after {limit:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let took = start.elapsed();
    let result = child.wait_with_output()?;
    if !result.status.success() {
        bail!(
            "job {tag}: chorus submit exited {}: {}",
            result.status,
            String::from_utf8_lossy(&result.stderr)
        );
    }
    for (i, r) in ranges.iter().enumerate() {
        let name = format!("t{i:03}");
        let got =
            std::fs::read(out.join(&name)).with_context(|| format!("job {tag}: output {name}"))?;
        if got != prime_output(r) {
            bail!("job {tag}: output {name} is wrong");
        }
        if !out.join(format!("{name}.proof")).exists() {
            bail!("job {tag}: no proof for {name}");
        }
    }
    Ok(took)
}

/// Fails with the nodes' log tails if any node process died.
fn no_crash(net: &mut Net) -> anyhow::Result<()> {
    let dead = net.exited();
    if let Some((i, status)) = dead.first() {
        bail!("node h{i} exited ({status}):\n{}", net.log_tail(*i, 30));
    }
    Ok(())
}

#[test]
fn sixteen_hosts_over_slow_lossy_links_form_a_ring_answer_lookups_and_finish_a_job() {
    on_hosts(|| {
        // The same 16 hosts without and then with the emulated link, for
        // the convergence times side by side.
        let mut fast = Net::new("fast", 16, |_| Side::A)?;
        fast.start_all(&[])?;
        let (took_fast, _) = fast.wait_consistent(&fast.all(), Duration::from_secs(120))?;
        no_crash(&mut fast)?;
        drop(fast);

        let mut net = Net::new("slow", 16, |_| Side::A)?;
        net.start_all(&["--emulate-link", SLOW_LOSSY])?;
        let all = net.all();
        let (took, ids) = net.wait_consistent(&all, Duration::from_secs(180))?;
        eprintln!(
            "16 hosts: one consistent ring {:.1} s after start without delay, {:.1} s with {SLOW_LOSSY}",
            took_fast.as_secs_f64(),
            took.as_secs_f64()
        );
        let hops = net.check_lookups(&all, &ids, 100, 13)?;
        eprintln!(
            "100 lookups matched the oracle, mean {:.2} hops",
            hops.iter().sum::<u64>() as f64 / hops.len() as f64
        );
        let ranges = prime_ranges(100, 2_000);
        let job = run_primes_job(&net, 5, "slow", &ranges, Duration::from_secs(300))?;
        eprintln!(
            "100-task job (replicas 2) done in {:.1} s, every output right",
            job.as_secs_f64()
        );
        no_crash(&mut net)?;
        Ok(())
    });
}

#[test]
fn a_partitioned_ring_runs_on_both_sides_and_heals_into_one() {
    on_hosts(|| {
        let mut net = Net::new("split", 16, |i| if i < 8 { Side::A } else { Side::B })?;
        net.start_all(&["--emulate-link", SLOW_LOSSY])?;
        let all = net.all();
        net.wait_consistent(&all, Duration::from_secs(180))?;

        net.partition()?;
        let split = Instant::now();
        let (a, b) = (net.side(Side::A), net.side(Side::B));
        let (took_a, _) = net.wait_consistent(&a, Duration::from_secs(30))?;
        let (took_b, _) = net.wait_consistent(&b, Duration::from_secs(30))?;
        eprintln!(
            "partition: side A one ring after {:.1} s, side B after {:.1} s",
            took_a.as_secs_f64(),
            took_b.as_secs_f64()
        );
        // A job on each side, submitted during the split; they may finish
        // after the heal.
        let ranges_a = prime_ranges(20, 2_000);
        let ranges_b: Vec<primes::Range> = prime_ranges(40, 2_000).split_off(20);
        let jobs = std::thread::scope(|s| -> anyhow::Result<(Duration, Duration)> {
            let net = &net;
            let ja = s
                .spawn(|| run_primes_job(net, a[1], "side-a", &ranges_a, Duration::from_secs(240)));
            let jb = s
                .spawn(|| run_primes_job(net, b[1], "side-b", &ranges_b, Duration::from_secs(240)));
            // The split lasts 30 s.
            let rest = Duration::from_secs(30).saturating_sub(split.elapsed());
            std::thread::sleep(rest);
            let views_apart = net.consistent(&all);
            net.heal()?;
            let healed = net.wait_consistent(&all, Duration::from_secs(60));
            if views_apart.is_ok() {
                bail!("the two sides still looked like one ring after 30 s apart");
            }
            let (took, ids) = healed?;
            eprintln!(
                "healed: one consistent ring of 16 {:.1} s after the links returned",
                took.as_secs_f64()
            );
            net.check_lookups(&all, &ids, 50, 17)?;
            let ta = ja
                .join()
                .map_err(|_| anyhow::anyhow!("job thread a panicked"))??;
            let tb = jb
                .join()
                .map_err(|_| anyhow::anyhow!("job thread b panicked"))??;
            Ok((ta, tb))
        })?;
        eprintln!(
            "jobs submitted during the split: side A {:.1} s, side B {:.1} s, every output right",
            jobs.0.as_secs_f64(),
            jobs.1.as_secs_f64()
        );
        no_crash(&mut net)?;
        Ok(())
    });
}

#[test]
fn a_host_cut_off_for_ten_seconds_comes_back_without_a_restart() {
    on_hosts(|| {
        let mut net = Net::new("unplug", 6, |_| Side::A)?;
        net.start_all(&[])?;
        let all = net.all();
        net.wait_consistent(&all, Duration::from_secs(120))?;
        let cut = 3;
        net.unplug(cut)?;
        let others: Vec<usize> = all.iter().copied().filter(|&i| i != cut).collect();
        let (took, _) = net.wait_consistent(&others, Duration::from_secs(10))?;
        eprintln!(
            "unplugged h{cut}: the other five closed the ring in {:.1} s",
            took.as_secs_f64()
        );
        std::thread::sleep(Duration::from_secs(10).saturating_sub(took));
        net.plug(cut)?;
        let (took, _) = net.wait_consistent(&all, Duration::from_secs(60))?;
        eprintln!(
            "plugged back: h{cut} in the ring again after {:.1} s",
            took.as_secs_f64()
        );
        // The same process all along: none exited, and the harness never
        // restarts one.
        no_crash(&mut net)?;
        Ok(())
    });
}
