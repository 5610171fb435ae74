//! The command line as a newcomer meets it, through the real `chorus`
//! binary (separate processes, real signals) against real nodes: what is
//! refused before anything is sent, what an interrupted submit says, what
//! an erroring task leaves behind, exit codes, `decode`, `jobs`, `--arg`
//! and `--seed` through the grid, the frame cap, host names, and what a
//! node says about its ring and its data dir.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chorus_tests::{TestNode, chorus_bin, start_cluster};

const PRIMES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/wasm/primes.wasm");
const COLLATZ: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/wasm/collatz.wasm");
const MONTECARLO: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../examples/wasm/montecarlo.wasm"
);

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("chorus-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

/// Runs `chorus ARGS` to the end (bounded by `limit`), stdin closed.
fn chorus(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(chorus_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn chorus");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "chorus {args:?} ran over {limit:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Primes input {lo, hi} in MessagePack (two u32).
fn range(lo: u32, hi: u32) -> Vec<u8> {
    let mut v = vec![0x92, 0xce];
    v.extend_from_slice(&lo.to_be_bytes());
    v.push(0xce);
    v.extend_from_slice(&hi.to_be_bytes());
    v
}

fn ring3() -> Vec<TestNode> {
    start_cluster(3, |_, _| {}).expect("a ring of 3")
}

/// Stderr lines of a running child, as they come.
fn stderr_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let err = child.stderr.take().expect("piped stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The first line of `rx` containing `needle` within `limit`, with every
/// line seen so far.
fn wait_line(rx: &mpsc::Receiver<String>, needle: &str, limit: Duration) -> (String, String) {
    let deadline = Instant::now() + limit;
    let mut seen = String::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
                if line.contains(needle) {
                    return (line, seen);
                }
            }
            Err(_) => break,
        }
    }
    panic!("no line with {needle:?} within {limit:?}; seen:\n{seen}");
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(s) = child.try_wait().expect("wait") {
            return s;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    panic!("the process did not exit within {limit:?}");
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill {sig}");
}

fn jobs_submitted(nodes: &[TestNode]) -> u64 {
    nodes
        .iter()
        .map(|n| n.node().metrics().jobs_submitted.get())
        .sum()
}

#[test]
fn what_no_node_would_run_is_refused_at_once_and_nothing_is_submitted() {
    let nodes = ring3();
    let dir = scratch("refuse");
    let inputs = dir.join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    std::fs::write(inputs.join("a"), range(0, 1000)).unwrap();
    let readme = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    let random = dir.join("random.wasm");
    std::fs::write(&random, b"\0asm\x01\0\0\0\xff\xff\xff").unwrap();
    let node = nodes[0].addr.to_string();
    let key = dir.join("key");
    for bundle in [readme, random.to_str().unwrap()] {
        let t = Instant::now();
        let out = chorus(
            &[
                "submit",
                "--node",
                &node,
                bundle,
                "--inputs",
                inputs.to_str().unwrap(),
                "--key-dir",
                key.to_str().unwrap(),
            ],
            Duration::from_secs(60),
        );
        let took = t.elapsed();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{bundle}: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.contains("cannot run on the grid"), "{err}");
        // Loose bound on a shared machine; the number is in the note.
        assert!(took < Duration::from_secs(20), "{bundle}: {took:?}");
        println!("{bundle}: refused in {took:?}");
    }
    assert_eq!(jobs_submitted(&nodes), 0, "no job reached a node");
    assert!(!key.join("jobs").exists(), "no job was recorded");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigint_prints_the_job_id_and_the_command_to_fetch_it_and_exits_130() {
    let nodes = ring3();
    let dir = scratch("sigint");
    let inputs = dir.join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    // Enough work (about a second per task on one core) to interrupt.
    for i in 0..6 {
        std::fs::write(inputs.join(format!("r{i}")), range(10_000_000, 150_000_000)).unwrap();
    }
    let key = dir.join("key");
    let out = dir.join("out");
    let node = nodes[1].addr.to_string();
    let mut child = Command::new(chorus_bin())
        .args([
            "submit",
            "--node",
            &node,
            PRIMES,
            "--inputs",
            inputs.to_str().unwrap(),
            "--replicas",
            "2",
            "--key-dir",
            key.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn submit");
    let lines = stderr_lines(&mut child);
    let (line, _) = wait_line(&lines, "submitted", Duration::from_secs(60));
    let job = line
        .split_whitespace()
        .nth(1)
        .expect("job <id> submitted")
        .to_string();
    assert_eq!(job.len(), 16, "{line}");
    signal(&child, "-INT");
    let status = wait_exit(&mut child, Duration::from_secs(30));
    assert_eq!(status.code(), Some(130), "exit code on SIGINT");
    let (_, seen) = wait_line(&lines, "chorus results", Duration::from_secs(5));
    let fetch = format!("chorus results --node {node} {job} --out {}", out.display());
    assert!(seen.contains(&fetch), "{seen}");
    assert!(seen.contains(&format!("job {job} runs on")), "{seen}");

    // The job is listed, and the printed command fetches it.
    let listed = chorus(
        &["jobs", "--key-dir", key.to_str().unwrap(), "--json"],
        Duration::from_secs(30),
    );
    assert!(listed.status.success());
    let list: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("json");
    assert_eq!(list[0]["job"], job.as_str(), "{list}");
    assert_eq!(list[0]["names"].as_array().map(Vec::len), Some(6));
    let fetched = chorus(
        &[
            "results",
            "--node",
            &node,
            &job,
            "--out",
            out.to_str().unwrap(),
            "--key-dir",
            key.to_str().unwrap(),
            "--json",
        ],
        Duration::from_secs(300),
    );
    assert_eq!(fetched.status.code(), Some(0), "{}", text(&fetched.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&fetched.stdout).expect("json");
    assert_eq!(summary["verified"], 6, "{summary}");
    assert!(out.join("r0").exists() && out.join("r0.proof").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_erroring_task_keeps_its_stderr_counts_apart_and_exits_2_and_decode_reads_outputs() {
    let nodes = ring3();
    let dir = scratch("errors");
    let inputs = dir.join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    std::fs::write(inputs.join("good"), range(0, 65_536)).unwrap();
    std::fs::write(inputs.join("bad"), b"not a range\n").unwrap();
    let out = dir.join("out");
    let run = chorus(
        &[
            "submit",
            "--node",
            &nodes[0].addr.to_string(),
            PRIMES,
            "--inputs",
            inputs.to_str().unwrap(),
            "--replicas",
            "2",
            "--out",
            out.to_str().unwrap(),
            "--key-dir",
            dir.join("key").to_str().unwrap(),
            "--json",
        ],
        Duration::from_secs(300),
    );
    assert_eq!(run.status.code(), Some(2), "{}", text(&run.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&run.stdout).expect("json summary");
    assert_eq!(
        (&summary["verified"], &summary["errors"], &summary["failed"]),
        (&1.into(), &1.into(), &0.into()),
        "{summary}"
    );
    let error = std::fs::read_to_string(out.join("bad.error")).expect("bad.error");
    assert!(error.starts_with("exit code 1\n"), "{error}");
    assert!(error.contains("cannot decode the input"), "{error}");
    assert!(
        text(&run.stderr).contains("bad: exit code 1: error: cannot decode the input"),
        "{}",
        text(&run.stderr)
    );

    let decoded = chorus(
        &["decode", out.join("good").to_str().unwrap(), "--compact"],
        Duration::from_secs(30),
    );
    assert!(decoded.status.success(), "{}", text(&decoded.stderr));
    let v: serde_json::Value = serde_json::from_slice(&decoded.stdout).expect("json");
    assert_eq!(v["count"], 6542, "{v}");
    let not_msgpack = chorus(
        &["decode", out.join("bad.error").to_str().unwrap()],
        Duration::from_secs(30),
    );
    assert_eq!(not_msgpack.status.code(), Some(1));
    assert!(text(&not_msgpack.stderr).contains("is not MessagePack"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn arguments_and_seeds_go_through_the_grid_and_a_job_over_the_frame_cap_is_refused_before_sending()
{
    let nodes = ring3();
    let dir = scratch("args");
    let node = nodes[2].addr.to_string();
    let key = dir.join("key");
    let one = dir.join("one");
    std::fs::create_dir_all(&one).unwrap();
    std::fs::write(one.join("x"), b"").unwrap();
    // collatz takes its range in argv.
    let out = dir.join("collatz");
    let run = chorus(
        &[
            "submit",
            "--node",
            &node,
            COLLATZ,
            "--inputs",
            one.to_str().unwrap(),
            "--arg",
            "1",
            "--arg",
            "100000",
            "--replicas",
            "2",
            "--out",
            out.to_str().unwrap(),
            "--key-dir",
            key.to_str().unwrap(),
        ],
        Duration::from_secs(300),
    );
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    let local = chorus(
        &["run", COLLATZ, "--arg", "1", "--arg", "100000"],
        Duration::from_secs(60),
    );
    assert_eq!(std::fs::read(out.join("x")).unwrap(), local.stdout);
    assert!(
        text(&local.stdout).starts_with("1 100000 "),
        "{}",
        text(&local.stdout)
    );

    // --seed S: task 0 sees what `chorus run --seed S` sees.
    let samples = dir.join("samples");
    std::fs::create_dir_all(&samples).unwrap();
    std::fs::write(samples.join("s"), [0x91, 0xce, 0x00, 0x01, 0x86, 0xa0]).unwrap();
    let out = dir.join("pi");
    let run = chorus(
        &[
            "submit",
            "--node",
            &node,
            MONTECARLO,
            "--inputs",
            samples.to_str().unwrap(),
            "--seed",
            "7",
            "--replicas",
            "2",
            "--out",
            out.to_str().unwrap(),
            "--key-dir",
            key.to_str().unwrap(),
        ],
        Duration::from_secs(300),
    );
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    let local = chorus(
        &[
            "run",
            MONTECARLO,
            "--input",
            samples.join("s").to_str().unwrap(),
            "--seed",
            "7",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(std::fs::read(out.join("s")).unwrap(), local.stdout);

    // 5 inputs of 15 MiB: 75 MiB, over the 64 MiB a node takes at once.
    let big = dir.join("big");
    std::fs::create_dir_all(&big).unwrap();
    for i in 0..5 {
        std::fs::write(big.join(format!("b{i}")), vec![7u8; 15 << 20]).unwrap();
    }
    let before = jobs_submitted(&nodes);
    let t = Instant::now();
    let run = chorus(
        &[
            "submit",
            "--node",
            &node,
            PRIMES,
            "--inputs",
            big.to_str().unwrap(),
            "--max-input-mb",
            "16",
            "--key-dir",
            key.to_str().unwrap(),
        ],
        Duration::from_secs(120),
    );
    let err = text(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "said once: {err}");
    assert!(err.contains("split its inputs over several jobs"), "{err}");
    assert!(
        t.elapsed() < Duration::from_secs(60),
        "no retries: {:?}",
        t.elapsed()
    );
    assert_eq!(jobs_submitted(&nodes), before);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Starts `chorus node ARGS` with stderr piped (not a terminal) and
/// `RUST_LOG=info`, so that its logs would carry colour codes if any.
fn node_process(args: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(chorus_bin())
        .arg("node")
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn chorus node");
    let rx = stderr_lines(&mut child);
    (child, rx)
}

fn free_port(ip: &str) -> String {
    let s = std::net::UdpSocket::bind(format!("{ip}:0")).expect("bind");
    format!("{ip}:{}", s.local_addr().expect("addr").port())
}

#[test]
fn a_node_says_whether_it_joined_locks_its_data_dir_and_logs_without_colour() {
    let dir = scratch("node");
    // `a` on 127.0.0.1, so that `localhost` names it.
    let (a_addr, b_addr, dead) = (
        free_port("127.0.0.1"),
        free_port("127.0.202.1"),
        free_port("127.0.203.1"),
    );
    let a_dir = dir.join("a");
    let (mut a, a_lines) = node_process(&[
        "--listen",
        &a_addr,
        "--data-dir",
        a_dir.to_str().unwrap(),
        "--cores",
        "1",
    ]);
    let (_, seen_a) = wait_line(&a_lines, "started a new ring", Duration::from_secs(120));
    assert!(
        !seen_a.contains('\u{1b}'),
        "colour codes off a terminal: {seen_a:?}"
    );

    // A second node on the same data dir is refused, in one line.
    let dup = chorus(
        &[
            "node",
            "--listen",
            &free_port("127.0.204.1"),
            "--data-dir",
            a_dir.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    assert_eq!(dup.status.code(), Some(1));
    assert!(
        text(&dup.stderr).contains("is in use by another node"),
        "{}",
        text(&dup.stderr)
    );

    // A host name for the bootstrap peer; the join is reported.
    let a_by_name = a_addr.replace("127.0.0.1", "localhost");
    let (mut b, b_lines) = node_process(&[
        "--listen",
        &b_addr,
        "--bootstrap",
        &a_by_name,
        "--data-dir",
        dir.join("b").to_str().unwrap(),
        "--cores",
        "1",
    ]);
    let (line, _) = wait_line(
        &b_lines,
        "joined the ring through",
        Duration::from_secs(120),
    );
    assert!(line.contains(&a_addr), "{line}");

    // A dead bootstrap peer is said, and retried.
    let (mut c, c_lines) = node_process(&[
        "--listen",
        &free_port("127.0.205.1"),
        "--bootstrap",
        &dead,
        "--data-dir",
        dir.join("c").to_str().unwrap(),
        "--cores",
        "1",
    ]);
    let (line, _) = wait_line(
        &c_lines,
        "no bootstrap peer answered",
        Duration::from_secs(120),
    );
    assert!(line.contains(&dead) && line.contains("retrying"), "{line}");

    // `localhost:PORT` where HOST:PORT is asked for.
    let ring = chorus(
        &["ring", "--node", &a_by_name, "--json"],
        Duration::from_secs(60),
    );
    assert_eq!(ring.status.code(), Some(0), "{}", text(&ring.stderr));
    let view: serde_json::Value = serde_json::from_slice(&ring.stdout).expect("json");
    assert_eq!(view["addr"], a_addr.as_str(), "{view}");

    for child in [&mut a, &mut b, &mut c] {
        signal(child, "-INT");
        let status = wait_exit(child, Duration::from_secs(30));
        assert!(
            status.success(),
            "a node leaves cleanly on SIGINT: {status}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `chorus demo` on a small picture (12 bands of 8 rows), so a run takes
/// seconds; `extra` after.
fn demo_args<'a>(out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "demo",
        "--out",
        out,
        "--width",
        "160",
        "--height",
        "96",
        "--rows-per-task",
        "8",
        "--max-iter",
        "200",
    ];
    args.extend_from_slice(extra);
    args
}

/// A PNG's size and RGB pixels.
fn read_png(path: &std::path::Path) -> (u32, u32, Vec<u8>) {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .expect("a PNG header");
    let mut buf = vec![0; reader.output_buffer_size().expect("a buffer size")];
    let info = reader.next_frame(&mut buf).expect("a PNG frame");
    assert_eq!(info.color_type, png::ColorType::Rgb, "{}", path.display());
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

#[test]
fn the_demo_writes_a_verification_picture_with_the_liars_rejected_bands_in_its_colour() {
    use chorus_node::cli::demo::workers::{REJECTED, node_colour};

    let dir = scratch("demo");
    let out = dir.join("m.png");
    let out_s = out.to_str().expect("utf-8 path");
    // The liar is not always given work (placement may pass it over for a
    // whole job), and without a rejected result there is nothing to mark:
    // a few runs, until one has a rejection.
    let mut checked = 0;
    for attempt in 0..5 {
        let run = chorus(&demo_args(out_s, &["--json"]), Duration::from_secs(180));
        assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
        let v: serde_json::Value = serde_json::from_slice(&run.stdout).expect("one JSON object");
        let workers = dir.join("m-workers.png");
        assert_eq!(v["workers_png"]["path"], workers.to_str().unwrap(), "{v}");
        assert_eq!(v["kept_running"], false, "{v}");
        let (w, h, _) = read_png(&out);
        let (ww, wh, rgb) = read_png(&workers);
        assert_eq!((ww, wh), (w, h), "the two pictures differ in size");
        assert_eq!((w, h), (160, 96));

        let nodes = v["nodes"].as_array().expect("nodes");
        let index_of = |id: &str| {
            nodes
                .iter()
                .find(|n| n["id"] == id)
                .and_then(|n| n["index"].as_u64())
                .unwrap_or_else(|| panic!("worker {id} not in the ring: {v}"))
        };
        let pixel = |x: u32, y: u32| {
            let at = ((y * w + x) * 3) as usize;
            [rgb[at], rgb[at + 1], rgb[at + 2]]
        };
        let rejected = v["status"]["rejected"].as_array().expect("rejected");
        let mut marked = std::collections::BTreeSet::new();
        for r in rejected {
            let task = r["task"].as_u64().expect("task") as u32;
            let worker = index_of(r["worker"].as_str().expect("worker"));
            let liar = nodes[worker as usize]["chaos"] != "off";
            assert!(liar, "an honest node's result was rejected: {v}");
            let (top, bottom) = (task * 8, task * 8 + 7);
            // A red outline at the band's right edge (the legend is at the left)...
            assert_eq!(pixel(w - 1, top), REJECTED, "band {task} not outlined");
            assert_eq!(pixel(w - 1, bottom), REJECTED, "band {task} not outlined");
            // ...and the liar's colour inside the band.
            let colour = node_colour(worker as usize);
            let found = (top..=bottom).any(|y| (0..w).any(|x| pixel(x, y) == colour));
            assert!(
                found,
                "band {task}: no pixel in node {worker}'s colour {colour:?}"
            );
            marked.insert(task);
        }
        // Bands without a rejection have no outline.
        for task in 0..12u32 {
            if !marked.contains(&task) {
                assert_ne!(pixel(w - 1, task * 8), REJECTED, "band {task} outlined");
            }
        }
        checked = marked.len();
        if checked > 0 {
            eprintln!("attempt {attempt}: {checked} bands marked rejected");
            break;
        }
    }
    assert!(
        checked > 0,
        "the liar's results were never rejected in 5 runs"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The temporary blob stores (`chorus-blobs-PID-N`) in `tmp`, sorted.
fn blob_stores(tmp: &std::path::Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(tmp)
        .expect("tmp")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.to_string_lossy().contains("chorus-blobs-"))
        .collect();
    v.sort();
    v
}

/// `chorus demo --keep` writing `k.png` to `dir`, its temp dir `tmp`,
/// once its nodes are kept running: the process, its stderr and stdout lines.
fn demo_kept(
    dir: &std::path::Path,
    tmp: &std::path::Path,
) -> (Child, mpsc::Receiver<String>, mpsc::Receiver<String>) {
    let out = dir.join("k.png");
    let mut child = Command::new(chorus_bin())
        .args(demo_args(out.to_str().expect("utf-8 path"), &["--keep"]))
        .env("TMPDIR", tmp)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn chorus demo");
    let err = stderr_lines(&mut child);
    let (tx, report) = mpsc::channel();
    let stdout = child.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    wait_line(
        &err,
        "nodes kept running; Ctrl-C to stop",
        Duration::from_secs(180),
    );
    (child, err, report)
}

#[test]
fn demo_keep_serves_metrics_until_sigint_then_leaves_and_exits_0() {
    let dir = scratch("demo-keep");
    // The demo's nodes have no data dir: their blob stores are temporary
    // directories, in a temp dir of the test's own here.
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).expect("tmp");

    // A demo killed: no clean-up runs, its nodes' stores stay behind...
    let (mut killed, _, _) = demo_kept(&dir, &tmp);
    let pid = killed.id();
    killed.kill().expect("kill");
    killed.wait().expect("wait");
    let dead = blob_stores(&tmp);
    assert!(
        !dead.is_empty(),
        "the demo's nodes keep temporary blob stores"
    );
    assert!(
        dead.iter().all(|p| p
            .to_string_lossy()
            .contains(&format!("chorus-blobs-{pid}-"))),
        "{dead:?}"
    );
    // ...until the next process makes one: a dead process's lock is free.
    let (mut child, _err, report) = demo_kept(&dir, &tmp);
    let live = blob_stores(&tmp);
    assert_eq!(live.len(), dead.len(), "{live:?}");
    assert!(live.iter().all(|p| !dead.contains(p)), "{live:?} {dead:?}");

    // The report was printed before that line; its metrics lines are live.
    let (line, seen) = wait_line(&report, "metrics: http://", Duration::from_secs(10));
    assert!(!seen.contains("(stopped)"), "{seen}");
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect("a metrics URL");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .proxy(None)
        .build()
        .into();
    let body = agent
        .get(url)
        .call()
        .and_then(|mut r| r.body_mut().read_to_string())
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert!(body.contains("chorus_"), "{body}");
    assert!(dir.join("k-workers.png").exists());

    signal(&child, "-INT");
    let status = wait_exit(&mut child, Duration::from_secs(60));
    assert_eq!(status.code(), Some(0), "exit on SIGINT after --keep");
    // Gone: the address answers no more, and the stores are deleted.
    assert!(agent.get(url).call().is_err(), "{url} still answers");
    assert_eq!(blob_stores(&tmp), Vec::<PathBuf>::new());
    let _ = std::fs::remove_dir_all(&dir);
}
