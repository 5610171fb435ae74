//! `chorus node`: run a peer until SIGINT/SIGTERM, then leave gracefully.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::net::{Node, NodeConfig};

/// Arguments of `chorus node`.
#[derive(Debug, clap::Args)]
pub struct NodeArgs {
    /// UDP address to listen on (HOST:PORT).
    #[arg(long)]
    pub listen: SocketAddr,
    /// A live member to join through (repeatable; any one will do).
    #[arg(long)]
    pub bootstrap: Vec<SocketAddr>,
    /// Directory for the node key (created on first start, mode 0600) and state.
    #[arg(long, default_value = ".chorus")]
    pub data_dir: PathBuf,
    /// Address to announce to peers, if not the listen address.
    #[arg(long)]
    pub advertise: Option<SocketAddr>,
    /// Serve Prometheus `/metrics` and service discovery `/sd` over HTTP here (HOST:PORT).
    #[arg(long)]
    pub metrics: Option<SocketAddr>,
    /// Length of the successor list.
    #[arg(long, default_value_t = 8)]
    pub successors: usize,
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
        let node = Node::start(config).await.context("starting the node")?;
        eprintln!(
            "chorus node {} listening on {}",
            node.me().id,
            node.me().addr
        );
        wait_for_signal().await?;
        eprintln!("leaving the ring");
        node.leave().await;
        Ok(ExitCode::SUCCESS)
    })
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
