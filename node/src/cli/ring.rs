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
    let view = match ask(args.node, Request::RingView)? {
        Response::RingView(v) => v,
        other => bail!("unexpected answer from {}: {other:?}", args.node),
    };
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
