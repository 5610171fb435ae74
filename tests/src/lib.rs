//! Shared helpers for the Chorus integration tests.
//!
//! [`TestNode`] runs one real node on its own tokio runtime, so that a test can
//! "kill -9" it: shutting the runtime down stops its endpoint and tasks without a
//! goodbye to anyone, as a crashed process would.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chorus_core::RingPos;
use chorus_core::jobs::Policy;
use chorus_node::net::{Node, NodeConfig};
use chorus_sdk::bundle::{Bundle, Manifest, VerifiedBundle};
use chorus_sdk::identity::Identity;
use chorus_sdk::job::{JobId, JobRequest, JobResponse, JobSpec, JobStatus, TaskResult};
use chorus_sdk::wire::{Request, Response, RingView, WireError};

/// The primes example's kernel compiled natively: what the grid's outputs
/// of the primes module are checked against.
#[path = "../../examples/primes/src/kernel.rs"]
pub mod primes;

pub mod netns;

/// `n` primes tasks counting primes in consecutive ranges of `width`.
pub fn prime_ranges(n: u64, width: u64) -> Vec<primes::Range> {
    (0..n)
        .map(|i| primes::Range {
            lo: 1_000_000 + i * width,
            hi: 1_000_000 + (i + 1) * width,
        })
        .collect()
}

/// A primes task's input: its range in MessagePack.
pub fn prime_input(r: &primes::Range) -> Vec<u8> {
    rmp_serde::to_vec(r).expect("encode")
}

/// The output the native kernel gives for `r`, encoded as the guest does.
pub fn prime_output(r: &primes::Range) -> Vec<u8> {
    rmp_serde::to_vec_named(&primes::count_primes(r).expect("native")).expect("encode")
}

/// The committed primes example module.
pub const PRIMES: &[u8] = include_bytes!("../../examples/wasm/primes.wasm");

/// The primes module signed into a bundle by `submitter`.
pub fn primes_bundle(submitter: &Identity) -> VerifiedBundle {
    Bundle::sign(
        Manifest::new("primes", "1", submitter.public_key()),
        PRIMES.to_vec(),
        submitter,
    )
    .expect("sign bundle")
}

/// The inputs of primes tasks over `ranges`.
pub fn primes_inputs(ranges: &[primes::Range]) -> Vec<Vec<u8>> {
    ranges.iter().map(prime_input).collect()
}

/// A primes job over `work` with `replicas` (quorum: a majority), signed by
/// `submitter`.
pub fn primes_job(
    submitter: &Identity,
    work: &[primes::Range],
    replicas: u32,
    nonce: u64,
) -> JobSpec {
    let policy = Policy::new(replicas, None, None).expect("policy");
    primes_spec(submitter, work, policy, nonce)
}

/// A signed job of primes tasks over `work` with `policy`, submitted by
/// `submitter` (its own bundle).
pub fn primes_spec(
    submitter: &Identity,
    work: &[primes::Range],
    policy: Policy,
    nonce: u64,
) -> JobSpec {
    JobSpec::new(
        &primes_bundle(submitter),
        primes_inputs(work),
        Some(policy),
        None,
        nonce,
    )
    .expect("spec")
    .sign(submitter)
    .expect("sign")
}

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

/// The next test "host": 127.0.N.1 with N counting 1..=250 and round again.
/// Each node of a test stands on its own host (its own /24), as volunteers
/// do: replica diversity and the capacity table's per-network cap count
/// networks, and all of 127.0.0.0/8 is loopback.
pub fn next_host() -> std::net::IpAddr {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) % 250 + 1;
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, n as u8, 1))
}

impl TestNode {
    /// Starts a node on its own host ([`next_host`], any port) that joins
    /// through `bootstrap`.
    pub fn start(bootstrap: Vec<SocketAddr>) -> anyhow::Result<TestNode> {
        let mut config = NodeConfig::new((next_host(), 0).into());
        config.bootstrap = bootstrap;
        Self::start_with(config)
    }

    /// Starts a node with a given config.
    pub fn start_with(config: NodeConfig) -> anyhow::Result<TestNode> {
        Self::start_as(config, None)
    }

    /// Starts a node with a given config and, if given, identity.
    pub fn start_as(
        config: NodeConfig,
        identity: Option<chorus_sdk::identity::Identity>,
    ) -> anyhow::Result<TestNode> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let node = match identity {
            Some(id) => rt.block_on(Node::start_with(config, id))?,
            None => rt.block_on(Node::start(config))?,
        };
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

    /// Graceful leave. When this returns the node's runtime is gone: every
    /// task it ran is dropped and its blocking work has finished (up to
    /// 30 s), so its data dir can be opened again by a restarted node.
    pub fn leave(mut self) {
        if let Some(n) = self.node.take() {
            self.rt.block_on(n.leave());
        }
        self.rt.shutdown_timeout(Duration::from_secs(30));
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

/// Starts `n` nodes on 127.0.0.1 in one ring (each joins through the first);
/// `config` may adjust each node's config by index. Waits until the ring is
/// consistent and every node knows every other node's capacity record.
pub fn start_cluster(
    n: usize,
    config: impl FnMut(usize, &mut NodeConfig),
) -> anyhow::Result<Vec<TestNode>> {
    start_cluster_as((0..n).map(|_| None).collect(), config)
}

/// [`start_cluster`] with one node per entry of `keys`, each with that
/// identity when given (tests that speak for a node with its own key).
pub fn start_cluster_as(
    keys: Vec<Option<chorus_sdk::identity::Identity>>,
    mut config: impl FnMut(usize, &mut NodeConfig),
) -> anyhow::Result<Vec<TestNode>> {
    let n = keys.len();
    let mut nodes: Vec<TestNode> = Vec::with_capacity(n);
    for (i, key) in keys.into_iter().enumerate() {
        let mut c = NodeConfig::new((next_host(), 0).into());
        c.cores = 1;
        if let Some(first) = nodes.first() {
            c.bootstrap = vec![first.addr];
        }
        config(i, &mut c);
        nodes.push(TestNode::start_as(c, key)?);
    }
    let refs: Vec<&TestNode> = nodes.iter().collect();
    wait_until(Duration::from_secs(60), || ring_consistent(&refs))
        .map_err(|e| anyhow::anyhow!("ring did not converge: {e}"))?;
    // Every record a table must come to hold: all of them, but at most
    // MAX_PER_PREFIX of the other nodes of one network. A node on a crowded
    // network (more than MAX_PER_PREFIX nodes, as the Sybil tests' colluders
    // are) is owed none of its own network's: the other networks' tables
    // keep only the first MAX_PER_PREFIX of them and relay only those, so a
    // crowded member learns the others only from those it speaks to itself,
    // which the ring's shape decides (CI saw a colluder wait 150 s for one).
    let network = |n: &TestNode| chorus_node::capacity::network_of(&n.addr);
    let expected = |me: usize| -> usize {
        let mine = network(&nodes[me]);
        let crowded = nodes.iter().filter(|o| network(o) == mine).count()
            > chorus_node::capacity::MAX_PER_PREFIX;
        let mut per_net: std::collections::HashMap<(bool, u128), usize> = Default::default();
        for (j, other) in nodes.iter().enumerate() {
            if j != me && !(crowded && network(other) == mine) {
                *per_net.entry(network(other)).or_default() += 1;
            }
        }
        1 + per_net
            .values()
            .map(|c| (*c).min(chorus_node::capacity::MAX_PER_PREFIX))
            .sum::<usize>()
    };
    // Records of nodes that are not ring neighbours arrive relayed, within
    // each sender's budget (16 new identities a minute): on a loaded
    // machine a record forgotten and relearned can wait for the next
    // minute's budget, so this waits past one window.
    wait_until(Duration::from_secs(150), || {
        for (i, node) in nodes.iter().enumerate() {
            let table = node.node().capacity().list();
            let known = table.len();
            let want = expected(i);
            if known < want {
                let ids: Vec<_> = table
                    .iter()
                    .map(|s| s.record.peer_id().ring_pos())
                    .collect();
                let missing: Vec<String> = nodes
                    .iter()
                    .filter(|o| !ids.contains(&o.id))
                    .map(|o| format!("{} at {}", o.id, o.addr))
                    .collect();
                return Err(format!(
                    "{} at {} knows {known} of {want} capacity records; lacks {}",
                    node.id,
                    node.addr,
                    missing.join(", ")
                ));
            }
        }
        Ok(())
    })
    .map_err(|e| anyhow::anyhow!("capacity records did not spread: {e}"))?;
    Ok(nodes)
}

/// One request to a node through a fresh client endpoint.
pub fn ask(addr: SocketAddr, req: &Request) -> Result<Response, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(chorus_node::net::call_node(
        addr,
        req,
        Duration::from_secs(60),
    ))
    .map_err(|e| e.to_string())
}

/// Submits a job through `addr`; returns its id or the node's error.
pub fn submit(addr: SocketAddr, spec: JobSpec) -> Result<JobId, WireError> {
    let req = Request::Job(JobRequest::Submit {
        spec: Box::new(spec),
        forwarded: false,
    });
    match ask(addr, &req) {
        Ok(Response::Job(JobResponse::Accepted { job, .. })) => Ok(job),
        Ok(Response::Error(e)) => Err(e),
        Ok(other) => Err(WireError::new(
            "test",
            format!("unexpected answer {other:?}"),
        )),
        Err(e) => Err(WireError::new("transport", e)),
    }
}

/// A job's status through `addr`.
pub fn status(addr: SocketAddr, job: JobId) -> Result<JobStatus, WireError> {
    match ask(
        addr,
        &Request::Job(JobRequest::Status {
            job,
            forwarded: false,
        }),
    ) {
        Ok(Response::Job(JobResponse::Status(s))) => Ok(*s),
        Ok(Response::Error(e)) => Err(e),
        Ok(other) => Err(WireError::new(
            "test",
            format!("unexpected answer {other:?}"),
        )),
        Err(e) => Err(WireError::new("transport", e)),
    }
}

/// Waits (polling through the nodes in `via`, in turn, like a client that
/// reconnects through any node) until the job is done, then fetches every
/// result page. Returns the final status and the results by task.
pub fn wait_for_results(
    via: &[SocketAddr],
    job: JobId,
    limit: Duration,
) -> Result<(JobStatus, BTreeMap<u32, TaskResult>), String> {
    let start = Instant::now();
    let mut turn = 0usize;
    let mut last = String::from("no answer yet");
    let done = loop {
        if start.elapsed() > limit {
            return Err(format!("job {job} not done within {limit:?}: {last}"));
        }
        let addr = via[turn % via.len()];
        match status(addr, job) {
            Ok(s) if s.done => break s,
            Ok(s) => {
                last = format!(
                    "{} of {} verified, {} failed",
                    s.verified, s.tasks, s.failed
                )
            }
            Err(e) => {
                last = format!("via {addr}: {e}");
                turn += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut results = BTreeMap::new();
    let mut from = 0u32;
    for _ in 0..100_000 {
        if start.elapsed() > limit {
            return Err(format!("results of {job} not fetched within {limit:?}"));
        }
        let addr = via[turn % via.len()];
        let req = Request::Job(JobRequest::Results {
            job,
            from,
            forwarded: false,
        });
        match ask(addr, &req) {
            Ok(Response::Job(JobResponse::Results(page))) => {
                for r in page.results {
                    results.insert(r.task, r.result);
                }
                match page.next {
                    Some(n) => from = n,
                    None => return Ok((done, results)),
                }
            }
            Ok(other) => {
                turn += 1;
                last = format!("{other:?}");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => {
                turn += 1;
                last = e;
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    Err(format!("results of {job}: too many pages ({last})"))
}

/// Kills the node `coordinator` of `nodes` (removing it) after checking that
/// `job` is still running there; returns how many tasks it had verified.
pub fn kill_running_coordinator(
    nodes: &mut Vec<TestNode>,
    coordinator: RingPos,
    job: JobId,
) -> u32 {
    let at = nodes
        .iter()
        .position(|n| n.id == coordinator)
        .expect("coordinator is one of ours");
    let dead = nodes.remove(at);
    let before = status(dead.addr, job).expect("status");
    assert!(
        !before.done,
        "the job was still running when its coordinator died"
    );
    dead.kill();
    before.verified
}

/// The `chorus` binary of this build (`target/<profile>/chorus`, beside the
/// test executable's `deps/`), built once per test process with the cargo
/// that runs the tests: `cargo test` builds the binary of no package a test
/// does not belong to. Panics with the build's error when it cannot be built.
pub fn chorus_bin() -> std::path::PathBuf {
    static BIN: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        // target/<profile>/deps/<test> -> target/<profile>
        let profile_dir = exe
            .parent()
            .and_then(|d| d.parent())
            .expect("target/<profile>");
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let target_dir = profile_dir.parent().expect("target dir");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = std::process::Command::new(cargo);
        // The whole workspace's features, as `cargo test --workspace` (the
        // README's command) resolves them: `-p chorus-node` alone resolves
        // chorus-sdk with fewer features and rebuilds the node (minutes).
        cmd.args(["build", "-q", "--workspace", "--bin", "chorus"])
            .arg("--target-dir")
            .arg(target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if release {
            cmd.arg("--release");
        }
        let status = cmd
            .status()
            .expect("running cargo build for the chorus binary");
        assert!(status.success(), "cargo build of the chorus binary failed");
        let bin = profile_dir.join("chorus");
        assert!(bin.exists(), "{} was not built", bin.display());
        bin
    })
    .clone()
}

/// A fresh directory under the system's temp dir
/// (`chorus-<prefix>-<pid>-<name>`), removed on drop. `.0` is its path.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    /// Creates it, removing what a crashed earlier run of the same process
    /// id may have left there.
    pub fn new(prefix: &str, name: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("chorus-{prefix}-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
