//! Shared helpers for the Chorus integration tests.
//!
//! [`TestNode`] runs one real node on its own tokio runtime, so that a test can
//! "kill -9" it: shutting the runtime down stops its endpoint and tasks without a
//! goodbye to anyone, as a crashed process would.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chorus_core::RingPos;
use chorus_node::net::{Node, NodeConfig};
use chorus_sdk::wire::RingView;

/// A node on its own runtime.
pub struct TestNode {
    /// The runtime the node's tasks run on.
    pub rt: tokio::runtime::Runtime,
    /// The node.
    pub node: Option<Node>,
    /// Its ring position.
    pub id: RingPos,
    /// Its address.
    pub addr: SocketAddr,
}

impl TestNode {
    /// Starts a node on 127.0.0.1 (any port) that joins through `bootstrap`.
    pub fn start(bootstrap: Vec<SocketAddr>) -> anyhow::Result<TestNode> {
        let mut config = NodeConfig::new(([127, 0, 0, 1], 0).into());
        config.bootstrap = bootstrap;
        Self::start_with(config)
    }

    /// Starts a node with a given config.
    pub fn start_with(config: NodeConfig) -> anyhow::Result<TestNode> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let node = rt.block_on(Node::start(config))?;
        Ok(TestNode {
            id: node.me().id,
            addr: node.me().addr,
            node: Some(node),
            rt,
        })
    }

    /// The node (panics if it was killed or left).
    pub fn node(&self) -> &Node {
        self.node.as_ref().expect("node is running")
    }

    /// Its current view of the ring.
    pub fn view(&self) -> anyhow::Result<RingView> {
        Ok(self.rt.block_on(self.node().view())?)
    }

    /// Crash: stop everything without telling anybody.
    pub fn kill(mut self) {
        std::mem::forget(self.node.take());
        self.rt.shutdown_background();
    }

    /// Graceful leave.
    pub fn leave(mut self) {
        if let Some(n) = self.node.take() {
            self.rt.block_on(n.leave());
        }
        self.rt.shutdown_background();
    }
}

/// The oracle: the owner of `key` among `ids` (the first id at or after it, wrapping).
pub fn true_owner(ids: &[RingPos], key: RingPos) -> RingPos {
    let mut sorted = ids.to_vec();
    sorted.sort();
    *sorted.iter().find(|id| **id >= key).unwrap_or(&sorted[0])
}

/// Whether every node's first successor and predecessor match the sorted ids.
pub fn ring_consistent(nodes: &[&TestNode]) -> Result<(), String> {
    let mut ids: Vec<RingPos> = nodes.iter().map(|n| n.id).collect();
    ids.sort();
    let n = ids.len();
    for node in nodes {
        let view = node.view().map_err(|e| e.to_string())?;
        let i = ids
            .binary_search(&node.id)
            .map_err(|_| "unknown id".to_string())?;
        let succ = ids[(i + 1) % n];
        let pred = ids[(i + n - 1) % n];
        let got_succ = view.successors.first().map(|p| p.id);
        if got_succ != Some(succ) {
            return Err(format!("{}: successor {got_succ:?}, want {succ}", node.id));
        }
        let got_pred = view.predecessor.as_ref().map(|p| p.id);
        if got_pred != Some(pred) {
            return Err(format!(
                "{}: predecessor {got_pred:?}, want {pred}",
                node.id
            ));
        }
    }
    Ok(())
}

/// Polls `check` every 100 ms until it passes or `limit` runs out; returns the time taken.
pub fn wait_until(
    limit: Duration,
    mut check: impl FnMut() -> Result<(), String>,
) -> Result<Duration, String> {
    let start = Instant::now();
    let mut last = String::new();
    for _ in 0..(limit.as_millis() / 100 + 1) {
        match check() {
            Ok(()) => return Ok(start.elapsed()),
            Err(e) => last = e,
        }
        if start.elapsed() > limit {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("not reached within {limit:?}: {last}"))
}
