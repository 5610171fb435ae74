//! `chorus node`: run a peer until SIGINT/SIGTERM, then leave gracefully.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use chorus_sdk::link::LinkEmulation;

use crate::jobs::Chaos;
use crate::node::{Node, NodeConfig, default_cores};

/// Arguments of `chorus node`.
#[derive(Debug, clap::Args)]
pub struct NodeArgs {
    /// UDP address to listen on (HOST:PORT).
    #[arg(long, value_parser = super::addr::parse)]
    pub listen: SocketAddr,
    /// A live member to join through (repeatable; any one will do).
    #[arg(long, value_parser = super::addr::parse)]
    pub bootstrap: Vec<SocketAddr>,
    /// Directory for the node key (created on first start, mode 0600) and state.
    #[arg(long, default_value = ".chorus")]
    pub data_dir: PathBuf,
    /// Address to announce to peers, if not the listen address.
    #[arg(long, value_parser = super::addr::parse)]
    pub advertise: Option<SocketAddr>,
    /// Serve Prometheus `/metrics` and service discovery `/sd` over HTTP here (HOST:PORT).
    #[arg(long, value_parser = super::addr::parse)]
    pub metrics: Option<SocketAddr>,
    /// Length of the successor list.
    #[arg(long, default_value_t = 8)]
    pub successors: usize,
    /// Cores donated: tasks run at once (default: all cores but one, at least one).
    #[arg(long, value_name = "N")]
    pub cores: Option<usize>,
    /// Memory donated, in MiB (tasks' memory limits count against it).
    #[arg(long, value_name = "N", default_value_t = 2048)]
    pub memory_mb: u64,
    /// Testing and demonstration aid, off by default (repeatable): make this
    /// node an adversary so that anyone can watch the defences hold.
    /// `corrupt-results` flips bytes in every result it returns as a worker;
    /// `forge-results` hands clients forged outputs with made-up
    /// attestations; `forge-copies` sends forged job copies and takeover
    /// requests to backups; `corrupt-chunks` serves blob chunks with a byte
    /// flipped. Never use it on a grid you share.
    #[arg(long, value_enum, value_name = "MODE")]
    pub chaos: Vec<ChaosArg>,
    /// Most incoming connections served at once (peers and clients); more are refused.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub max_connections: usize,
    /// Most disk space for compiled modules in DATA_DIR/modules, in MiB; the
    /// least recently used go first.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub module_cache_mb: u64,
    /// Most disk space for blobs (files and modules of jobs, uploads) in
    /// DATA_DIR/blobs, in MiB; the least recently used that no running job
    /// holds go first. Uploads from clients get half of it at most.
    #[arg(long, value_name = "N", default_value_t = 4096)]
    pub blob_cache_mb: u64,
    /// Replica diversity (as coordinator): replicas of one task that may
    /// vote together come from distinct IPv4 networks of this many leading
    /// bits of the worker's address (24: one per /24; 32: one per address).
    #[arg(long, value_name = "BITS", default_value_t = 24, value_parser = clap::value_parser!(u32).range(0..=32))]
    pub diversity_v4: u32,
    /// Replica diversity for IPv6 workers, in leading bits (48: one per /48).
    #[arg(long, value_name = "BITS", default_value_t = 48, value_parser = clap::value_parser!(u32).range(0..=128))]
    pub diversity_v6: u32,
    /// Testing aid, off by default: emulate a slow, lossy link on every
    /// datagram this node sends, e.g. `delay=50ms,jitter=10ms,loss=0.01`
    /// (delay ± uniform jitter, independent loss; for kernels without netem).
    #[arg(long, value_name = "SPEC")]
    pub emulate_link: Option<LinkEmulation>,
    /// Runtimes (interpreters such as Python, named by id) whose tasks this
    /// node runs: `all`, `none` (the default), or an id (repeatable; ids
    /// from `chorus runtime import`). A runtime is compiled once, the first
    /// time (about a minute of CPU for a 100 MB interpreter), then cached.
    #[arg(long = "accept-runtime", value_name = "ID|all|none")]
    pub accept_runtime: Vec<String>,
}

/// Values of `chorus node --chaos` (see `chorus_node::jobs::Chaos`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ChaosArg {
    /// Flip bytes in every result this node returns as a worker.
    CorruptResults,
    /// Hand clients forged outputs with made-up attestations by fresh keys.
    ForgeResults,
    /// Send forged copies (made-up decided tasks, a cancel) of every job
    /// heard of to its backups, and ask them to take it over.
    ForgeCopies,
    /// Return, for every task, the same wrong output every other `collude`
    /// node returns: colluders agree with each other.
    Collude,
    /// Announce 1,024 cores, maximal speed and every slot free.
    InflateCapacity,
    /// Send ring neighbours thousands of forged capacity records a second.
    FloodCapacity,
    /// Serve blob chunks with a byte flipped (every chunk whose index is 1
    /// mod 3, the first time it is asked for).
    CorruptChunks,
}

/// The modes given, as the node's setting.
fn chaos_of(args: &[ChaosArg]) -> Chaos {
    let mut c = Chaos::OFF;
    for a in args {
        match a {
            ChaosArg::CorruptResults => c.corrupt_results = true,
            ChaosArg::ForgeResults => c.forge_results = true,
            ChaosArg::Collude => c.collude = true,
            ChaosArg::InflateCapacity => c.inflate_capacity = true,
            ChaosArg::FloodCapacity => c.flood_capacity = true,
            ChaosArg::ForgeCopies => c.forge_copies = true,
            ChaosArg::CorruptChunks => c.corrupt_chunks = true,
        }
    }
    c
}

/// Runs `chorus node`.
pub fn run(args: NodeArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async move {
        let mut config = NodeConfig::new(args.listen);
        config.bootstrap = args.bootstrap;
        config.data_dir = Some(args.data_dir);
        config.advertise = args.advertise;
        config.metrics = args.metrics;
        config.ring.successors = args.successors.max(1);
        config.cores = args.cores.unwrap_or_else(default_cores).max(1);
        config.memory_mb = args.memory_mb;
        config.chaos = chaos_of(&args.chaos);
        config.jobs.accept_runtimes = crate::jobs::AcceptRuntimes::parse(&args.accept_runtime)
            .map_err(|e| anyhow::anyhow!("--accept-runtime: {e}"))?;
        config.serve.max_connections = args.max_connections.max(1);
        config.module_cache_bytes = args.module_cache_mb.saturating_mul(1 << 20);
        config.blob_cache_bytes = args.blob_cache_mb.saturating_mul(1 << 20);
        config.jobs.diversity_v4 = args.diversity_v4;
        config.jobs.diversity_v6 = args.diversity_v6;
        config.emulate_link = args.emulate_link.filter(|l| !l.is_off());
        let config_chaos = config.chaos;
        let link = config.emulate_link;
        let bootstrap = config.bootstrap.clone();
        let node = Node::start(config).await.context("starting the node")?;
        eprintln!(
            "chorus node {} listening on {}",
            node.me().id,
            node.me().addr
        );
        if !config_chaos.is_off() {
            eprintln!(
                "warning: chaos mode {}: this node lies on purpose (a testing aid; never on a grid you share)",
                config_chaos.names().join(", ")
            );
        }
        if let Some(link) = link {
            eprintln!("warning: emulated link {link}: every datagram this node sends is delayed or dropped (a testing aid)");
        }
        // Say whether the node found the ring, while waiting for a signal.
        {
            let report = report_join(&node, &bootstrap);
            tokio::pin!(report);
            let mut reported = false;
            loop {
                tokio::select! {
                    r = wait_for_signal() => { r?; break; }
                    _ = &mut report, if !reported => reported = true,
                }
            }
        }
        eprintln!("leaving the ring");
        node.leave().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// Prints, once, whether the node joined: "joined the ring through X;
/// successor Y", or "started a new ring" without `--bootstrap`; while no
/// bootstrap peer answers, a warning every 30 s (the node keeps retrying).
async fn report_join(node: &Node, bootstrap: &[SocketAddr]) {
    let me = node.me().clone();
    if bootstrap.is_empty() {
        eprintln!(
            "started a new ring (no --bootstrap): other nodes join with --bootstrap {}",
            me.addr
        );
        return;
    }
    let through = bootstrap
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let start = std::time::Instant::now();
    let mut warned = std::time::Duration::ZERO;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        if let Ok(view) = node.view().await
            && let Some(succ) = view.successors.iter().find(|p| p.id != me.id)
        {
            eprintln!(
                "joined the ring through {through}; successor {} at {}",
                succ.id, succ.addr
            );
            return;
        }
        let waited = start.elapsed();
        if waited >= warned + std::time::Duration::from_secs(if warned.is_zero() { 5 } else { 30 })
        {
            warned = waited;
            eprintln!(
                "warning: no bootstrap peer answered yet ({through}, {} s); running alone and retrying",
                waited.as_secs()
            );
        }
    }
}

async fn wait_for_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("waiting for SIGINT")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    Ok(())
}
