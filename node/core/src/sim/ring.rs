//! A deterministic many-node simulator for the Chord ring.
//!
//! Up to 10^5 [`RingNode<u32>`](RingNode) state machines live in one process;
//! the address of a node is its index. Messages travel through a priority queue
//! ordered by delivery time (then by send order), with a seeded uniform latency.
//! A request to a dead node comes back to the sender as a failure after the RPC
//! timeout. Every random choice comes from one seeded [`Rng`], so a seed replays
//! a run exactly: tests print it on failure.
//!
//! The oracle is the sorted list of live, joined nodes: the true owner of a key
//! is the first of them at or after the key. [`Sim::check_ring`] holds the ring
//! to that picture (strong, after repair), [`Sim::check_weak`] to Zave's
//! invariants that must hold even in the middle of churn.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap};

use serde::Serialize;

use crate::id::RingPos;
use crate::ring::{Config, Event, LookupId, Peer, Request, RequestId, Response, RingNode, Time};
use crate::rng::Rng;

/// Settings of a simulation.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The ring protocol configuration every node uses.
    pub ring: Config,
    /// The seed of the whole run.
    pub seed: u64,
    /// Smallest one-way latency, in ms. Default 10.
    pub min_latency: Time,
    /// Largest one-way latency, in ms. Default 50.
    pub max_latency: Time,
    /// After how long a request to a dead node fails at the sender, in ms.
    /// Default 500.
    pub rpc_timeout: Time,
    /// Whether nodes run their periodic maintenance (stabilize, fix fingers,
    /// check predecessor). Default true; false reproduces the Chord paper's
    /// "stabilization stopped" setting.
    pub maintenance: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            ring: Config::default(),
            seed: 1,
            min_latency: 10,
            max_latency: 50,
            rpc_timeout: 500,
            maintenance: true,
        }
    }
}

/// Lookup statistics, and the summary `chorus sim --json` prints.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// Live nodes when the lookups ran.
    pub nodes: usize,
    /// Nodes that are gone (crashed or left, churn included).
    pub failed_nodes: usize,
    /// Lookups run.
    pub lookups: u64,
    /// Mean remote hops per successful lookup.
    pub avg_hops: f64,
    /// 99th percentile of hops.
    pub p99_hops: u32,
    /// Largest hop count seen.
    pub max_hops: u32,
    /// ½·log2(nodes), the Chord paper's expected path length.
    pub half_log2_n: f64,
    /// Lookups that returned an owner other than the oracle's.
    pub wrong_owner: u64,
    /// Lookups that ended in an error.
    pub failed_lookups: u64,
    /// Mean RPC timeouts per lookup.
    pub timeouts: f64,
    /// Stabilize intervals run after the failure until the ring was whole
    /// again (0 without failure or repair).
    pub stabilize_rounds: u64,
    /// Churn rounds run before the lookups (filled in by the caller).
    pub churn_rounds: u64,
    /// Churn rounds after which [`Sim::check_weak`] failed (filled in by the
    /// caller).
    pub invariant_violations: u64,
    /// Whether the ring passed [`Sim::check_ring`] when the report was made.
    pub ring_ok: bool,
    /// Messages delivered during the whole run.
    pub messages: u64,
    /// Virtual time at the end, in ms.
    pub virtual_ms: Time,
    /// Wall-clock seconds (filled in by the caller).
    pub seconds: f64,
    /// Peak resident memory in MiB (filled in by the caller).
    pub peak_rss_mb: f64,
    /// Heap bytes of routing state per node (successor list and fingers).
    pub routing_bytes_per_node: f64,
    /// The seed that replays this run.
    pub seed: u64,
    /// The partition and its healing, when one was run (filled in by the
    /// caller from [`Sim::partition_and_heal`]).
    pub partition: Option<PartitionReport>,
}

/// What [`Sim::partition_and_heal`] saw: the split, each side's repair, and
/// how long the two rings took to become one again.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PartitionReport {
    /// Fraction of the live nodes put on the second side.
    pub fraction: f64,
    /// Live nodes on each side.
    pub sides: [usize; 2],
    /// Stabilize intervals the partition lasted.
    pub partition_rounds: u64,
    /// Whether each side was one consistent ring of its own when the
    /// partition healed (every successor and predecessor right within it).
    pub sides_whole_at_heal: bool,
    /// Sizes of the loops each side's best-successor graph (first successor
    /// on the same side) held when the partition healed: two entries when
    /// each side repaired into one ring; more when a side broke into loops.
    pub rings_at_heal: Vec<usize>,
    /// Stabilize intervals from the heal until the ring was one and
    /// consistent (or `max_rounds` if it never was).
    pub heal_rounds: u64,
    /// The same in virtual ms.
    pub heal_ms: Time,
    /// Whether the ring was one and consistent in the end.
    pub healed: bool,
    /// The violation left if it was not.
    pub error: Option<String>,
    /// Messages delivered during the partition.
    pub messages_partition: u64,
    /// Messages delivered from the heal until one ring.
    pub messages_heal: u64,
    /// Peers remembered per live node at the heal, on average.
    pub remembered_per_node: f64,
}

/// A broken ring invariant, with the node it was found at.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// A node's first successor is not the next live node.
    #[error("node {node} ({id}): successor {got:?}, expected {want}")]
    Successor {
        /// The node's address.
        node: u32,
        /// Its ring position.
        id: RingPos,
        /// Its first successor.
        got: Option<RingPos>,
        /// The next live node.
        want: RingPos,
    },
    /// A node's predecessor is not the previous live node.
    #[error("node {node} ({id}): predecessor {got:?}, expected {want}")]
    Predecessor {
        /// The node's address.
        node: u32,
        /// Its ring position.
        id: RingPos,
        /// Its predecessor.
        got: Option<RingPos>,
        /// The previous live node.
        want: RingPos,
    },
    /// Following successors from the first node does not visit every live node.
    #[error("following successors visits {visited} of {live} live nodes")]
    Unreachable {
        /// Nodes visited before coming back or hitting a dead end.
        visited: usize,
        /// Live nodes.
        live: usize,
    },
    /// A live node has no live entry in its successor list.
    #[error("node {node} ({id}) has no live successor")]
    NoLiveSuccessor {
        /// The node's address.
        node: u32,
        /// Its ring position.
        id: RingPos,
    },
    /// The best-successor graph has more than one cycle (their sizes).
    #[error("disjoint rings, of sizes {0:?}")]
    ManyRings(Vec<usize>),
    /// The ring goes around the circle more than once.
    #[error("the ring wraps the circle {0} times")]
    Unordered(u64),
    /// A live node is still joining (or joining again).
    #[error("node {node} ({id}) is still joining")]
    Joining {
        /// The node's address.
        node: u32,
        /// Its ring position.
        id: RingPos,
    },
    /// The ring holds no live member at all.
    #[error("no live members")]
    Empty,
}

/// The simulator. See the [module docs](self).
#[derive(Debug)]
pub struct Sim {
    cfg: SimConfig,
    rng: Rng,
    now: Time,
    nodes: Vec<Slot>,
    queue: BinaryHeap<Reverse<Entry>>,
    seq: u64,
    /// Live, joined nodes, sorted by ring position.
    live: Vec<(RingPos, u32)>,
    lookups: BTreeMap<(u32, LookupId), RingPos>,
    stats: Stats,
    messages: u64,
    /// While partitioned: the side of each node (by address; nodes born
    /// later are on side 0). Requests across sides fail as to a dead node.
    side: Option<Vec<bool>>,
}

impl Sim {
    /// An empty simulation.
    pub fn new(cfg: SimConfig) -> Self {
        let rng = Rng::new(cfg.seed);
        Sim {
            cfg,
            rng,
            now: 0,
            nodes: Vec::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            live: Vec::new(),
            lookups: BTreeMap::new(),
            stats: Stats::default(),
            messages: 0,
            side: None,
        }
    }

    /// A perfect ring of `n` nodes built directly from the oracle (every
    /// predecessor, successor list and finger exact), without running the join
    /// protocol: how the simulator reaches 10^5 nodes in seconds.
    pub fn oracle_ring(cfg: SimConfig, n: usize) -> Self {
        let mut sim = Sim::new(cfg);
        let ids = sim.fresh_ids(n);
        let mut sorted: Vec<(RingPos, u32)> = ids
            .iter()
            .enumerate()
            .map(|(a, id)| (*id, a as u32))
            .collect();
        sorted.sort_unstable();
        let r = sim.cfg.ring.successors.max(1);
        let peer = |k: usize| Peer {
            id: sorted[k % n].0,
            addr: sorted[k % n].1,
        };
        let mut slots: Vec<Option<Slot>> = (0..n).map(|_| None).collect();
        for k in 0..n {
            let me = peer(k);
            let succs: Vec<Peer<u32>> = (1..=r.min(n - 1)).map(|d| peer(k + d)).collect();
            let pred = (n > 1).then(|| peer(k + n - 1));
            let succ_id = succs.first().map_or(me.id, |s| s.id);
            let mut fingers = Vec::new();
            for i in 0..64u32 {
                let start = me.id.finger_start(i);
                if start.in_open_closed(me.id, succ_id) {
                    continue;
                }
                let j = sorted.partition_point(|(id, _)| *id < start);
                fingers.push((i, peer(j)));
            }
            let seed = sim.rng.next_u64();
            let addr = me.addr;
            let node = RingNode::with_state(me, sim.cfg.ring.clone(), seed, pred, succs, fingers);
            slots[addr as usize] = Some(Slot {
                node,
                alive: true,
                timer: None,
                boot: Vec::new(),
            });
        }
        sim.nodes = slots.into_iter().flatten().collect();
        sim.live = sorted;
        for a in 0..sim.nodes.len() as u32 {
            sim.flush(a);
        }
        sim
    }

    /// A ring of `n` nodes grown through the real join protocol: one node
    /// alone, then waves of joins (each wave a tenth of the ring, one wave per
    /// `wave` ms of virtual time), each via a random member. Returns once all
    /// have joined; call [`Sim::converge`] afterwards to let stabilize finish.
    pub fn joined_ring(cfg: SimConfig, n: usize, wave: Time) -> Self {
        let mut sim = Sim::new(cfg);
        if n == 0 {
            return sim;
        }
        sim.spawn(Vec::new());
        while sim.nodes.len() < n {
            let k = (sim.live.len() / 10).clamp(1, n - sim.nodes.len());
            for _ in 0..k {
                sim.spawn_joining();
            }
            let t = sim.now + wave;
            sim.run_until(t);
        }
        let deadline = sim.now + 600_000;
        while sim.live.len() < n && sim.now < deadline {
            let t = sim.now + wave;
            sim.run_until(t);
        }
        sim
    }

    /// Add a node that joins through three random live members (tried in
    /// turn), or starts alone if there is none. Returns its address.
    pub fn spawn_joining(&mut self) -> u32 {
        let boot: Vec<u32> = (0..3.min(self.live.len()))
            .map(|_| {
                let k = self.rng.below(self.live.len() as u64) as usize;
                self.live[k].1
            })
            .collect();
        self.spawn(boot)
    }

    /// Run until virtual time `t`, delivering everything due by then.
    pub fn run_until(&mut self, t: Time) {
        while let Some(Reverse(e)) = self.queue.peek() {
            if e.at > t {
                break;
            }
            let Some(Reverse(e)) = self.queue.pop() else {
                break;
            };
            self.now = self.now.max(e.at);
            self.dispatch(e.kind);
        }
        self.now = self.now.max(t);
    }

    /// Run stabilize intervals until [`Sim::check_ring`] passes, at most
    /// `max_rounds`; returns the rounds run, or the last violation.
    pub fn converge(&mut self, max_rounds: u64) -> Result<u64, Violation> {
        let step = self.cfg.ring.stabilize_interval.max(1);
        let mut last = self.check_ring();
        for round in 0..max_rounds {
            if last.is_ok() {
                return Ok(round);
            }
            let t = self.now + step;
            self.run_until(t);
            last = self.check_ring();
        }
        last.map(|()| max_rounds)
    }

    /// Crash `count` random live nodes at once (no leave messages). Returns
    /// their addresses.
    pub fn fail_random(&mut self, count: usize) -> Vec<u32> {
        let mut out = Vec::with_capacity(count);
        for _ in 0..count.min(self.live.len()) {
            let k = self.rng.below(self.live.len() as u64) as usize;
            let (_, a) = self.live.remove(k);
            self.nodes[a as usize].alive = false;
            out.push(a);
        }
        // Lookups started at a crashed node die with it; they are not counted.
        let before = self.lookups.len();
        self.lookups
            .retain(|(a, _), _| self.nodes[*a as usize].alive);
        self.stats.pending = self
            .stats
            .pending
            .saturating_sub((before - self.lookups.len()) as u64);
        out
    }

    /// Make one random live node leave gracefully. Returns its address.
    pub fn leave_random(&mut self) -> Option<u32> {
        if self.live.len() < 2 {
            return None;
        }
        let k = self.rng.below(self.live.len() as u64) as usize;
        let (_, a) = self.live.remove(k);
        let now = self.now;
        self.nodes[a as usize].node.leave(now);
        self.flush(a);
        // Its Leave messages are out; from now on it answers nothing.
        self.nodes[a as usize].alive = false;
        Some(a)
    }

    /// One round of churn: `joins` new nodes join through random members,
    /// `crashes` random members crash and `leaves` leave gracefully, all at the
    /// current instant; then the simulation runs for `duration` ms.
    pub fn churn(&mut self, joins: usize, crashes: usize, leaves: usize, duration: Time) {
        for _ in 0..joins {
            self.spawn_joining();
        }
        self.fail_random(crashes);
        for _ in 0..leaves {
            self.leave_random();
        }
        let t = self.now + duration;
        self.run_until(t);
    }

    /// Start a lookup of `key` at node `from`.
    pub fn start_lookup(&mut self, from: u32, key: RingPos) {
        let now = self.now;
        let Some(slot) = self.nodes.get_mut(from as usize) else {
            return;
        };
        let id = slot.node.lookup(now, key);
        self.lookups.insert((from, id), key);
        self.stats.pending += 1;
        self.flush(from);
    }

    /// Run `count` lookups of random keys from random live nodes, spread over
    /// one virtual second, and wait for them all. Results add to the report.
    pub fn run_lookups(&mut self, count: u64) {
        let per_ms = count.div_ceil(1000).max(1);
        let mut started = 0;
        while started < count && !self.live.is_empty() {
            for _ in 0..per_ms.min(count - started) {
                let k = self.rng.below(self.live.len() as u64) as usize;
                let from = self.live[k].1;
                let key = RingPos(self.rng.next_u64());
                self.start_lookup(from, key);
                started += 1;
            }
            let t = self.now + 1;
            self.run_until(t);
        }
        // Every lookup ends within max_hops round trips or timeouts.
        let bound = self.now
            + (u64::from(self.cfg.ring.max_hops) + 4)
                * 2
                * self.cfg.rpc_timeout.max(self.cfg.max_latency * 2);
        while self.stats.pending > 0 && self.now < bound {
            let t = self.now + 100;
            self.run_until(t);
        }
    }

    /// Split the network: a random `fraction` of the live nodes can no
    /// longer reach the others (requests across fail after the RPC timeout,
    /// as to a dead node). Returns the live nodes on each side.
    pub fn partition(&mut self, fraction: f64) -> [usize; 2] {
        let mut side = vec![false; self.nodes.len()];
        let k = ((self.live.len() as f64) * fraction.clamp(0.0, 1.0)).round() as usize;
        let mut members: Vec<u32> = self.live.iter().map(|(_, a)| *a).collect();
        for i in 0..k.min(members.len()) {
            let j = i + self.rng.below((members.len() - i) as u64) as usize;
            members.swap(i, j);
            side[members[i] as usize] = true;
        }
        self.side = Some(side);
        [
            self.live.len() - k.min(self.live.len()),
            k.min(self.live.len()),
        ]
    }

    /// Let messages cross between the sides again.
    pub fn heal(&mut self) {
        self.side = None;
    }

    /// The live nodes of each side of the partition (all on side 0 when
    /// there is none), sorted by ring position.
    pub fn sides(&self) -> [Vec<(RingPos, u32)>; 2] {
        let mut out = [Vec::new(), Vec::new()];
        for m in &self.live {
            out[usize::from(self.on_side_1(m.1))].push(*m);
        }
        out
    }

    /// The whole scenario of `chorus sim --partition`: split off `fraction`
    /// of the nodes for `rounds` stabilize intervals, heal, and run until
    /// [`Sim::check_ring`] passes or `max_rounds` intervals went by.
    pub fn partition_and_heal(
        &mut self,
        fraction: f64,
        rounds: u64,
        max_rounds: u64,
    ) -> PartitionReport {
        let step = self.cfg.ring.stabilize_interval.max(1);
        let sides = self.partition(fraction);
        let m0 = self.messages;
        let t = self.now + rounds * step;
        self.run_until(t);
        let [a, b] = self.sides();
        let sides_whole_at_heal =
            self.check_members(&a).is_ok() && (b.is_empty() || self.check_members(&b).is_ok());
        let mut rings_at_heal = self.loops(false);
        rings_at_heal.extend(self.loops(true));
        let remembered: usize = self
            .live
            .iter()
            .map(|(_, a)| self.nodes[*a as usize].node.remembered().count())
            .sum();
        self.heal();
        let m1 = self.messages;
        let t0 = self.now;
        let result = self.converge(max_rounds);
        PartitionReport {
            fraction,
            sides,
            partition_rounds: rounds,
            sides_whole_at_heal,
            rings_at_heal,
            heal_rounds: *result.as_ref().unwrap_or(&max_rounds),
            heal_ms: self.now - t0,
            healed: result.is_ok(),
            error: result.err().map(|v| v.to_string()),
            messages_partition: m1 - m0,
            messages_heal: self.messages - m1,
            remembered_per_node: remembered as f64 / self.live.len().max(1) as f64,
        }
    }

    /// Strong invariants: no live node is still joining, each live node's
    /// first successor is the next live node and its predecessor the previous
    /// one, and following successors from any node visits every live node.
    pub fn check_ring(&self) -> Result<(), Violation> {
        self.check_members(&self.live)
    }

    /// [`Sim::check_ring`] for the ring made of `live` alone (sorted by
    /// ring position): each side of a partition.
    fn check_members(&self, live: &[(RingPos, u32)]) -> Result<(), Violation> {
        let n = live.len();
        if n == 0 {
            return Err(Violation::Empty);
        }
        if let Some((a, s)) = self
            .nodes
            .iter()
            .enumerate()
            // A node all of whose bootstrap addresses are gone cannot join;
            // that is the scenario's doing, not the protocol's.
            .find(|(_, s)| s.alive && !s.node.joined() && s.boot.iter().any(|b| self.is_member(*b)))
        {
            return Err(Violation::Joining {
                node: a as u32,
                id: s.node.me().id,
            });
        }
        for (k, (id, a)) in live.iter().enumerate() {
            let node = &self.nodes[*a as usize].node;
            let want_succ = live[(k + 1) % n].0;
            let got = node.successors().first().map(|p| p.id);
            if got != Some(want_succ) {
                return Err(Violation::Successor {
                    node: *a,
                    id: *id,
                    got,
                    want: want_succ,
                });
            }
            let want_pred = live[(k + n - 1) % n].0;
            let got = node.predecessor().map(|p| p.id);
            let ok = got == Some(want_pred) || (n == 1 && got.is_none());
            if !ok {
                return Err(Violation::Predecessor {
                    node: *a,
                    id: *id,
                    got,
                    want: want_pred,
                });
            }
        }
        // Reachability, walking the nodes' own pointers.
        let start = live[0].1;
        let mut at = start;
        let mut visited = 0;
        loop {
            visited += 1;
            let slot = &self.nodes[at as usize];
            let Some(next) = slot.node.successors().first() else {
                break;
            };
            at = next.addr;
            if at == start || visited > n || !self.nodes[at as usize].alive {
                break;
            }
        }
        if visited != n || at != start {
            return Err(Violation::Unreachable { visited, live: n });
        }
        Ok(())
    }

    /// Zave's invariants, which must hold even during churn: every live joined
    /// node has a live successor in its list; following the first live
    /// successor from every node leads into one single ring; that ring goes
    /// around the circle exactly once (it is ordered).
    pub fn check_weak(&self) -> Result<(), Violation> {
        if self.live.is_empty() {
            return Err(Violation::Empty);
        }
        // best[a] = first live entry of a's successor list.
        let mut best: Vec<u32> = vec![u32::MAX; self.nodes.len()];
        for (id, a) in self.live.iter().filter(|(_, a)| self.is_member(*a)) {
            let node = &self.nodes[*a as usize].node;
            let b = node
                .successors()
                .iter()
                .find(|p| self.is_member(p.addr))
                .map(|p| p.addr);
            match b {
                Some(b) => best[*a as usize] = b,
                None => return Err(Violation::NoLiveSuccessor { node: *a, id: *id }),
            }
        }
        // Colour the functional graph: 0 unseen, 1 on the current path, 2 done.
        let mut colour = vec![0u8; self.nodes.len()];
        let mut cycles = 0usize;
        let mut cycle_sizes = Vec::new();
        let mut wraps = 0u64;
        let mut path = Vec::new();
        for (_, a) in self.live.iter().filter(|(_, a)| self.is_member(*a)) {
            let mut at = *a;
            path.clear();
            while colour[at as usize] == 0 {
                colour[at as usize] = 1;
                path.push(at);
                at = best[at as usize];
            }
            if colour[at as usize] == 1 {
                // A new cycle, starting at `at`.
                cycles += 1;
                let mut size = 0;
                let mut total: u128 = 0;
                let mut x = at;
                loop {
                    let y = best[x as usize];
                    let d = self.nodes[x as usize]
                        .node
                        .me()
                        .id
                        .distance_to(self.nodes[y as usize].node.me().id);
                    total += if d == 0 { 1u128 << 64 } else { u128::from(d) };
                    size += 1;
                    x = y;
                    if x == at {
                        break;
                    }
                }
                wraps = (total >> 64) as u64;
                cycle_sizes.push(size);
            }
            for p in &path {
                colour[*p as usize] = 2;
            }
        }
        if cycles == 0 {
            return Err(Violation::Empty);
        }
        if cycles != 1 {
            return Err(Violation::ManyRings(cycle_sizes));
        }
        if wraps != 1 {
            return Err(Violation::Unordered(wraps));
        }
        Ok(())
    }

    /// The summary of the lookups run so far.
    pub fn report(&self) -> Report {
        let s = &self.stats;
        let mut hops = s.hops.clone();
        hops.sort_unstable();
        let ok = hops.len() as f64;
        let n = self.live.len();
        let bytes: usize = self
            .live
            .iter()
            .map(|(_, a)| self.nodes[*a as usize].node.heap_bytes())
            .sum();
        Report {
            nodes: n,
            failed_nodes: self.nodes.len() - n,
            lookups: s.lookups,
            avg_hops: if ok > 0.0 {
                hops.iter().map(|h| f64::from(*h)).sum::<f64>() / ok
            } else {
                0.0
            },
            p99_hops: percentile(&hops, 0.99),
            max_hops: hops.last().copied().unwrap_or(0),
            half_log2_n: if n > 0 { (n as f64).log2() / 2.0 } else { 0.0 },
            wrong_owner: s.wrong_owner,
            failed_lookups: s.failed,
            timeouts: if s.lookups > 0 {
                s.timeouts as f64 / s.lookups as f64
            } else {
                0.0
            },
            stabilize_rounds: 0,
            churn_rounds: 0,
            invariant_violations: 0,
            ring_ok: self.check_ring().is_ok(),
            messages: self.messages,
            virtual_ms: self.now,
            seconds: 0.0,
            peak_rss_mb: 0.0,
            routing_bytes_per_node: if n > 0 {
                (bytes + n * std::mem::size_of::<Slot>()) as f64 / n as f64
            } else {
                0.0
            },
            seed: self.cfg.seed,
            partition: None,
        }
    }

    /// The first few wrong or failed lookups since the last reset, described.
    pub fn problems(&self) -> &[String] {
        &self.stats.problems
    }

    /// Forget the lookup statistics gathered so far.
    pub fn reset_stats(&mut self) {
        let pending = self.stats.pending;
        self.stats = Stats {
            pending,
            ..Stats::default()
        };
    }

    /// Switch periodic maintenance on or off for every node from now on.
    pub fn set_maintenance(&mut self, on: bool) {
        self.cfg.maintenance = on;
        if on {
            for a in 0..self.nodes.len() as u32 {
                self.flush(a);
            }
        }
    }

    /// The current virtual time.
    pub fn now(&self) -> Time {
        self.now
    }

    /// Live, joined nodes, sorted by ring position.
    pub fn live(&self) -> &[(RingPos, u32)] {
        &self.live
    }

    /// The node at address `a`.
    pub fn node(&self, a: u32) -> Option<&RingNode<u32>> {
        self.nodes.get(a as usize).map(|s| &s.node)
    }

    /// The true owner of `key` among the live, joined nodes.
    pub fn owner(&self, key: RingPos) -> Option<u32> {
        if self.live.is_empty() {
            return None;
        }
        // The first member at or after the key (a node that is joining
        // again is not a member).
        let n = self.live.len();
        let k = self.live.partition_point(|(id, _)| *id < key);
        (0..n)
            .map(|d| self.live[(k + d) % n].1)
            .find(|a| self.is_member(*a))
    }

    /// The configuration.
    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    // ---- internals ----

    /// The sizes of the loops that following each member's first successor
    /// on side `side` of the partition (not across it) runs into.
    fn loops(&self, side: bool) -> Vec<usize> {
        let member = |a: u32| self.is_member(a) && self.on_side_1(a) == side;
        let best = |a: u32| {
            self.nodes[a as usize]
                .node
                .successors()
                .iter()
                .find(|p| member(p.addr))
                .map(|p| p.addr)
        };
        // 0 unseen, 1 on the current path, 2 done.
        let mut colour = vec![0u8; self.nodes.len()];
        let mut sizes = Vec::new();
        let mut path = Vec::new();
        for (_, a) in self.live.iter().filter(|(_, a)| member(*a)) {
            let mut at = Some(*a);
            path.clear();
            while let Some(x) = at
                && colour[x as usize] == 0
            {
                colour[x as usize] = 1;
                path.push(x);
                at = best(x);
            }
            if let Some(x) = at
                && colour[x as usize] == 1
            {
                let mut size = 1;
                let mut y = best(x);
                while let Some(z) = y
                    && z != x
                {
                    size += 1;
                    y = best(z);
                }
                sizes.push(size);
            }
            for p in &path {
                colour[*p as usize] = 2;
            }
        }
        sizes
    }

    fn on_side_1(&self, a: u32) -> bool {
        self.side
            .as_ref()
            .is_some_and(|s| s.get(a as usize).copied().unwrap_or(false))
    }

    /// Whether a partition keeps `from` and `to` apart.
    fn cut(&self, from: u32, to: u32) -> bool {
        self.side.is_some() && self.on_side_1(from) != self.on_side_1(to)
    }

    fn is_member(&self, a: u32) -> bool {
        self.nodes
            .get(a as usize)
            .is_some_and(|s| s.alive && s.node.joined())
    }

    /// `n` distinct random ring positions.
    fn fresh_ids(&mut self, n: usize) -> Vec<RingPos> {
        let mut seen = std::collections::HashSet::with_capacity(n);
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let id = RingPos(self.rng.next_u64());
            if seen.insert(id) {
                out.push(id);
            }
        }
        out
    }

    fn spawn(&mut self, bootstrap: Vec<u32>) -> u32 {
        let a = self.nodes.len() as u32;
        let id = loop {
            let id = RingPos(self.rng.next_u64());
            if !self.nodes.iter().any(|s| s.node.me().id == id) {
                break id;
            }
        };
        let seed = self.rng.next_u64();
        let mut node = RingNode::new(Peer { id, addr: a }, self.cfg.ring.clone(), seed);
        let now = self.now;
        if !bootstrap.is_empty() {
            node.join(now, bootstrap.clone());
        }
        let joined = node.joined();
        self.nodes.push(Slot {
            node,
            alive: true,
            timer: None,
            boot: bootstrap,
        });
        if joined {
            self.mark_joined(a);
        }
        self.flush(a);
        a
    }

    fn mark_joined(&mut self, a: u32) {
        let id = self.nodes[a as usize].node.me().id;
        let k = self.live.partition_point(|(x, _)| *x < id);
        if self.live.get(k) != Some(&(id, a)) {
            self.live.insert(k, (id, a));
        }
    }

    fn latency(&mut self) -> Time {
        self.rng.range(self.cfg.min_latency, self.cfg.max_latency)
    }

    fn push(&mut self, at: Time, kind: Kind) {
        self.seq += 1;
        self.queue.push(Reverse(Entry {
            at,
            seq: self.seq,
            kind,
        }));
    }

    fn dispatch(&mut self, kind: Kind) {
        let now = self.now;
        match kind {
            Kind::Deliver {
                from,
                to,
                id,
                request,
                sent,
            } => {
                let alive = self.nodes.get(to as usize).is_some_and(|s| s.alive);
                if !alive || self.cut(from, to) {
                    let at = (sent + self.cfg.rpc_timeout).max(now);
                    self.push(at, Kind::Fail { to: from, id });
                    return;
                }
                self.messages += 1;
                let response = self.nodes[to as usize].node.handle_request(now, request);
                self.flush(to);
                let at = now + self.latency();
                self.push(
                    at,
                    Kind::Reply {
                        to: from,
                        id,
                        response,
                    },
                );
            }
            Kind::Reply { to, id, response } => {
                if !self.nodes[to as usize].alive {
                    return;
                }
                self.messages += 1;
                self.nodes[to as usize]
                    .node
                    .handle_response(now, id, response);
                self.flush(to);
            }
            Kind::Fail { to, id } => {
                if !self.nodes[to as usize].alive {
                    return;
                }
                self.nodes[to as usize].node.handle_failure(now, id);
                self.flush(to);
            }
            Kind::Timer { node, at } => {
                let slot = &mut self.nodes[node as usize];
                if !slot.alive || slot.timer != Some(at) || !self.cfg.maintenance {
                    return;
                }
                slot.timer = None;
                slot.node.handle_timeout(now);
                self.flush(node);
            }
        }
    }

    /// Collect a node's transmits and events, and re-arm its timer.
    fn flush(&mut self, a: u32) {
        let now = self.now;
        while let Some(t) = self.nodes[a as usize].node.poll_transmit() {
            let at = now + self.latency();
            self.push(
                at,
                Kind::Deliver {
                    from: a,
                    to: t.to,
                    id: t.id,
                    request: t.request,
                    sent: now,
                },
            );
        }
        while let Some(e) = self.nodes[a as usize].node.poll_event() {
            match e {
                Event::Lookup { id, result } => {
                    let Some(key) = self.lookups.remove(&(a, id)) else {
                        continue;
                    };
                    self.stats.pending = self.stats.pending.saturating_sub(1);
                    self.stats.lookups += 1;
                    match result {
                        Ok(done) => {
                            self.stats.timeouts += u64::from(done.timeouts);
                            self.stats.hops.push(done.hops);
                            let want = self.owner(key);
                            if want != Some(done.owner.addr) {
                                self.stats.wrong_owner += 1;
                                self.stats.note(format!(
                                    "t={} lookup of {key} from node {a}: owner {} ({}), expected {:?}",
                                    self.now, done.owner.addr, done.owner.id, want
                                ));
                            }
                        }
                        Err(e) => {
                            self.stats.failed += 1;
                            self.stats
                                .note(format!("t={} lookup of {key} from node {a}: {e}", self.now));
                        }
                    }
                }
                Event::Joined { .. } => {
                    if self.nodes[a as usize].alive {
                        self.mark_joined(a);
                    }
                }
                Event::NeighborsChanged | Event::PeerDropped(_) => {}
            }
        }
        if !self.cfg.maintenance {
            return;
        }
        let slot = &mut self.nodes[a as usize];
        if !slot.alive {
            return;
        }
        if let Some(t) = slot.node.poll_timeout()
            && slot.timer != Some(t)
        {
            slot.timer = Some(t);
            let at = t.max(now);
            // The entry remembers `t`, the timer it stands for.
            self.seq += 1;
            self.queue.push(Reverse(Entry {
                at,
                seq: self.seq,
                kind: Kind::Timer { node: a, at: t },
            }));
        }
    }
}

/// The `p` quantile of sorted `v` (0 when empty).
fn percentile(v: &[u32], p: f64) -> u32 {
    if v.is_empty() {
        return 0;
    }
    let k = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
    v[k]
}

#[derive(Debug)]
struct Slot {
    node: RingNode<u32>,
    alive: bool,
    /// The timer entry currently queued for this node.
    timer: Option<Time>,
    /// The bootstrap addresses it was given.
    boot: Vec<u32>,
}

#[derive(Debug, Default)]
struct Stats {
    lookups: u64,
    pending: u64,
    hops: Vec<u32>,
    timeouts: u64,
    wrong_owner: u64,
    failed: u64,
    /// The first few bad lookups, for diagnosis.
    problems: Vec<String>,
}

impl Stats {
    fn note(&mut self, problem: String) {
        if self.problems.len() < 10 {
            self.problems.push(problem);
        }
    }
}

#[derive(Debug)]
struct Entry {
    at: Time,
    seq: u64,
    kind: Kind,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

#[derive(Debug)]
enum Kind {
    Deliver {
        from: u32,
        to: u32,
        id: RequestId,
        request: Request<u32>,
        sent: Time,
    },
    Reply {
        to: u32,
        id: RequestId,
        response: Response<u32>,
    },
    Fail {
        to: u32,
        id: RequestId,
    },
    Timer {
        node: u32,
        at: Time,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            ..SimConfig::default()
        }
    }

    #[test]
    fn an_oracle_ring_is_whole_and_answers_right() {
        let mut sim = Sim::oracle_ring(cfg(3), 500);
        assert_eq!(sim.check_ring(), Ok(()));
        assert_eq!(sim.check_weak(), Ok(()));
        sim.run_lookups(500);
        let r = sim.report();
        assert_eq!((r.lookups, r.wrong_owner, r.failed_lookups), (500, 0, 0));
        assert!(r.avg_hops > 1.0 && r.avg_hops < r.half_log2_n + 1.0);
    }

    #[test]
    fn the_invariants_notice_a_failure_and_repair_fixes_it() {
        let mut sim = Sim::oracle_ring(cfg(4), 300);
        sim.fail_random(30);
        assert!(matches!(
            sim.check_ring(),
            Err(Violation::Successor { .. } | Violation::Predecessor { .. })
        ));
        let rounds = sim.converge(200).expect("repairs");
        assert!(rounds > 0);
        assert_eq!(sim.check_weak(), Ok(()));
    }

    #[test]
    fn a_small_ring_joins_and_leaves() {
        let mut sim = Sim::joined_ring(cfg(5), 50, 1000);
        assert_eq!(sim.live().len(), 50);
        sim.converge(100).expect("converges");
        for _ in 0..10 {
            sim.leave_random();
        }
        sim.converge(100).expect("heals after leaves");
        assert_eq!(sim.live().len(), 40);
        sim.run_lookups(200);
        assert_eq!(sim.report().wrong_owner, 0);
    }

    #[test]
    fn a_partitioned_ring_is_one_again_after_the_heal() {
        let mut sim = Sim::oracle_ring(cfg(11), 500);
        let r = sim.partition_and_heal(0.5, 30, 400);
        // Each side repaired into a ring of its own: plain Chord stops here.
        assert!(r.sides_whole_at_heal, "{r:?}");
        assert_eq!(r.rings_at_heal.len(), 2, "{r:?}");
        assert!(r.healed, "{r:?}");
        assert_eq!(sim.check_weak(), Ok(()));
        sim.run_lookups(500);
        let rep = sim.report();
        assert_eq!((rep.wrong_owner, rep.failed_lookups), (0, 0));

        // Plain Chord (no unification) stays split for good.
        let mut c = cfg(11);
        c.ring.merge_probe_interval = 0;
        let mut sim = Sim::oracle_ring(c, 500);
        let r = sim.partition_and_heal(0.5, 30, 100);
        assert!(!r.healed, "{r:?}");
        assert!(matches!(sim.check_weak(), Err(Violation::ManyRings(_))));
    }

    /// `chorus sim --nodes 10000 --partition 0.5 --partition-rounds 30`,
    /// without building the node: `cargo test -p chorus-core --release --
    /// --ignored --nocapture ten_thousand`.
    #[test]
    #[ignore = "measurement, a few seconds in release"]
    fn ten_thousand_nodes_split_in_half_heal() {
        let start = std::time::Instant::now();
        let mut sim = Sim::oracle_ring(cfg(1), 10_000);
        let r = sim.partition_and_heal(0.5, 30, 2000);
        eprintln!("{r:?} in {:.1} s", start.elapsed().as_secs_f64());
        assert!(r.healed, "{r:?}");
    }

    #[test]
    fn the_oracle_owner_wraps_round() {
        let sim = Sim::oracle_ring(cfg(6), 10);
        let (last, _) = *sim.live().last().unwrap();
        let (_, first_addr) = sim.live()[0];
        assert_eq!(sim.owner(RingPos(last.0.wrapping_add(1))), Some(first_addr));
        assert_eq!(sim.owner(sim.live()[3].0), Some(sim.live()[3].1));
    }

    #[test]
    fn the_same_seed_gives_the_same_run() {
        let run = |seed| {
            let mut sim = Sim::joined_ring(cfg(seed), 100, 1000);
            sim.run_lookups(100);
            let r = sim.report();
            (r.messages, r.virtual_ms, r.avg_hops.to_bits())
        };
        assert_eq!(run(9), run(9));
    }
}
