//! `chorus peers`: the capacity records a node knows.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use chorus_sdk::capacity::SignedCapacity;
use chorus_sdk::client::Client;
use serde_json::{Value, json};

use crate::capacity::now_ms;

/// Arguments of `chorus peers`.
#[derive(Debug, clap::Args)]
pub struct PeersArgs {
    /// The node to ask (HOST:PORT).
    #[arg(long, value_parser = super::addr::parse)]
    pub node: SocketAddr,
    /// Print a JSON array, one object per record.
    #[arg(long)]
    pub json: bool,
}

/// Runs `chorus peers`.
pub fn run(args: PeersArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let records = rt.block_on(async {
        let client = Client::connect(args.node)
            .await
            .with_context(|| format!("connecting to {}", args.node))?;
        let records = client.peers().await.context("asking for peers");
        client.close();
        records
    })?;
    let now = now_ms();
    if args.json {
        let all: Vec<Value> = records.iter().map(|r| peer_json(r, now)).collect();
        println!("{}", Value::Array(all));
    } else {
        println!(
            "{:<16}  {:<21}  {:<21}  {:>5}  {:>8}  {:>4}  {:>12}  {:>7}  version",
            "ring id", "address", "metrics", "cores", "mem MiB", "free", "fuel/s", "age ms"
        );
        for r in &records {
            let c = &r.record;
            println!(
                "{:<16}  {:<21}  {:<21}  {:>5}  {:>8}  {:>4}  {:>12}  {:>7}  {}",
                c.peer_id().ring_pos(),
                c.addr,
                c.metrics_addr.map_or("-".to_string(), |a| a.to_string()),
                c.cores,
                c.memory_mb,
                c.free_slots,
                c.fuel_per_sec,
                now.saturating_sub(c.timestamp_ms),
                c.version
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One capacity record as JSON, its age counted at `now_ms`.
pub fn peer_json(r: &SignedCapacity, now_ms: u64) -> Value {
    let c = &r.record;
    let peer = c.peer_id();
    json!({
        "id": peer.ring_pos().to_string(),
        "peer_id": hex::encode(peer.0),
        "addr": c.addr.to_string(),
        "metrics_addr": c.metrics_addr.map(|a| a.to_string()),
        "cores": c.cores,
        "memory_mb": c.memory_mb,
        "free_slots": c.free_slots,
        "fuel_per_sec": c.fuel_per_sec,
        "version": c.version,
        "age_ms": now_ms.saturating_sub(c.timestamp_ms),
    })
}

#[cfg(test)]
mod tests {
    use chorus_sdk::capacity::CapacityRecord;
    use chorus_sdk::identity::Identity;

    use super::*;

    #[test]
    fn a_record_shows_its_id_addresses_capacity_and_age() {
        let id = Identity::generate().unwrap();
        let record = CapacityRecord {
            public_key: [0; 32],
            addr: "127.0.0.1:7001".parse().unwrap(),
            metrics_addr: None,
            cores: 3,
            memory_mb: 4096,
            free_slots: 2,
            fuel_per_sec: 1_000_000,
            version: "0.1.0".into(),
            timestamp_ms: 1_000,
            ceiling: None,
        };
        let r = SignedCapacity::sign(record, &id).unwrap();
        let v = peer_json(&r, 1_250);
        assert_eq!(v["id"], id.ring_pos().to_string());
        assert_eq!(v["peer_id"], hex::encode(id.peer_id().0));
        assert_eq!(v["addr"], "127.0.0.1:7001");
        assert_eq!(v["metrics_addr"], Value::Null);
        assert_eq!(v["cores"], 3);
        assert_eq!(v["free_slots"], 2);
        assert_eq!(v["age_ms"], 250);
    }
}
