//! The Chord ring as a sans-IO state machine.
//!
//! [`RingNode`] keeps one node's routing state (predecessor, successor list,
//! finger table) and runs the maintenance protocol. It does no I/O and reads no
//! clock. The caller (the node's QUIC driver, or the simulator) follows this
//! order:
//!
//! 1. feed inputs: [`RingNode::handle_request`] for incoming RPCs (answered at
//!    once from local state), [`RingNode::handle_response`] /
//!    [`RingNode::handle_failure`] for the outcome of our own requests, and
//!    [`RingNode::handle_timeout`] when [`RingNode::poll_timeout`] says so;
//! 2. drain outputs: [`RingNode::poll_transmit`] until `None` (deliver each one
//!    and report its outcome with its [`RequestId`]), and
//!    [`RingNode::poll_event`] until `None`.
//!
//! The protocol is Chord with Zave's corrections: a successor list of `r`
//! entries, stabilize that confirms a new successor is alive before adopting it,
//! rectify (a notifying node replaces the predecessor only if it is closer or the
//! predecessor is dead), immediate removal of failed peers, and a graceful leave
//! that hands the leaver's neighbours over. Lookups are iterative: the asker
//! walks the hops and keeps a few fallback candidates, so a dead candidate costs
//! one timeout and the lookup goes on with the next one.

mod lookup;
mod maintenance;
mod membership;
mod merge;
mod messages;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fmt::Debug;
use std::hash::Hash;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::id::RingPos;
use crate::rng::Rng;

use self::lookup::LookupState;
use self::membership::JoinState;
use self::merge::MergeState;
pub use self::merge::{MERGE_BUDGET, MERGE_IN_FLIGHT, MERGE_PEERS, PROBE_FAILURES};
pub use self::messages::{
    Event, LookupDone, LookupError, LookupId, Peer, Request, RequestId, Response, Step, Transmit,
};

/// Milliseconds on a caller-chosen clock (the node uses ms since process start,
/// the simulator its virtual clock).
pub type Time = u64;

/// Trait alias for address types: the node uses `std::net::SocketAddr`, the
/// simulator `u32`.
pub trait Address:
    Clone + Eq + Hash + Debug + Serialize + DeserializeOwned + Send + 'static
{
}
impl<T: Clone + Eq + Hash + Debug + Serialize + DeserializeOwned + Send + 'static> Address for T {}

/// Tuning of the ring protocol.
///
/// The defaults suit a ring of up to about 10^5 volunteer nodes on the public
/// Internet with RTTs of tens of milliseconds.
#[derive(Clone, Debug)]
pub struct Config {
    /// Length `r` of the successor list. Default 8: the ring survives unless 8
    /// consecutive nodes fail within one repair period.
    pub successors: usize,
    /// Interval between stabilize rounds, in ms. Default 500.
    pub stabilize_interval: Time,
    /// Interval between finger repairs (one finger lookup per round), in ms.
    /// Default 250.
    pub fix_fingers_interval: Time,
    /// Interval between predecessor liveness checks, in ms. Default 1000.
    pub check_predecessor_interval: Time,
    /// How many fallback candidates a `FindSuccessor` reply carries. Default 4.
    pub lookup_candidates: usize,
    /// A lookup that needs more remote hops than this fails with
    /// [`LookupError::TooManyHops`]. Default 64 (a healthy ring of 10^5 nodes
    /// needs about 9 on average, 17 at most).
    pub max_hops: u32,
    /// Ask the owner a lookup found for its neighbours before reporting it:
    /// it must be alive, know its predecessor and hold the key between that
    /// predecessor and itself; otherwise fall back to the next live node of
    /// the last responder's successor list. Costs one round trip per lookup;
    /// catches owners that died since the last stabilize and hops that lie
    /// about who owns a key. Default true.
    pub verify_owner: bool,
    /// With `verify_owner`, also require the owner to claim the key: it
    /// knows its predecessor and the key lies between the two. Turn it off
    /// only where predecessors are stale by design (a simulation with
    /// stabilization stopped): after a predecessor dies, the true owner
    /// cannot claim the keys it inherited until stabilization repairs its
    /// predecessor. Default true.
    pub verify_owner_claim: bool,
    /// Delay before trying the next bootstrap address after a failed join, in
    /// ms. Default 1000.
    pub join_retry_interval: Time,
    /// Answer `FindSuccessor` with `Done` when the key falls anywhere in our
    /// successor list, not only in (me, successor]. Saves about one hop per
    /// lookup, but a node that joined less than `successors` stabilize rounds
    /// ago may be missed by nodes a few places before it. Default false.
    pub answer_from_successor_list: bool,
    /// How the maintenance intervals (stabilize, fix fingers, check
    /// predecessor) vary from one round to the next. Default
    /// [`Jitter::UpToTenthLate`].
    pub timer_jitter: Jitter,
    /// Interval between probes of remembered peers for a ring of their own
    /// (ring unification after a partition, see the `merge` module), in ms;
    /// 0 turns unification off. Default 2000: one `GetNeighbors` every two
    /// seconds, a quarter of what stabilize sends, and a 16-node ring split
    /// for 30 s is one again within a few probes of the links coming back.
    pub merge_probe_interval: Time,
    /// How many peers a node remembers to probe (peers dropped as failed,
    /// and a few seen in lookups). Default 32: about 0.8 KB a node in the
    /// simulator; a partition rarely takes more than the successor list and a
    /// dozen fingers away from a node.
    pub remembered_peers: usize,
}

/// How much a periodic maintenance interval varies, so that nodes do not run
/// in lock step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Jitter {
    /// Each interval `i` is drawn from `[i, 1.1·i]`: rounds come a little
    /// late, never early. The node's choice: the configured interval is a
    /// floor on the maintenance rate.
    #[default]
    UpToTenthLate,
    /// Each interval `i` is drawn uniformly from `[i·(1 − p), i·(1 + p)]`
    /// with `p = percent / 100` (at most 100): the mean stays `i`. The
    /// Chord paper's simulations (ToN 2003, section V-E) use 50: stabilize
    /// every 15 to 45 s, mean 30.
    Symmetric {
        /// Half the width of the range, in percent of the interval.
        percent: u8,
    },
}

impl Default for Config {
    fn default() -> Self {
        Config {
            successors: 8,
            stabilize_interval: 500,
            fix_fingers_interval: 250,
            check_predecessor_interval: 1000,
            lookup_candidates: 4,
            max_hops: 64,
            verify_owner: true,
            verify_owner_claim: true,
            join_retry_interval: 1000,
            answer_from_successor_list: false,
            timer_jitter: Jitter::default(),
            merge_probe_interval: 2000,
            remembered_peers: 32,
        }
    }
}

/// One node's Chord state machine. See the [module docs](self) for the calling
/// order.
#[derive(Debug)]
pub struct RingNode<A> {
    me: Peer<A>,
    config: Config,
    rng: Rng,
    predecessor: Option<Peer<A>>,
    /// Nearest first; never empty; `[me]` when alone, otherwise never holds `me`.
    successors: Vec<Peer<A>>,
    /// Finger entries whose start lies beyond the first successor, keyed by
    /// finger index and sorted by it. Fingers inside (me, successor] are the
    /// successor and are not stored, which keeps a node of a 10^5 ring to about
    /// 20 entries instead of 64.
    fingers: Vec<(u8, Peer<A>)>,
    next_finger: u8,
    pending: SmallMap<RequestId, Pending<A>>,
    lookups: SmallMap<u64, LookupState<A>>,
    transmits: VecDeque<Transmit<A>>,
    events: VecDeque<Event<A>>,
    next_request: u64,
    next_lookup: u64,
    timers: Timers,
    join: JoinState<A>,
    /// The bootstrap addresses of the last join, to join again if this node
    /// ever loses every peer it knew.
    bootstrap: Vec<A>,
    stabilizing: bool,
    fixing_finger: bool,
    checking_predecessor: bool,
    rectifying: bool,
    left: bool,
    /// Ring unification: remembered peers and merge checks.
    merge: MergeState<A>,
}

impl<A: Address> RingNode<A> {
    /// A node alone on its ring (successor = itself, no predecessor).
    pub fn new(me: Peer<A>, config: Config, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let timers = Timers {
            stabilize: rng.below(config.stabilize_interval.max(1)),
            fix_fingers: rng.below(config.fix_fingers_interval.max(1)),
            check_predecessor: rng.below(config.check_predecessor_interval.max(1)),
            merge_probe: rng.below(config.merge_probe_interval.max(1)),
            join_retry: None,
        };
        RingNode {
            successors: vec![me.clone()],
            me,
            config,
            rng,
            predecessor: None,
            fingers: Vec::new(),
            next_finger: 0,
            pending: SmallMap::default(),
            lookups: SmallMap::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            next_request: 1,
            next_lookup: 1,
            timers,
            join: JoinState::Idle,
            bootstrap: Vec::new(),
            stabilizing: false,
            fixing_finger: false,
            checking_predecessor: false,
            rectifying: false,
            left: false,
            merge: MergeState::default(),
        }
    }

    /// A node that already sits in a ring with the given state (used by the
    /// simulator's oracle builder, and by tests).
    ///
    /// `fingers` holds `(finger index, peer)` pairs; indices of 64 or more, and
    /// fingers whose start lies in (me, first successor], are ignored. `me` is
    /// removed from `successors`, which is cut to `config.successors`.
    pub fn with_state(
        me: Peer<A>,
        config: Config,
        seed: u64,
        predecessor: Option<Peer<A>>,
        successors: Vec<Peer<A>>,
        fingers: Vec<(u32, Peer<A>)>,
    ) -> Self {
        let mut node = RingNode::new(me, config, seed);
        node.predecessor = predecessor.filter(|p| p.id != node.me.id);
        node.set_successors(successors);
        for (i, p) in fingers {
            if let Ok(i) = u8::try_from(i)
                && i < 64
            {
                node.set_finger(i, p);
            }
        }
        node.join = JoinState::Joined;
        node
    }

    /// Answer an incoming request from local state only (never blocks, never
    /// panics).
    pub fn handle_request(&mut self, now: Time, request: Request<A>) -> Response<A> {
        let before = self.neighbor_ids();
        let response = match request {
            Request::FindSuccessor { key } => Response::FindSuccessor(self.step(key)),
            Request::GetNeighbors => Response::Neighbors {
                me: self.me.clone(),
                predecessor: self.predecessor.clone(),
                successors: self.successors.clone(),
            },
            Request::Notify { peer } => {
                self.rectify(now, peer);
                Response::Ack
            }
            Request::Ping => Response::Ack,
            Request::Leave {
                peer,
                predecessor,
                successors,
            } => {
                self.peer_left(peer, predecessor, successors);
                Response::Ack
            }
            Request::Merge { peers } => {
                self.merge_request(now, peers);
                Response::Ack
            }
        };
        self.note_neighbor_change(before);
        response
    }

    /// Like [`RingNode::handle_request`], for a request whose sender the
    /// transport authenticated as ring position `from`: a `Notify` or `Leave`
    /// that speaks for anybody else is answered but ignored, so a peer cannot
    /// make us adopt or drop a third node.
    pub fn handle_request_from(
        &mut self,
        now: Time,
        from: RingPos,
        request: Request<A>,
    ) -> Response<A> {
        match &request {
            Request::Notify { peer } | Request::Leave { peer, .. } if peer.id != from => {
                Response::Ack
            }
            _ => self.handle_request(now, request),
        }
    }

    /// The answer to one of our [`Transmit`]s. Unknown ids are ignored.
    pub fn handle_response(&mut self, now: Time, id: RequestId, response: Response<A>) {
        let Some(pending) = self.pending.remove(&id) else {
            return;
        };
        let before = self.neighbor_ids();
        match pending.purpose {
            Purpose::Lookup(lid) => self.lookup_response(now, lid, pending.target, response),
            Purpose::Stabilize => self.stabilize_response(now, pending.target, response),
            Purpose::StabilizeConfirm { successor, list } => {
                self.stabilizing = false;
                match (pending.target, response) {
                    (
                        Some(p),
                        Response::Neighbors {
                            me, successors: l, ..
                        },
                    ) if me.id == p.id => self.adopt_successor(now, p, l),
                    _ => self.adopt_successor(now, successor, list),
                }
            }
            Purpose::Notify | Purpose::Leave | Purpose::MergeSend => {}
            Purpose::CheckPredecessor => self.checking_predecessor = false,
            Purpose::Rectify { .. } => self.rectifying = false,
            Purpose::Probe => {
                let ok = matches!(
                    (&pending.target, &response),
                    (Some(t), Response::Neighbors { me, .. }) if me.id == t.id
                );
                self.probe_done(now, pending.target, ok);
            }
            Purpose::MergeOwner { candidate } => {
                self.merge_owner_done(now, pending.target, candidate, Some(response))
            }
            Purpose::MergeConfirm => self.merge_confirmed(now, pending.target, response),
        }
        self.note_neighbor_change(before);
    }

    /// One of our [`Transmit`]s failed (timeout, unreachable, bad answer): the
    /// target is dead for us. It is dropped at once from successors, fingers and
    /// predecessor, and lookups go on with their next candidate.
    pub fn handle_failure(&mut self, now: Time, id: RequestId) {
        let Some(pending) = self.pending.remove(&id) else {
            return;
        };
        let before = self.neighbor_ids();
        if let Some(target) = &pending.target {
            self.drop_peer(target.clone());
        }
        match pending.purpose {
            Purpose::Lookup(lid) => self.lookup_failure(now, lid, pending.target),
            Purpose::Stabilize => {
                self.stabilizing = false;
                // Try the next successor straight away rather than a round later.
                if !self.left && self.joined() {
                    self.stabilize(now);
                }
            }
            Purpose::StabilizeConfirm { successor, list } => {
                self.stabilizing = false;
                self.adopt_successor(now, successor, list);
            }
            Purpose::Notify | Purpose::Leave | Purpose::MergeSend | Purpose::MergeConfirm => {}
            Purpose::CheckPredecessor => self.checking_predecessor = false,
            Purpose::Rectify { candidate } => {
                self.rectifying = false;
                self.offer_predecessor(candidate);
            }
            Purpose::Probe => self.probe_done(now, pending.target, false),
            Purpose::MergeOwner { candidate } => {
                self.merge_owner_done(now, pending.target, candidate, None)
            }
        }
        self.rejoin_if_isolated();
        self.note_neighbor_change(before);
    }

    /// Run whatever periodic work is due (stabilize, fix fingers, check
    /// predecessor, join retry).
    pub fn handle_timeout(&mut self, now: Time) {
        if self.left {
            return;
        }
        let before = self.neighbor_ids();
        if let Some(t) = self.timers.join_retry
            && now >= t
        {
            self.timers.join_retry = None;
            self.try_join();
        }
        self.rejoin_if_isolated();
        if self.joined() {
            if now >= self.timers.stabilize {
                self.timers.stabilize =
                    now.saturating_add(self.jittered(self.config.stabilize_interval));
                self.stabilize(now);
            }
            if now >= self.timers.fix_fingers {
                self.timers.fix_fingers =
                    now.saturating_add(self.jittered(self.config.fix_fingers_interval));
                self.fix_fingers(now);
            }
            if now >= self.timers.check_predecessor {
                self.timers.check_predecessor =
                    now.saturating_add(self.jittered(self.config.check_predecessor_interval));
                self.check_predecessor();
            }
            let probe = self.config.merge_probe_interval;
            if probe > 0 && now >= self.timers.merge_probe {
                self.timers.merge_probe = now.saturating_add(self.jittered(probe));
                self.probe(now);
            }
        }
        self.note_neighbor_change(before);
    }

    /// When [`RingNode::handle_timeout`] should next be called (`None` after
    /// leaving).
    pub fn poll_timeout(&self) -> Option<Time> {
        if self.left {
            return None;
        }
        let maintenance = if self.joined() {
            let t = self
                .timers
                .stabilize
                .min(self.timers.fix_fingers)
                .min(self.timers.check_predecessor);
            if self.config.merge_probe_interval > 0 {
                Some(t.min(self.timers.merge_probe))
            } else {
                Some(t)
            }
        } else {
            None
        };
        match (maintenance, self.timers.join_retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next request to deliver.
    pub fn poll_transmit(&mut self) -> Option<Transmit<A>> {
        let t = self.transmits.pop_front();
        if t.is_none() && self.transmits.capacity() > 0 {
            self.transmits = VecDeque::new();
        }
        t
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event<A>> {
        let e = self.events.pop_front();
        if e.is_none() && self.events.capacity() > 0 {
            self.events = VecDeque::new();
        }
        e
    }

    /// This node.
    pub fn me(&self) -> &Peer<A> {
        &self.me
    }

    /// The predecessor, if known.
    pub fn predecessor(&self) -> Option<&Peer<A>> {
        self.predecessor.as_ref()
    }

    /// The successor list, nearest first. Never empty: just `[me]` when the
    /// node is alone.
    pub fn successors(&self) -> &[Peer<A>] {
        &self.successors
    }

    /// The first successor (`me` when alone).
    pub fn successor(&self) -> &Peer<A> {
        self.successors.first().unwrap_or(&self.me)
    }

    /// Distinct finger entries, in finger order. The first is the successor
    /// (every finger whose start lies in (me, successor]); empty when alone.
    pub fn fingers(&self) -> Vec<Peer<A>> {
        let mut out: Vec<Peer<A>> = Vec::with_capacity(self.fingers.len() + 1);
        let succ = self.successor();
        if succ.id != self.me.id {
            out.push(succ.clone());
        }
        for (_, p) in &self.fingers {
            if !out.iter().any(|q| q.id == p.id) {
                out.push(p.clone());
            }
        }
        out
    }

    /// The finger entry for index `i` (`None` when unknown or when it is the
    /// first successor).
    pub fn finger(&self, i: u32) -> Option<&Peer<A>> {
        let i = u8::try_from(i).ok()?;
        self.fingers
            .binary_search_by_key(&i, |(j, _)| *j)
            .ok()
            .map(|k| &self.fingers[k].1)
    }

    /// Whether the node has joined a ring (or was built with state, or never
    /// tried to join).
    pub fn joined(&self) -> bool {
        !matches!(self.join, JoinState::Joining { .. })
    }

    /// Whether [`RingNode::leave`] was called.
    pub fn has_left(&self) -> bool {
        self.left
    }

    /// Number of requests sent and not yet answered.
    pub fn pending_requests(&self) -> usize {
        self.pending.len()
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Heap bytes held by this node's routing state (not counting in-flight
    /// requests and lookups), for memory accounting.
    pub fn heap_bytes(&self) -> usize {
        self.successors.capacity() * std::mem::size_of::<Peer<A>>()
            + self.fingers.capacity() * std::mem::size_of::<(u8, Peer<A>)>()
            + self.merge.heap_bytes()
    }

    fn send(&mut self, target: Option<Peer<A>>, to: A, request: Request<A>, purpose: Purpose<A>) {
        let id = RequestId(self.next_request);
        self.next_request += 1;
        let to_id = target.as_ref().map(|p| p.id);
        self.pending.insert(id, Pending { target, purpose });
        self.transmits.push_back(Transmit {
            id,
            to,
            to_id,
            request,
        });
    }

    fn jittered(&mut self, interval: Time) -> Time {
        let interval = interval.max(1);
        match self.config.timer_jitter {
            Jitter::UpToTenthLate => interval.saturating_add(self.rng.below(interval / 10 + 1)),
            Jitter::Symmetric { percent } => {
                let half = interval.saturating_mul(u64::from(percent.min(100))) / 100;
                let lo = (interval - half).max(1);
                self.rng.range(lo, interval.saturating_add(half))
            }
        }
    }

    fn neighbor_ids(&self) -> (Option<RingPos>, RingPos) {
        (self.predecessor.as_ref().map(|p| p.id), self.successor().id)
    }

    fn note_neighbor_change(&mut self, before: (Option<RingPos>, RingPos)) {
        if self.neighbor_ids() != before {
            self.events.push_back(Event::NeighborsChanged);
        }
    }
}

/// A map for the handful of entries a node has in flight: a vector searched
/// linearly, which gives its memory back when it empties (10^5 simulated nodes
/// would otherwise each keep a B-tree node or a grown vector around).
#[derive(Debug)]
struct SmallMap<K, V>(Vec<(K, V)>);

impl<K, V> Default for SmallMap<K, V> {
    fn default() -> Self {
        SmallMap(Vec::new())
    }
}

impl<K: PartialEq, V> SmallMap<K, V> {
    fn insert(&mut self, k: K, v: V) {
        self.remove(&k);
        self.0.push((k, v));
    }

    fn remove(&mut self, k: &K) -> Option<V> {
        let i = self.0.iter().position(|(x, _)| x == k)?;
        let (_, v) = self.0.swap_remove(i);
        if self.0.is_empty() {
            self.0 = Vec::new();
        }
        Some(v)
    }

    fn get(&self, k: &K) -> Option<&V> {
        self.0.iter().find(|(x, _)| x == k).map(|(_, v)| v)
    }

    fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        self.0.iter_mut().find(|(x, _)| x == k).map(|(_, v)| v)
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

impl<K, V> IntoIterator for SmallMap<K, V> {
    type Item = (K, V);
    type IntoIter = std::vec::IntoIter<(K, V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

#[derive(Debug)]
struct Timers {
    stabilize: Time,
    fix_fingers: Time,
    check_predecessor: Time,
    merge_probe: Time,
    join_retry: Option<Time>,
}

#[derive(Debug)]
struct Pending<A> {
    /// The peer expected to answer (`None` for a bare bootstrap address).
    target: Option<Peer<A>>,
    purpose: Purpose<A>,
}

#[derive(Debug)]
enum Purpose<A> {
    /// A step of a lookup (`FindSuccessor`, or `Ping`/`GetNeighbors` while
    /// verifying the owner).
    Lookup(u64),
    /// `GetNeighbors` to the first successor.
    Stabilize,
    /// `GetNeighbors` to the successor's predecessor, which we adopt if it
    /// answers; otherwise we keep `successor` and its `list`.
    StabilizeConfirm {
        successor: Peer<A>,
        list: Vec<Peer<A>>,
    },
    Notify,
    CheckPredecessor,
    /// `Ping` to the predecessor; if it is dead, `candidate` replaces it.
    Rectify {
        candidate: Peer<A>,
    },
    Leave,
    /// `GetNeighbors` to a remembered peer: is it alive again?
    Probe,
    /// `GetNeighbors` to the owner of `candidate`'s id in our ring, for the
    /// owner's predecessor.
    MergeOwner {
        candidate: Peer<A>,
    },
    /// `GetNeighbors` to a merge candidate that belongs next to us: adopt it
    /// only once it answered.
    MergeConfirm,
    /// `Merge` to a node of another ring.
    MergeSend,
}
