//! `chorus demo`: a ring of nodes in this process, one of them lying on
//! purpose, a real Mandelbrot job verified by quorum, and the picture as a PNG.
//!
//! Two pictures: `--out` (the Mandelbrot set) and `<stem>-workers.png` beside
//! it, which shows what verification did: each band painted in the colours
//! of the nodes whose results were accepted for it, red outlines and the
//! liar's colour where a result was rejected ([`workers`]). The report is
//! printed once the nodes have left, so the metrics addresses in it are
//! marked stopped; with `--keep` it is printed while they run, and they keep
//! running (and serving `/metrics`) until SIGINT or SIGTERM.

pub mod workers;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chorus_core::RingPos;
use chorus_sdk::client::{Client, JobBuilder, JobResults, sign_module};
use chorus_sdk::identity::Identity;
use chorus_sdk::job::JobStatus;
use chorus_sdk::mandelbrot::Picture;
use serde_json::{Value, json};

use super::results::{Summary, progress_bar, update_bar};
use super::status::status_json;
use crate::jobs::Chaos;
use crate::node::{Node, NodeConfig};

/// The Mandelbrot task, built from `examples/mandelbrot`.
const MANDELBROT: &[u8] = include_bytes!("../../../examples/wasm/mandelbrot.wasm");

/// How long the nodes get to learn of each other.
const CONVERGE: Duration = Duration::from_secs(30);

/// Arguments of `chorus demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Nodes in the ring (at least 3); the last one corrupts its results.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub nodes: usize,
    /// Where to write the picture; the verification picture goes beside it
    /// as `<stem>-workers.png` (each band in the colours of the nodes whose
    /// results were accepted, red outlines where a result was rejected, in
    /// the colour of whose it was).
    #[arg(long, value_name = "FILE", default_value = "mandelbrot.png")]
    pub out: PathBuf,
    /// Picture width in pixels.
    #[arg(long, value_name = "PX", default_value_t = 640)]
    pub width: u32,
    /// Picture height in pixels.
    #[arg(long, value_name = "PX", default_value_t = 480)]
    pub height: u32,
    /// Rows per task.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub rows_per_task: u32,
    /// Iterations after which a point counts as inside the set.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub max_iter: u32,
    /// Print one JSON object (what happened) instead of the report.
    #[arg(long)]
    pub json: bool,
    /// After the job, keep the nodes running (their metrics addresses live)
    /// until Ctrl-C (SIGINT) or SIGTERM, then leave the ring gracefully.
    #[arg(long)]
    pub keep: bool,
}

/// Runs `chorus demo`. Exits 0 when every task has an accepted result and the
/// picture is written, 2 when some task has none (with `--keep`, once a
/// signal has stopped the nodes).
pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    if args.nodes < 3 {
        bail!("--nodes must be at least 3: every task runs on 3 distinct nodes");
    }
    let picture = Picture {
        width: args.width,
        height: args.height,
        max_iter: args.max_iter,
        rows_per_tile: args.rows_per_task,
        ..Picture::default()
    };
    let inputs = picture.inputs().context("cutting the picture into tasks")?;
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(demo(args, picture, inputs))
}

/// A node of the demo ring as the report names it.
struct Member {
    index: usize,
    id: RingPos,
    addr: SocketAddr,
    metrics: Option<SocketAddr>,
    liar: bool,
}

async fn demo(args: DemoArgs, picture: Picture, inputs: Vec<Vec<u8>>) -> anyhow::Result<ExitCode> {
    let say = |line: String| {
        if !args.json {
            eprintln!("{line}");
        }
    };
    let liar = args.nodes - 1;
    let mut nodes: Vec<Node> = Vec::with_capacity(args.nodes);
    for i in 0..args.nodes {
        // Each node on its own "host", 127.0.N.1 (all of 127.0.0.0/8 is
        // loopback on Linux): volunteers sit on distinct networks, and the
        // capacity table keeps only a few records per /24.
        let host = demo_host(i);
        let mut config = NodeConfig::new((host, 0).into());
        config.metrics = Some((host, 0).into());
        config.data_dir = None;
        config.bootstrap = nodes.first().map(|n| vec![n.me().addr]).unwrap_or_default();
        // Uniform placement: the default ranks workers by measured speed,
        // and a liar that measured itself slowest on a busy machine lost
        // every draw (2 runs in 7 caught nobody). The demo is about
        // verification, so every node gets its share of replicas.
        config.jobs.placement = chorus_core::jobs::PlacementPolicy::Uniform;
        // The liar runs every adversary at once: it lies as a worker, forges
        // results for clients and forges copies of jobs it hears of.
        config.chaos = if i == liar {
            Chaos {
                corrupt_results: true,
                forge_results: true,
                forge_copies: true,
                ..Chaos::OFF
            }
        } else {
            Chaos::OFF
        };
        let node = Node::start(config)
            .await
            .with_context(|| format!("starting node {i}"))?;
        nodes.push(node);
    }
    let members: Vec<Member> = nodes
        .iter()
        .enumerate()
        .map(|(index, n)| Member {
            index,
            id: n.me().id,
            addr: n.me().addr,
            metrics: n.metrics_addr(),
            liar: index == liar,
        })
        .collect();
    say(format!(
        "started {} nodes on hosts 127.0.1.1..127.0.{}.1; node {liar} lies: it corrupts every result it returns, forges results for clients and forges copies of jobs",
        nodes.len(),
        nodes.len()
    ));
    for m in &members {
        say(format!(
            "  node {}  {}  {:<21}  metrics http://{}/metrics{}",
            m.index,
            m.id,
            m.addr,
            m.metrics.map_or("-".to_string(), |a| a.to_string()),
            if m.liar {
                "  (corrupt-results, forge-results, forge-copies)"
            } else {
                ""
            }
        ));
    }

    let report = match run_job(&args, &picture, inputs, &nodes, &members, &say).await {
        Ok(report) => report,
        Err(e) => {
            leave(nodes).await;
            return Err(e);
        }
    };
    if args.keep {
        // Printed while the nodes run: their metrics addresses are live.
        // The handlers go in before the line that invites the signal.
        let stop = match stop_signal() {
            Ok(stop) => stop,
            Err(e) => {
                leave(nodes).await;
                return Err(e);
            }
        };
        print_report(&report, &members, &args, Liveness::Kept);
        eprintln!("nodes kept running; Ctrl-C to stop");
        stop.await;
        eprintln!("stopping the nodes");
        leave(nodes).await;
    } else {
        leave(nodes).await;
        print_report(&report, &members, &args, Liveness::Stopped);
    }
    Ok(report.exit_code())
}

/// Installs the SIGINT and SIGTERM handlers now, so that a signal sent as
/// soon as the demo says it waits is not lost (`tokio::signal::ctrl_c`
/// installs its handler only when first polled), and returns the wait.
fn stop_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        Ok(async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

/// Every node leaves the ring, each within 3 s.
async fn leave(nodes: Vec<Node>) {
    for node in nodes {
        let _ = tokio::time::timeout(Duration::from_secs(3), node.leave()).await;
    }
}

/// Whether the nodes still run when the report is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Liveness {
    /// `--keep`: they run until a signal.
    Kept,
    /// They have left: their addresses answer no more.
    Stopped,
}

/// What the job came to, printed once the nodes' fate is known.
struct Report {
    results: JobResults,
    elapsed: Duration,
    /// Bytes of the picture, when every task had an output.
    png: Option<usize>,
    /// Bytes of the verification picture, when written.
    workers_png: Option<usize>,
    defences: Defences,
}

impl Report {
    fn exit_code(&self) -> ExitCode {
        if self.png.is_some() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(2)
        }
    }
}

fn print_report(report: &Report, members: &[Member], args: &DemoArgs, live: Liveness) {
    if args.json {
        println!("{}", report_json(report, members, args, live));
    } else {
        print!("{}", report_text(report, members, args, live));
    }
}

/// Where the verification picture of `out` goes: `<stem>-workers.png` beside it.
pub fn workers_path(out: &Path) -> PathBuf {
    let mut name = out
        .file_stem()
        .map(std::ffi::OsStr::to_os_string)
        .unwrap_or_else(|| "mandelbrot".into());
    name.push("-workers.png");
    out.with_file_name(name)
}

/// The verification picture's bands: per task, the picture's rows, the
/// nodes that signed its accepted result and the nodes whose results were
/// rejected (indices into `members`; signers outside the ring are left out).
fn verification_bands<'a>(
    picture: &Picture,
    results: &'a JobResults,
    members: &[Member],
) -> anyhow::Result<Vec<workers::Band<'a>>> {
    let index = |id: RingPos| member(members, id).map(|m| m.index);
    let tiles = picture.tiles().context("cutting the picture into bands")?;
    Ok(tiles
        .iter()
        .enumerate()
        .map(|(t, tile)| {
            let task = u32::try_from(t).unwrap_or(u32::MAX);
            let mut accepted: Vec<usize> = results
                .attestations(task)
                .iter()
                .filter_map(|a| index(a.peer().ring_pos()))
                .collect();
            accepted.sort_unstable();
            accepted.dedup();
            let mut rejected: Vec<usize> = results
                .status
                .rejected
                .iter()
                .filter(|r| r.task == task)
                .filter_map(|r| index(r.worker.ring_pos()))
                .collect();
            rejected.sort_unstable();
            rejected.dedup();
            workers::Band {
                rows: tile.height,
                pixels: results.output(task).ok(),
                accepted,
                rejected,
            }
        })
        .collect())
}

/// A node's label in the picture's legend: its index and the first hex
/// digits of its ring id.
fn legend_label(m: &Member) -> String {
    let id = m.id.to_string();
    format!("{} {}", m.index, id.get(..6).unwrap_or(&id))
}

async fn run_job(
    args: &DemoArgs,
    picture: &Picture,
    inputs: Vec<Vec<u8>>,
    nodes: &[Node],
    members: &[Member],
    say: &impl Fn(String),
) -> anyhow::Result<Report> {
    let start = Instant::now();
    converge(nodes).await?;
    say(format!(
        "every node knows the other {} after {:.1} s",
        nodes.len() - 1,
        start.elapsed().as_secs_f64()
    ));

    let me = Identity::generate().context("creating the submitter's key")?;
    let bundle = sign_module("mandelbrot", MANDELBROT.to_vec(), &me)?;
    let spec = JobBuilder::new(&bundle)
        .inputs(inputs)
        .replicas(3)
        .quorum(2)
        .build(&me)?;
    let client = Client::connect(members[0].addr)
        .await
        .context("connecting to node 0")?;
    let job_start = Instant::now();
    let job = client.submit(&spec).await.context("submitting the job")?;
    say(format!(
        "submitted job {job}: {} tasks (bands of {} rows of a {}x{} picture), replicas 3, quorum 2",
        spec.inputs.len(),
        picture.rows_per_tile,
        picture.width,
        picture.height
    ));
    let bar = if args.json {
        indicatif::ProgressBar::hidden()
    } else {
        progress_bar()
    };
    let results = client.wait_with(job, |s| update_bar(&bar, s)).await;
    bar.finish_and_clear();
    client.close();
    let results = results.with_context(|| format!("waiting for job {job}"))?;
    let elapsed = job_start.elapsed();

    // The same results through the liar, which forges every one it serves:
    // the client refuses each forged result and fetches it elsewhere.
    let liar = members.iter().find(|m| m.liar).map(|m| m.addr);
    let mut defences = Defences {
        copies_refused: 0,
        forged_refused: 0,
        same_through_liar: false,
        liar_fetch_error: None,
    };
    if let Some(liar) = liar {
        // The job is done and its picture made: a failure here is reported,
        // not fatal.
        let again = match Client::connect(liar).await {
            Ok(via) => {
                let r = via.results(job).await;
                via.close();
                r
            }
            Err(e) => Err(e),
        };
        match again {
            Ok(again) => {
                defences.forged_refused = again.refused().iter().filter(|r| r.node == liar).count();
                defences.same_through_liar = again.outputs().ok() == results.outputs().ok();
            }
            Err(e) => defences.liar_fetch_error = Some(e.to_string()),
        }
    }
    defences.copies_refused = nodes
        .iter()
        .map(|n| n.metrics().job_copies_refused.get())
        .sum();

    let mut png = None;
    // The verification picture first: it is wanted most when some band has
    // no result.
    let bands = verification_bands(picture, &results, members)?;
    let legend: Vec<(usize, String)> = members.iter().map(|m| (m.index, legend_label(m))).collect();
    let rgb = workers::draw(picture.width, &bands, &legend);
    let bytes = picture.png(&rgb).context("encoding the verification PNG")?;
    let path = workers_path(&args.out);
    std::fs::write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
    let workers_png = Some(bytes.len());
    if results.all_accepted() {
        let outputs = results.outputs()?;
        let rgb = picture
            .assemble(outputs)
            .context("assembling the picture")?;
        let bytes = picture.png(&rgb).context("encoding the PNG")?;
        std::fs::write(&args.out, &bytes)
            .with_context(|| format!("writing {}", args.out.display()))?;
        png = Some(bytes.len());
    }

    Ok(Report {
        results,
        elapsed,
        png,
        workers_png,
        defences,
    })
}

/// What the liar's forgeries came to.
struct Defences {
    /// Forged results the client refused when it fetched through the liar.
    forged_refused: usize,
    /// Whether the results fetched through the liar equal the first ones.
    same_through_liar: bool,
    /// Forged job copies the honest nodes refused.
    copies_refused: u64,
    /// Why fetching through the liar failed, if it did.
    liar_fetch_error: Option<String>,
}

/// Waits until every node holds a capacity record of every other.
async fn converge(nodes: &[Node]) -> anyhow::Result<()> {
    let ids: Vec<RingPos> = nodes.iter().map(|n| n.me().id).collect();
    let deadline = Instant::now() + CONVERGE;
    loop {
        let missing: usize = nodes
            .iter()
            .map(|n| {
                let known: Vec<RingPos> = n
                    .capacity()
                    .list()
                    .iter()
                    .map(|r| r.record.peer_id().ring_pos())
                    .collect();
                ids.iter().filter(|id| !known.contains(id)).count()
            })
            .sum();
        if missing == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "the ring did not converge in {} s ({missing} capacity records still missing)",
                CONVERGE.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Rejected results per worker, most first.
fn rejections_by_worker(s: &JobStatus) -> Vec<(RingPos, usize)> {
    let mut by: BTreeMap<RingPos, usize> = BTreeMap::new();
    for r in &s.rejected {
        *by.entry(r.worker.ring_pos()).or_default() += 1;
    }
    let mut v: Vec<(RingPos, usize)> = by.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

fn member(members: &[Member], id: RingPos) -> Option<&Member> {
    members.iter().find(|m| m.id == id)
}

/// Who a ring id is: `node I  ID  ADDR` and a mark on the liar.
fn who(members: &[Member], id: RingPos) -> String {
    match member(members, id) {
        Some(m) => format!(
            "node {}  {}  {}{}",
            m.index,
            id,
            m.addr,
            if m.liar { "  <- corrupt-results" } else { "" }
        ),
        None => format!("{id} (not in this ring)"),
    }
}

fn report_text(report: &Report, members: &[Member], args: &DemoArgs, live: Liveness) -> String {
    let Report {
        results,
        elapsed,
        png,
        workers_png,
        defences,
    } = report;
    let elapsed = *elapsed;
    let s = &results.status;
    let summary = Summary::of(results, elapsed);
    let mut out = String::new();
    out.push_str(&format!(
        "job {}: {} tasks, {} verified, {} failed in {:.2} s\n",
        s.job,
        s.tasks,
        summary.verified,
        summary.failed,
        elapsed.as_secs_f64()
    ));
    out.push_str(&format!(
        "coordinator: {}\n",
        who(members, s.coordinator.id)
    ));
    out.push_str(&format!(
        "replicas run: {} (3 per task at least); results rejected: {}\n",
        s.replicas_run, s.disagreements
    ));
    for (worker, n) in rejections_by_worker(s) {
        out.push_str(&format!(
            "  {n:>4} rejected from {}\n",
            who(members, worker)
        ));
    }
    out.push_str("reputation (the coordinator's view: score, agreed, disagreed):\n");
    for w in &s.reputation {
        out.push_str(&format!(
            "  {:>6} {:>6} {:>6}  {}\n",
            w.score,
            w.agreed,
            w.disagreed,
            who(members, w.worker.ring_pos())
        ));
    }
    match &defences.liar_fetch_error {
        None => out.push_str(&format!(
            "through the liar: {} forged results refused and fetched from other nodes; {}\n",
            defences.forged_refused,
            if defences.same_through_liar {
                "the same picture"
            } else {
                "NOT the same picture"
            }
        )),
        Some(e) => out.push_str(&format!(
            "through the liar: could not fetch the results: {e}\n"
        )),
    }
    out.push_str(&format!(
        "forged job copies refused by the honest nodes: {}\n",
        defences.copies_refused
    ));
    match live {
        Liveness::Kept => {
            out.push_str("metrics (Prometheus; /sd lists the whole ring), live until Ctrl-C:\n")
        }
        Liveness::Stopped => out.push_str(
            "metrics (Prometheus), now stopped with the nodes; `chorus demo --keep` keeps them running:\n",
        ),
    }
    for m in members {
        if let Some(a) = m.metrics {
            out.push_str(&format!(
                "  node {}  metrics: http://{a}/metrics{}\n",
                m.index,
                if live == Liveness::Stopped {
                    " (stopped)"
                } else {
                    ""
                }
            ));
        }
    }
    if let Some(bytes) = workers_png {
        out.push_str(&format!(
            "verification picture: {} ({bytes} bytes): each band striped in the colours of the nodes whose results were accepted for it; a red outline marks a band where a result was rejected, hatched at its right end in the colour of whose it was; grey: no result\n",
            workers_path(&args.out).display(),
        ));
        for m in members {
            out.push_str(&format!(
                "  {}  {}\n",
                workers::hex(workers::node_colour(m.index)),
                who(members, m.id)
            ));
        }
    }
    match png {
        Some(bytes) => out.push_str(&format!(
            "picture: {} ({}x{}, {bytes} bytes), every band verified by a quorum of 2 out of 3\n",
            args.out.display(),
            args.width,
            args.height
        )),
        None => out.push_str("no picture: some tasks have no accepted result\n"),
    }
    out
}

fn report_json(report: &Report, members: &[Member], args: &DemoArgs, live: Liveness) -> Value {
    let Report {
        results,
        elapsed,
        png,
        workers_png,
        defences,
    } = report;
    let summary = Summary::of(results, *elapsed);
    json!({
        "summary": summary,
        "nodes": members.iter().map(|m| json!({
            "index": m.index,
            "id": m.id.to_string(),
            "addr": m.addr.to_string(),
            "metrics_addr": m.metrics.map(|a| a.to_string()),
            "colour": workers::hex(workers::node_colour(m.index)),
            "chaos": if m.liar { "corrupt-results,forge-results,forge-copies" } else { "off" },
        })).collect::<Vec<_>>(),
        "rejected_by_worker": rejections_by_worker(&results.status).iter().map(|(w, n)| json!({
            "worker": w.to_string(),
            "count": n,
            "liar": member(members, *w).is_some_and(|m| m.liar),
        })).collect::<Vec<_>>(),
        "status": status_json(&results.status),
        "forged_results_refused": defences.forged_refused,
        "same_results_through_liar": defences.same_through_liar,
        "forged_copies_refused": defences.copies_refused,
        "liar_fetch_error": defences.liar_fetch_error,
        "png": png.map(|bytes| json!({"path": args.out.display().to_string(), "bytes": bytes})),
        "workers_png": workers_png.map(|bytes| json!({
            "path": workers_path(&args.out).display().to_string(),
            "bytes": bytes,
        })),
        // Whether the nodes (and their metrics addresses) still run.
        "kept_running": live == Liveness::Kept,
    })
}

/// The loopback "host" of demo node `i`: 127.0.(i+1).1.
fn demo_host(i: usize) -> std::net::IpAddr {
    let n = u8::try_from(i % 250 + 1).unwrap_or(1);
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, n, 1))
}

#[cfg(test)]
mod tests {
    use chorus_sdk::job::{JobId, Rejection};
    use chorus_sdk::wire::Peer;

    use super::*;

    /// A peer id whose ring position is `pos` (what these tests name workers by).
    fn peer_at(pos: u64) -> chorus_sdk::identity::PeerId {
        let mut b = [0u8; 32];
        b[..8].copy_from_slice(&pos.to_be_bytes());
        chorus_sdk::identity::PeerId(b)
    }

    #[test]
    fn rejections_are_grouped_by_worker_most_first_and_the_liar_is_marked() {
        let rej = |task, w| Rejection {
            task,
            worker: peer_at(w),
        };
        let status = status(vec![rej(0, 5), rej(1, 2), rej(2, 5)]);
        assert_eq!(
            rejections_by_worker(&status),
            vec![(RingPos(5), 2), (RingPos(2), 1)]
        );
        let members = [Member {
            index: 4,
            id: RingPos(5),
            addr: "127.0.0.1:2".parse().unwrap(),
            metrics: None,
            liar: true,
        }];
        assert!(who(&members, RingPos(5)).contains("corrupt-results"));
        assert!(who(&members, RingPos(2)).contains("not in this ring"));
    }

    /// A finished job of 3 tasks with these rejections.
    fn status(rejected: Vec<Rejection>) -> JobStatus {
        JobStatus {
            job: JobId(RingPos(9)),
            coordinator: Peer {
                id: RingPos(1),
                addr: "127.0.0.1:1".parse().unwrap(),
            },
            tasks: 3,
            pending: 0,
            running: 0,
            verified: 3,
            failed: 0,
            replicas_run: 9,
            disagreements: 3,
            rejected,
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

    #[test]
    fn the_report_calls_metrics_live_only_when_the_nodes_are_kept() {
        let report = Report {
            results: JobResults::from_parts(status(Vec::new()), Vec::new()),
            elapsed: Duration::from_secs(1),
            png: None,
            workers_png: Some(10),
            defences: Defences {
                forged_refused: 0,
                same_through_liar: true,
                copies_refused: 0,
                liar_fetch_error: None,
            },
        };
        let members = [Member {
            index: 0,
            id: RingPos(5),
            addr: "127.0.0.1:2".parse().unwrap(),
            metrics: Some("127.0.0.1:3".parse().unwrap()),
            liar: false,
        }];
        let args = DemoArgs {
            nodes: 5,
            out: PathBuf::from("out/pic.png"),
            width: 640,
            height: 480,
            rows_per_task: 16,
            max_iter: 1000,
            json: false,
            keep: false,
        };
        let stopped = report_text(&report, &members, &args, Liveness::Stopped);
        assert!(
            stopped.contains("metrics: http://127.0.0.1:3/metrics (stopped)"),
            "{stopped}"
        );
        let kept = report_text(&report, &members, &args, Liveness::Kept);
        assert!(
            kept.contains("metrics: http://127.0.0.1:3/metrics\n"),
            "{kept}"
        );
        assert!(kept.contains("out/pic-workers.png"), "{kept}");
        assert!(kept.contains("#1f77b4  node 0"), "{kept}");
        let v = report_json(&report, &members, &args, Liveness::Stopped);
        assert_eq!(v["workers_png"]["path"], "out/pic-workers.png");
        assert_eq!(v["kept_running"], false);
        assert_eq!(v["nodes"][0]["colour"], "#1f77b4");
    }

    #[test]
    fn the_verification_picture_sits_beside_the_picture() {
        assert_eq!(
            workers_path(Path::new("a/b/m.png")),
            PathBuf::from("a/b/m-workers.png")
        );
        assert_eq!(
            workers_path(Path::new("pic")),
            PathBuf::from("pic-workers.png")
        );
        assert_eq!(
            workers_path(Path::new("")),
            PathBuf::from("mandelbrot-workers.png")
        );
    }

    #[test]
    fn the_embedded_module_is_the_mandelbrot_task() {
        assert!(MANDELBROT.starts_with(b"\0asm"));
        assert!(Picture::default().inputs().unwrap().len() == 30);
    }
}
