//! What the grid and latency benchmarks share: a local ring to measure.

use std::time::Duration;

use chorus_node::net::{Node, NodeConfig};

/// A task that prints 8 bytes and returns: the least a task can do.
pub const TRIVIAL: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "chorus!\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 8))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;

/// Starts `n` nodes in this process, each on its own loopback host
/// 127.0.(i+1).1 (replicas go to distinct networks), one task slot each, and
/// waits (at most 60 s) for a consistent ring (every successor right) and
/// full capacity tables.
pub async fn start_ring(n: usize) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..n {
        let host = std::net::Ipv4Addr::new(127, 0, u8::try_from(i + 1).unwrap_or(1), 1);
        let mut c = NodeConfig::new((host, 0).into());
        c.cores = 1;
        if let Some(first) = nodes.first() {
            c.bootstrap = vec![first.me().addr];
        }
        nodes.push(Node::start(c).await.expect("node"));
    }
    let mut ids: Vec<_> = nodes.iter().map(|n| n.me().id).collect();
    ids.sort();
    for _ in 0..1200 {
        let mut ready = nodes.iter().all(|node| node.capacity().list().len() == n);
        for node in &nodes {
            let v = node.view().await.expect("view");
            let i = ids.iter().position(|x| *x == v.me.id).unwrap_or(0);
            ready &= v.successors.first().map(|p| p.id) == Some(ids[(i + 1) % ids.len()]);
        }
        if ready {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    nodes
}
