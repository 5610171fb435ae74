//! `chorus ring` and `chorus lookup`: ask a node about the ring.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use chorus_core::RingPos;
use chorus_sdk::wire::{Peer, Request, Response};
use serde_json::{Value, json};

use crate::rpc::call_node;

/// Arguments of `chorus ring`.
#[derive(Debug, clap::Args)]
pub struct RingArgs {
    /// The node to ask (HOST:PORT).
    #[arg(long, value_parser = super::addr::parse)]
    pub node: SocketAddr,
    /// First wait (up to --wait-s seconds) until the ring through this node
    /// has N members and is consistent: walking successors from it visits N
    /// distinct nodes and comes back, each the predecessor of the next.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub wait_for: Option<u32>,
    /// The most seconds --wait-for waits; then it fails (exit 1) saying
    /// what it saw.
    #[arg(long, value_name = "S", default_value_t = 60)]
    pub wait_s: u64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `chorus lookup`.
#[derive(Debug, clap::Args)]
pub struct LookupArgs {
    /// The node to start the lookup from (HOST:PORT).
    #[arg(long, value_parser = super::addr::parse)]
    pub node: SocketAddr,
    /// The ring position to resolve, 16 hex digits.
    pub key: RingPos,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `chorus ring`.
pub fn ring(args: RingArgs) -> anyhow::Result<ExitCode> {
    if let Some(n) = args.wait_for {
        wait_for(args.node, n as usize, Duration::from_secs(args.wait_s))?;
    }
    let view = view_of(args.node)?;
    if args.json {
        let v = json!({
            "id": view.me.id.to_string(),
            "addr": view.me.addr.to_string(),
            "predecessor": view.predecessor.as_ref().map(peer_json),
            "successors": view.successors.iter().map(peer_json).collect::<Vec<_>>(),
            "fingers": view.fingers.iter().map(peer_json).collect::<Vec<_>>(),
        });
        println!("{v}");
    } else {
        println!("node         {}  {}", view.me.id, view.me.addr);
        match &view.predecessor {
            Some(p) => println!("predecessor  {}  {}", p.id, p.addr),
            None => println!("predecessor  (none)"),
        }
        for (i, s) in view.successors.iter().enumerate() {
            println!("successor {i:<2} {}  {}", s.id, s.addr);
        }
        for f in &view.fingers {
            println!("finger       {}  {}", f.id, f.addr);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `chorus lookup`.
pub fn lookup(args: LookupArgs) -> anyhow::Result<ExitCode> {
    let answer = match ask(args.node, Request::Lookup { key: args.key })? {
        Response::Lookup(a) => a,
        other => bail!("unexpected answer from {}: {other:?}", args.node),
    };
    if args.json {
        let v = json!({
            "key": answer.key.to_string(),
            "owner": peer_json(&answer.owner),
            "hops": answer.hops,
        });
        println!("{v}");
    } else {
        println!(
            "key {} is owned by {} at {} ({} hops)",
            answer.key, answer.owner.id, answer.owner.addr, answer.hops
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn view_of(node: SocketAddr) -> anyhow::Result<chorus_sdk::wire::RingView> {
    match ask(node, Request::RingView)? {
        Response::RingView(v) => Ok(v),
        other => bail!("unexpected answer from {node}: {other:?}"),
    }
}

/// Polls (every half second, up to `limit`) until [`ring_of`] says the ring
/// through `node` has `n` consistent members.
fn wait_for(node: SocketAddr, n: usize, limit: Duration) -> anyhow::Result<()> {
    let start = std::time::Instant::now();
    loop {
        let why = match ring_of(node, n) {
            Ok(()) => return Ok(()),
            Err(e) => super::error_line(&e),
        };
        if start.elapsed() >= limit {
            bail!(
                "the ring through {node} has not become {n} consistent nodes in {} s: {why}",
                limit.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Whether walking first successors from `node` visits exactly `n`
/// distinct nodes and returns to it, each one the predecessor of the next.
fn ring_of(node: SocketAddr, n: usize) -> anyhow::Result<()> {
    let start = view_of(node)?;
    let mut view = start.clone();
    let mut count = 1;
    loop {
        let Some(next) = view.successors.first().filter(|s| s.id != view.me.id) else {
            bail!("{} has no successor yet", view.me.id);
        };
        let next_view = if next.id == start.me.id {
            start.clone()
        } else {
            view_of(next.addr)?
        };
        if next_view.predecessor.as_ref().map(|p| p.id) != Some(view.me.id) {
            bail!(
                "{}'s successor {} does not name it as predecessor yet",
                view.me.id,
                next.id
            );
        }
        if next.id == start.me.id {
            break;
        }
        count += 1;
        if count > n {
            bail!("more than {n} nodes on the ring");
        }
        view = next_view;
    }
    if count != n {
        bail!("{count} nodes on the ring, waiting for {n}");
    }
    Ok(())
}

/// A peer as the CLI prints it: `{"id": "<16 hex>", "addr": "HOST:PORT"}`.
pub fn peer_json(p: &Peer) -> Value {
    json!({"id": p.id.to_string(), "addr": p.addr.to_string()})
}

fn ask(node: SocketAddr, request: Request) -> anyhow::Result<Response> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let resp = rt
        .block_on(call_node(node, &request, Duration::from_secs(10)))
        .with_context(|| format!("asking {node}"))?;
    if let Response::Error(e) = resp {
        bail!("{node} answered with an error: {e}");
    }
    Ok(resp)
}
