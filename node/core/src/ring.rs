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

use std::collections::VecDeque;
use std::fmt::Debug;
use std::hash::Hash;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::id::RingPos;
use crate::rng::Rng;

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

/// A node on the ring: where it sits and where it can be reached.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Peer<A> {
    /// Its ring position (derived from its public key).
    pub id: RingPos,
    /// Where to send it requests.
    pub addr: A,
}

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
    /// Ping the owner a lookup found before reporting it, and fall back to the
    /// next live node of the last responder's successor list if it is dead.
    /// Costs one round trip per lookup; catches owners that died since the last
    /// stabilize. Default false.
    pub verify_owner: bool,
    /// Delay before trying the next bootstrap address after a failed join, in
    /// ms. Default 1000.
    pub join_retry_interval: Time,
    /// Answer `FindSuccessor` with `Done` when the key falls anywhere in our
    /// successor list, not only in (me, successor]. Saves about one hop per
    /// lookup, but a node that joined less than `successors` stabilize rounds
    /// ago may be missed by nodes a few places before it. Default false.
    pub answer_from_successor_list: bool,
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
            verify_owner: false,
            join_retry_interval: 1000,
            answer_from_successor_list: false,
        }
    }
}

/// Identifies one of our outgoing requests; the driver hands it back with the
/// outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RequestId(pub u64);

/// Identifies a lookup started with [`RingNode::lookup`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LookupId(pub u64);

/// Ring RPC requests (serialized with rmp-serde by the node).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Request<A> {
    /// One iterative lookup step: who owns `key`, or who is closer to it?
    FindSuccessor {
        /// The key looked up.
        key: RingPos,
    },
    /// Predecessor and successor list, for stabilize.
    GetNeighbors,
    /// "I think I am your predecessor."
    Notify {
        /// The notifying node.
        peer: Peer<A>,
    },
    /// Are you alive?
    Ping,
    /// Graceful leave: the leaver hands over its neighbours.
    Leave {
        /// The leaving node.
        peer: Peer<A>,
        /// Its predecessor, for its successor to adopt.
        predecessor: Option<Peer<A>>,
        /// Its successor list, for its predecessor to splice in.
        successors: Vec<Peer<A>>,
    },
}

/// Ring RPC responses.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Response<A> {
    /// Answer to [`Request::FindSuccessor`].
    FindSuccessor(Step<A>),
    /// Answer to [`Request::GetNeighbors`].
    Neighbors {
        /// The responder itself.
        me: Peer<A>,
        /// Its predecessor, if it knows one.
        predecessor: Option<Peer<A>>,
        /// Its successor list, nearest first (just itself when it is alone).
        successors: Vec<Peer<A>>,
    },
    /// Answer to `Notify`, `Ping` and `Leave`.
    Ack,
}

/// One step of an iterative lookup.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Step<A> {
    /// The key is in (responder, its successor] (or, with
    /// `Config::answer_from_successor_list`, further along its successor list):
    /// `owner` is the first successor at or after the key.
    Done {
        /// The node responsible for the key.
        owner: Peer<A>,
    },
    /// Ask one of these next: the responder's closest preceding nodes of the
    /// key, best (closest to the key) first.
    Next {
        /// The candidates, best first.
        candidates: Vec<Peer<A>>,
    },
}

/// An outgoing request the driver must deliver.
///
/// `to_id` is the ring position the core expects to answer (`None` when only an
/// address is known, e.g. a bootstrap address): the driver pins the TLS identity
/// when it is `Some`.
#[derive(Clone, Debug)]
pub struct Transmit<A> {
    /// Hand this back with the outcome.
    pub id: RequestId,
    /// Where to send it.
    pub to: A,
    /// Who must answer, when known.
    pub to_id: Option<RingPos>,
    /// What to send.
    pub request: Request<A>,
}

/// Something the caller may want to know about.
#[derive(Clone, Debug)]
pub enum Event<A> {
    /// A lookup started with [`RingNode::lookup`] finished.
    Lookup {
        /// The lookup's id.
        id: LookupId,
        /// Its result.
        result: Result<LookupDone<A>, LookupError>,
    },
    /// The join completed: the successor is set.
    Joined {
        /// Our first successor.
        successor: Peer<A>,
    },
    /// Successor or predecessor changed (the node logs and counts these).
    NeighborsChanged,
    /// A peer was found dead (RPC failure) and removed from successor list,
    /// fingers and predecessor.
    PeerDropped(Peer<A>),
}

/// A successful lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LookupDone<A> {
    /// The key looked up.
    pub key: RingPos,
    /// The node responsible for it.
    pub owner: Peer<A>,
    /// Remote `FindSuccessor` steps taken (0 when answered locally).
    pub hops: u32,
    /// Requests of this lookup that failed (each cost one RPC timeout).
    pub timeouts: u32,
}

/// Why a lookup failed. The node's routing state keeps whatever it learned
/// (dead peers stay removed).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// Every candidate we knew of, or were told of, failed.
    #[error("no live candidates left")]
    NoLiveCandidates,
    /// The lookup needed more remote hops than `Config::max_hops`.
    #[error("lookup gave up after {0} hops")]
    TooManyHops(u32),
    /// This node left the ring before the lookup finished.
    #[error("the node left the ring")]
    Left,
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
}

impl<A: Address> RingNode<A> {
    /// A node alone on its ring (successor = itself, no predecessor).
    pub fn new(me: Peer<A>, config: Config, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let timers = Timers {
            stabilize: rng.below(config.stabilize_interval.max(1)),
            fix_fingers: rng.below(config.fix_fingers_interval.max(1)),
            check_predecessor: rng.below(config.check_predecessor_interval.max(1)),
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

    /// Start joining via bootstrap addresses: send `FindSuccessor(me.id)` to
    /// the first (`to_id` None); [`Event::Joined`] when the successor is set.
    /// On failure the next address is tried after `join_retry_interval`, round
    /// robin, until the join succeeds. An empty list leaves the node alone.
    pub fn join(&mut self, _now: Time, bootstrap: Vec<A>) {
        if self.left || bootstrap.is_empty() {
            return;
        }
        self.bootstrap = bootstrap.clone();
        self.join = JoinState::Joining {
            bootstrap,
            next: 0,
            in_flight: false,
            attempts_left: None,
        };
        self.try_join();
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
            Purpose::Notify | Purpose::Leave => {}
            Purpose::CheckPredecessor => self.checking_predecessor = false,
            Purpose::Rectify { .. } => self.rectifying = false,
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
            Purpose::Notify | Purpose::Leave => {}
            Purpose::CheckPredecessor => self.checking_predecessor = false,
            Purpose::Rectify { candidate } => {
                self.rectifying = false;
                self.offer_predecessor(candidate);
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
            Some(
                self.timers
                    .stabilize
                    .min(self.timers.fix_fingers)
                    .min(self.timers.check_predecessor),
            )
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

    /// Start an iterative lookup; the result comes as [`Event::Lookup`]. If the
    /// key is in (me, successor] (or in (predecessor, me]) the lookup completes
    /// without RPCs (hops 0) but still produces the event.
    pub fn lookup(&mut self, now: Time, key: RingPos) -> LookupId {
        let id = LookupId(self.next_lookup);
        self.next_lookup += 1;
        if self.left {
            self.events.push_back(Event::Lookup {
                id,
                result: Err(LookupError::Left),
            });
        } else {
            self.start_lookup(now, key, LookupKind::User(id));
        }
        id
    }

    /// Graceful leave: `Leave` transmits to predecessor and successor; the node
    /// then stops maintenance and fails its running lookups with
    /// [`LookupError::Left`].
    pub fn leave(&mut self, _now: Time) {
        if self.left {
            return;
        }
        self.left = true;
        let request = Request::Leave {
            peer: self.me.clone(),
            predecessor: self.predecessor.clone(),
            successors: self.successors.clone(),
        };
        let succ = self.successor().clone();
        if succ.id != self.me.id {
            self.send(
                Some(succ.clone()),
                succ.addr.clone(),
                request.clone(),
                Purpose::Leave,
            );
        }
        if let Some(p) = self.predecessor.clone()
            && p.id != self.me.id
            && p.id != succ.id
        {
            self.send(Some(p.clone()), p.addr, request, Purpose::Leave);
        }
        for (_, l) in std::mem::take(&mut self.lookups) {
            if let LookupKind::User(id) = l.kind {
                self.events.push_back(Event::Lookup {
                    id,
                    result: Err(LookupError::Left),
                });
            }
        }
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
    }

    // ---- lookups ----

    /// The local answer to `FindSuccessor(key)`.
    fn step(&self, key: RingPos) -> Step<A> {
        if self.successor().id == self.me.id && !matches!(self.join, JoinState::Idle) {
            // Not in a ring right now (joining, or cut off and joining again):
            // claiming every key would pull the asker onto our island.
            return Step::Next {
                candidates: Vec::new(),
            };
        }
        if let Some(owner) = self.local_owner(key) {
            return Step::Done { owner };
        }
        Step::Next {
            candidates: self.closest_preceding(key, self.config.lookup_candidates.max(1)),
        }
    }

    /// The owner of `key` if it is known without asking anyone.
    fn local_owner(&self, key: RingPos) -> Option<Peer<A>> {
        // (me, successor] is ours to answer; when alone that is the whole
        // circle and the successor is us.
        let mut prev = self.me.id;
        let depth = if self.config.answer_from_successor_list {
            self.successors.len()
        } else {
            1
        };
        for s in self.successors.iter().take(depth) {
            if key.in_open_closed(prev, s.id) {
                return Some(s.clone());
            }
            prev = s.id;
        }
        if let Some(p) = &self.predecessor
            && key.in_open_closed(p.id, self.me.id)
        {
            return Some(self.me.clone());
        }
        None
    }

    /// Up to `n` known nodes in (me, key), closest to `key` first.
    fn closest_preceding(&self, key: RingPos, n: usize) -> Vec<Peer<A>> {
        let mut c: Vec<&Peer<A>> = self
            .successors
            .iter()
            .chain(self.fingers.iter().map(|(_, p)| p))
            .filter(|p| p.id.in_open(self.me.id, key))
            .collect();
        c.sort_by_key(|p| p.id.distance_to(key));
        c.dedup_by_key(|p| p.id);
        c.into_iter().take(n).cloned().collect()
    }

    fn start_lookup(&mut self, now: Time, key: RingPos, kind: LookupKind) {
        let lid = self.next_lookup;
        self.next_lookup += 1;
        let mut state = LookupState {
            key,
            kind,
            queue: Vec::new(),
            dead: Vec::new(),
            last: None,
            widened_self: false,
            hops: 0,
            timeouts: 0,
            phase: Phase::Routing,
        };
        if let Some(owner) = self.local_owner(key) {
            self.lookups.insert(lid, state);
            self.found_owner(now, lid, None, owner);
            return;
        }
        state.queue = self.closest_preceding(key, MAX_QUEUE);
        self.lookups.insert(lid, state);
        self.lookup_advance(now, lid);
    }

    /// Send the next routing step of lookup `lid`, or finish it if nobody is left.
    fn lookup_advance(&mut self, now: Time, lid: u64) {
        let Some(l) = self.lookups.get_mut(&lid) else {
            return;
        };
        if l.hops >= self.config.max_hops {
            let hops = l.hops;
            self.finish_lookup(now, lid, Err(LookupError::TooManyHops(hops)));
            return;
        }
        let key = l.key;
        let mut next = None;
        while !l.queue.is_empty() {
            let c = l.queue.remove(0);
            if !l.dead.contains(&c.id) && c.id != self.me.id {
                next = Some(c);
                break;
            }
        }
        if let Some(r) = l.last.clone()
            && !l.dead.contains(&r.id)
            && next
                .as_ref()
                .is_none_or(|c| c.id.distance_to(key) > r.id.distance_to(key))
        {
            // Every candidate the last responder gave us is dead, and whatever
            // is left lies behind it: its successor list gets us past the gap.
            if let Some(c) = next {
                l.queue.insert(0, c);
            }
            l.last = None;
            l.hops += 1;
            l.phase = Phase::Widen {
                responder: r.clone(),
            };
            self.send(
                Some(r.clone()),
                r.addr,
                Request::GetNeighbors,
                Purpose::Lookup(lid),
            );
            return;
        }
        if let Some(c) = next {
            l.phase = Phase::Routing;
            self.send(
                Some(c.clone()),
                c.addr,
                Request::FindSuccessor { key },
                Purpose::Lookup(lid),
            );
            return;
        }
        if !l.widened_self {
            // Out of candidates: our own successor list is the last resort.
            l.widened_self = true;
            let (rest, before) =
                split_list(self.me.id, key, self.successors.iter().cloned(), &l.dead);
            if !rest.is_empty() {
                self.verify_next(now, lid, rest, before);
                return;
            }
            if !before.is_empty() {
                l.queue = before;
                self.lookup_advance(now, lid);
                return;
            }
        }
        self.finish_lookup(now, lid, Err(LookupError::NoLiveCandidates));
    }

    fn lookup_response(
        &mut self,
        now: Time,
        lid: u64,
        target: Option<Peer<A>>,
        response: Response<A>,
    ) {
        let Some(l) = self.lookups.get_mut(&lid) else {
            return;
        };
        match (&mut l.phase, response) {
            (Phase::Routing, Response::FindSuccessor(Step::Done { owner })) => {
                l.hops += 1;
                self.found_owner(now, lid, target, owner);
            }
            (Phase::Routing, Response::FindSuccessor(Step::Next { candidates })) => {
                l.hops += 1;
                l.last = target.clone();
                let me = self.me.id;
                let key = l.key;
                let mut fresh: Vec<Peer<A>> = candidates
                    .into_iter()
                    // Only nodes strictly between the responder and the key make
                    // progress; anything else is stale or hostile.
                    .filter(|c| match &target {
                        Some(t) => c.id.in_open(t.id, key),
                        None => c.id != key,
                    })
                    .filter(|c| c.id != me && !l.dead.contains(&c.id))
                    .take(MAX_QUEUE)
                    .collect();
                fresh.sort_by_key(|c| c.id.distance_to(key));
                fresh.append(&mut l.queue);
                let mut seen: Vec<RingPos> = Vec::with_capacity(fresh.len());
                fresh.retain(|c| {
                    let new = !seen.contains(&c.id);
                    seen.push(c.id);
                    new
                });
                fresh.truncate(MAX_QUEUE);
                l.queue = fresh;
                self.lookup_advance(now, lid);
            }
            (Phase::Widen { responder }, Response::Neighbors { me, successors, .. })
                if me.id == responder.id =>
            {
                let (rest, mut before) = split_list(responder.id, l.key, successors, &l.dead);
                if rest.is_empty() {
                    before.append(&mut l.queue);
                    before.truncate(MAX_QUEUE);
                    l.queue = before;
                    self.lookup_advance(now, lid);
                } else {
                    // Its list reaches past the key, behind dead entries it does
                    // not know about yet: the owner is the first live one there.
                    self.verify_next(now, lid, rest, before);
                }
            }
            (Phase::Verify { .. }, Response::Ack) => {
                let Phase::Verify { owner, .. } = std::mem::replace(&mut l.phase, Phase::Routing)
                else {
                    return;
                };
                let done = self.done(lid, owner);
                self.finish_lookup(now, lid, done);
            }
            (
                Phase::AskResponder { responder, closer },
                Response::Neighbors { me, successors, .. },
            ) if me.id == responder.id => {
                // The owner we were given is dead: the key's owner is the first
                // live node of this list at or after the key. If the list ends
                // before that, its last node before the key knows further.
                let (rest, mut before) = split_list(responder.id, l.key, successors, &l.dead);
                // Nodes before the key, closest to it first, then the older ones.
                before.append(closer);
                before.truncate(MAX_QUEUE);
                self.verify_next(now, lid, rest, before);
            }
            _ => {
                // An answer that does not fit the question: treat the peer as
                // faulty, exactly like a failure.
                if let Some(t) = &target {
                    self.drop_peer(t.clone());
                }
                self.lookup_failure(now, lid, target);
            }
        }
    }

    fn lookup_failure(&mut self, now: Time, lid: u64, target: Option<Peer<A>>) {
        let Some(l) = self.lookups.get_mut(&lid) else {
            return;
        };
        l.timeouts += 1;
        if let Some(t) = &target {
            l.dead.push(t.id);
        }
        match std::mem::replace(&mut l.phase, Phase::Routing) {
            Phase::Routing => {
                if matches!(l.kind, LookupKind::Join) && target.is_none() {
                    // The bootstrap address itself failed.
                    self.finish_lookup(now, lid, Err(LookupError::NoLiveCandidates));
                } else {
                    self.lookup_advance(now, lid);
                }
            }
            Phase::Verify { then, .. } => match then {
                Then::Ask(r) => self.ask_neighbors(lid, r, Vec::new()),
                Then::Fallback { rest, closer } => self.verify_next(now, lid, rest, closer),
            },
            Phase::AskResponder { closer, .. } if !closer.is_empty() => {
                self.verify_next(now, lid, Vec::new(), closer)
            }
            Phase::AskResponder { .. } | Phase::Widen { .. } => self.lookup_advance(now, lid),
        }
    }

    /// Routing reached `owner`, named by `responder` (`None`: known locally).
    fn found_owner(&mut self, now: Time, lid: u64, responder: Option<Peer<A>>, owner: Peer<A>) {
        let Some(l) = self.lookups.get_mut(&lid) else {
            return;
        };
        // A joining node always confirms its successor is alive (Zave: adopt
        // a successor only once it answered); user lookups when configured.
        let verify = owner.id != self.me.id
            && match l.kind {
                LookupKind::User(_) => self.config.verify_owner,
                LookupKind::Join => true,
                LookupKind::Finger(_) => false,
            };
        if !verify {
            let done = self.done(lid, owner);
            self.finish_lookup(now, lid, done);
            return;
        }
        let then = match responder {
            Some(r) => Then::Ask(r),
            None => {
                // Known locally: our own successor list is the fallback.
                let key = l.key;
                let me = self.me.id;
                let rest = self
                    .successors
                    .iter()
                    .filter(|s| s.id != owner.id && key.in_open_closed(me, s.id))
                    .cloned()
                    .collect();
                let closer = self
                    .successors
                    .iter()
                    .rev()
                    .filter(|s| s.id.in_open(me, key))
                    .cloned()
                    .collect();
                Then::Fallback { rest, closer }
            }
        };
        l.phase = Phase::Verify {
            owner: owner.clone(),
            then,
        };
        self.send(
            Some(owner.clone()),
            owner.addr,
            Request::Ping,
            Purpose::Lookup(lid),
        );
    }

    /// Ping the first live node of `rest` as the owner; when none is left, ask
    /// the first live node of `closer` (nodes before the key, closest first)
    /// for its successor list; fail when there is no such node either.
    fn verify_next(
        &mut self,
        now: Time,
        lid: u64,
        mut rest: Vec<Peer<A>>,
        mut closer: Vec<Peer<A>>,
    ) {
        let Some(l) = self.lookups.get_mut(&lid) else {
            return;
        };
        rest.retain(|c| !l.dead.contains(&c.id));
        closer.retain(|c| !l.dead.contains(&c.id));
        if rest.is_empty() {
            if closer.is_empty() {
                self.finish_lookup(now, lid, Err(LookupError::NoLiveCandidates));
            } else {
                let c = closer.remove(0);
                self.ask_neighbors(lid, c, closer);
            }
            return;
        }
        let owner = rest.remove(0);
        if owner.id == self.me.id {
            // We are the first live node at or after the key.
            let done = self.done(lid, owner);
            self.finish_lookup(now, lid, done);
            return;
        }
        l.phase = Phase::Verify {
            owner: owner.clone(),
            then: Then::Fallback { rest, closer },
        };
        self.send(
            Some(owner.clone()),
            owner.addr,
            Request::Ping,
            Purpose::Lookup(lid),
        );
    }

    /// Ask `r` for its successor list, to find the owner past a dead one;
    /// `closer` are the nodes to ask after it.
    fn ask_neighbors(&mut self, lid: u64, r: Peer<A>, closer: Vec<Peer<A>>) {
        let Some(l) = self.lookups.get_mut(&lid) else {
            return;
        };
        l.phase = Phase::AskResponder {
            responder: r.clone(),
            closer,
        };
        self.send(
            Some(r.clone()),
            r.addr,
            Request::GetNeighbors,
            Purpose::Lookup(lid),
        );
    }

    fn done(&self, lid: u64, owner: Peer<A>) -> Result<LookupDone<A>, LookupError> {
        let (key, hops, timeouts) = self
            .lookups
            .get(&lid)
            .map_or((RingPos(0), 0, 0), |l| (l.key, l.hops, l.timeouts));
        Ok(LookupDone {
            key,
            owner,
            hops,
            timeouts,
        })
    }

    fn finish_lookup(&mut self, now: Time, lid: u64, result: Result<LookupDone<A>, LookupError>) {
        let Some(l) = self.lookups.remove(&lid) else {
            return;
        };
        match l.kind {
            LookupKind::User(id) => self.events.push_back(Event::Lookup { id, result }),
            LookupKind::Join => self.join_done(now, result),
            LookupKind::Finger(i) => {
                self.fixing_finger = false;
                if let Ok(done) = result {
                    self.finger_found(i, done.owner);
                }
            }
        }
    }

    // ---- join and leave ----

    fn try_join(&mut self) {
        let JoinState::Joining {
            bootstrap,
            next,
            in_flight,
            ..
        } = &mut self.join
        else {
            return;
        };
        if *in_flight || bootstrap.is_empty() {
            return;
        }
        let addr = bootstrap[*next % bootstrap.len()].clone();
        *next = (*next + 1) % bootstrap.len();
        *in_flight = true;
        let lid = self.next_lookup;
        self.next_lookup += 1;
        let key = self.me.id;
        self.lookups.insert(
            lid,
            LookupState {
                key,
                kind: LookupKind::Join,
                queue: Vec::new(),
                dead: Vec::new(),
                last: None,
                widened_self: false,
                hops: 0,
                timeouts: 0,
                phase: Phase::Routing,
            },
        );
        self.send(
            None,
            addr,
            Request::FindSuccessor { key },
            Purpose::Lookup(lid),
        );
    }

    fn join_done(&mut self, now: Time, result: Result<LookupDone<A>, LookupError>) {
        let JoinState::Joining {
            in_flight,
            attempts_left,
            ..
        } = &mut self.join
        else {
            return;
        };
        *in_flight = false;
        let give_up = result.is_err() && *attempts_left == Some(1);
        if let Some(n) = attempts_left {
            *n = n.saturating_sub(1);
        }
        if give_up {
            // Every bootstrap address failed twice: carry on alone, ready to be
            // joined by others (the last survivor of a ring ends up here).
            self.join = JoinState::Idle;
            return;
        }
        match result {
            Ok(done) if done.owner.id != self.me.id => {
                self.join = JoinState::Joined;
                self.predecessor = None;
                self.set_successors(vec![done.owner.clone()]);
                self.events.push_back(Event::Joined {
                    successor: done.owner,
                });
                // Fill the successor list and tell the successor about us now.
                self.timers.stabilize =
                    now.saturating_add(self.jittered(self.config.stabilize_interval));
                self.stabilize(now);
            }
            _ => {
                // Failed, or the ring says we own our own id (a stale entry of a
                // previous life of ours): try again later.
                self.timers.join_retry = Some(now.saturating_add(self.config.join_retry_interval));
            }
        }
    }

    /// A neighbour told us it is leaving.
    fn peer_left(&mut self, peer: Peer<A>, predecessor: Option<Peer<A>>, successors: Vec<Peer<A>>) {
        if peer.id == self.me.id {
            return;
        }
        if self.successor().id == peer.id {
            let mut list: Vec<Peer<A>> = successors
                .into_iter()
                .filter(|p| p.id != peer.id && p.id != self.me.id)
                .collect();
            list.extend(self.successors.iter().skip(1).cloned());
            // The leaver's list is nearest first from it, so it is nearest first
            // from us too; drop anything that would wrap past us.
            self.set_successors(list);
        } else {
            self.successors.retain(|p| p.id != peer.id);
            if self.successors.is_empty() {
                self.successors.push(self.me.clone());
            }
        }
        if self.predecessor.as_ref().is_some_and(|p| p.id == peer.id) {
            self.predecessor = predecessor.filter(|p| p.id != self.me.id && p.id != peer.id);
        }
        self.fingers.retain(|(_, p)| p.id != peer.id);
    }

    /// A joined node that lost every peer it knew (successors, fingers,
    /// predecessor) is an island: join again through the bootstrap addresses.
    fn rejoin_if_isolated(&mut self) {
        let isolated = matches!(self.join, JoinState::Joined)
            && !self.left
            && self.successor().id == self.me.id
            && self.predecessor.is_none()
            && self.fingers.is_empty()
            && !self.bootstrap.is_empty();
        if isolated {
            let bootstrap = self.bootstrap.clone();
            let attempts = 2 * bootstrap.len();
            self.join = JoinState::Joining {
                bootstrap,
                next: 0,
                in_flight: false,
                attempts_left: Some(attempts),
            };
            self.try_join();
        }
    }

    // ---- maintenance ----

    fn stabilize(&mut self, _now: Time) {
        if self.stabilizing || self.left {
            return;
        }
        let succ = self.successor().clone();
        if succ.id == self.me.id {
            // Alone: a predecessor means somebody joined behind us; it is also
            // our successor (the two-node ring).
            if let Some(p) = self.predecessor.clone() {
                self.set_successors(vec![p.clone()]);
                self.notify(p);
            }
            return;
        }
        self.stabilizing = true;
        self.send(
            Some(succ.clone()),
            succ.addr,
            Request::GetNeighbors,
            Purpose::Stabilize,
        );
    }

    fn stabilize_response(&mut self, now: Time, target: Option<Peer<A>>, response: Response<A>) {
        self.stabilizing = false;
        let Some(succ) = target else { return };
        let Response::Neighbors {
            me,
            predecessor,
            successors,
        } = response
        else {
            self.drop_peer(succ);
            self.stabilize(now);
            return;
        };
        if me.id != succ.id {
            self.drop_peer(succ);
            return;
        }
        // The successor's predecessor, or any node of its list, that lies
        // between us and it is a better successor; take the closest. (The list
        // case matters after a node fell back to a far successor: the list of
        // that successor wraps round to our true neighbours.)
        let me_id = self.me.id;
        let closer = predecessor
            .into_iter()
            .chain(successors.iter().cloned())
            .filter(|p| p.id.in_open(me_id, succ.id))
            .min_by_key(|p| me_id.distance_to(p.id));
        if let Some(p) = closer {
            // Zave: adopt a new successor only once we know it is alive.
            self.stabilizing = true;
            self.send(
                Some(p.clone()),
                p.addr,
                Request::GetNeighbors,
                Purpose::StabilizeConfirm {
                    successor: me,
                    list: successors,
                },
            );
            return;
        }
        self.adopt_successor(now, me, successors);
    }

    /// Make `succ` our first successor, followed by its list, and notify it.
    fn adopt_successor(&mut self, _now: Time, succ: Peer<A>, list: Vec<Peer<A>>) {
        if succ.id == self.me.id {
            return;
        }
        let mut all = Vec::with_capacity(list.len() + 1);
        all.push(succ.clone());
        all.extend(list);
        self.set_successors(all);
        self.notify(succ);
    }

    fn notify(&mut self, to: Peer<A>) {
        let request = Request::Notify {
            peer: self.me.clone(),
        };
        self.send(Some(to.clone()), to.addr, request, Purpose::Notify);
    }

    /// A node says it is our predecessor (Zave's rectify).
    fn rectify(&mut self, _now: Time, peer: Peer<A>) {
        if peer.id == self.me.id || self.left {
            return;
        }
        if self.successor().id == self.me.id {
            // We were alone: the notifier is also our successor.
            self.set_successors(vec![peer.clone()]);
        }
        match self.predecessor.clone() {
            None => self.predecessor = Some(peer),
            Some(p) if p.id == peer.id => {}
            Some(p) if peer.id.in_open(p.id, self.me.id) => self.predecessor = Some(peer),
            Some(p) => {
                // Farther than the predecessor we have: take it only if ours is dead.
                if !self.rectifying {
                    self.rectifying = true;
                    self.send(
                        Some(p.clone()),
                        p.addr,
                        Request::Ping,
                        Purpose::Rectify { candidate: peer },
                    );
                }
            }
        }
    }

    fn offer_predecessor(&mut self, candidate: Peer<A>) {
        if candidate.id == self.me.id {
            return;
        }
        match &self.predecessor {
            None => self.predecessor = Some(candidate),
            Some(p) if candidate.id.in_open(p.id, self.me.id) => self.predecessor = Some(candidate),
            _ => {}
        }
    }

    fn check_predecessor(&mut self) {
        if self.checking_predecessor {
            return;
        }
        if let Some(p) = self.predecessor.clone() {
            self.checking_predecessor = true;
            self.send(
                Some(p.clone()),
                p.addr,
                Request::Ping,
                Purpose::CheckPredecessor,
            );
        }
    }

    fn fix_fingers(&mut self, now: Time) {
        if self.fixing_finger {
            return;
        }
        let succ = self.successor().id;
        if succ == self.me.id {
            self.fingers.clear();
            return;
        }
        for _ in 0..64 {
            let i = self.next_finger;
            self.next_finger = (i + 1) % 64;
            let start = self.me.id.finger_start(u32::from(i));
            if start.in_open_closed(self.me.id, succ) {
                self.remove_finger(i);
                continue;
            }
            self.fixing_finger = true;
            self.start_lookup(now, start, LookupKind::Finger(i));
            return;
        }
    }

    /// Finger `i` is `owner`; so are the following fingers whose start lies
    /// before it.
    fn finger_found(&mut self, i: u8, owner: Peer<A>) {
        if owner.id == self.me.id {
            self.remove_finger(i);
            return;
        }
        let reach = self.me.id.distance_to(owner.id);
        let mut j = i;
        while j < 64 {
            let start = self.me.id.finger_start(u32::from(j));
            if j > i && self.me.id.distance_to(start) > reach {
                break;
            }
            self.set_finger(j, owner.clone());
            j += 1;
        }
        if j > i + 1 {
            self.next_finger = j % 64;
        }
    }

    fn set_finger(&mut self, i: u8, p: Peer<A>) {
        if p.id == self.me.id
            || self
                .me
                .id
                .finger_start(u32::from(i))
                .in_open_closed(self.me.id, self.successor().id)
        {
            self.remove_finger(i);
            return;
        }
        match self.fingers.binary_search_by_key(&i, |(j, _)| *j) {
            Ok(k) => self.fingers[k].1 = p,
            Err(k) => self.fingers.insert(k, (i, p)),
        }
    }

    fn remove_finger(&mut self, i: u8) {
        if let Ok(k) = self.fingers.binary_search_by_key(&i, |(j, _)| *j) {
            self.fingers.remove(k);
        }
    }

    // ---- state helpers ----

    /// Replace the successor list. The first entry (the node we just heard
    /// from) stays first; the others are kept only if they lie after it and
    /// before us, sorted by distance from us, without duplicates, cut to `r`.
    /// Sorting rather than trusting the order keeps a stale or hostile entry
    /// from cutting the list short. `[me]` if nothing is left.
    fn set_successors(&mut self, list: Vec<Peer<A>>) {
        let r = self.config.successors.max(1);
        let me = self.me.id;
        let mut it = list.into_iter().skip_while(|p| p.id == me);
        let mut out: Vec<Peer<A>> = Vec::with_capacity(r);
        if let Some(first) = it.next() {
            let first_id = first.id;
            out.push(first);
            let mut rest: Vec<Peer<A>> = it.filter(|p| p.id.in_open(first_id, me)).collect();
            rest.sort_by_key(|p| me.distance_to(p.id));
            rest.dedup_by_key(|p| p.id);
            out.extend(rest.into_iter().take(r - 1));
        }
        if out.is_empty() {
            out.push(self.me.clone());
        }
        self.successors = out;
        // Fingers inside (me, successor] are implied by the successor.
        let succ = self.successor().id;
        if succ != self.me.id {
            let me = self.me.id;
            self.fingers
                .retain(|(i, _)| !me.finger_start(u32::from(*i)).in_open_closed(me, succ));
        }
    }

    /// Remove a dead peer everywhere; emits [`Event::PeerDropped`] if we held it.
    fn drop_peer(&mut self, peer: Peer<A>) {
        if peer.id == self.me.id {
            return;
        }
        let mut found = false;
        let before = self.successors.len();
        self.successors.retain(|p| p.id != peer.id);
        found |= self.successors.len() != before;
        let before = self.fingers.len();
        self.fingers.retain(|(_, p)| p.id != peer.id);
        found |= self.fingers.len() != before;
        if self.predecessor.as_ref().is_some_and(|p| p.id == peer.id) {
            self.predecessor = None;
            found = true;
        }
        if self.successors.is_empty() {
            // The whole list is gone: the nearest finger is the best successor
            // we know of; stabilize walks back from there.
            match self.fingers.first() {
                Some((_, f)) => {
                    let f = f.clone();
                    self.successors.push(f);
                }
                None => self.successors.push(self.me.clone()),
            }
        }
        if found {
            self.events.push_back(Event::PeerDropped(peer));
        }
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
        interval.saturating_add(self.rng.below(interval / 10 + 1))
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

/// Longest fallback queue a lookup keeps.
const MAX_QUEUE: usize = 16;

/// Splits `start`'s successor list around `key`: the live entries at or after
/// the key (in ring order: the first is the owner), and those before it
/// (closest to the key first). Both are cut to `MAX_QUEUE`.
fn split_list<A>(
    start: RingPos,
    key: RingPos,
    list: impl IntoIterator<Item = Peer<A>>,
    dead: &[RingPos],
) -> (Vec<Peer<A>>, Vec<Peer<A>>) {
    let mut rest = Vec::new();
    let mut before = Vec::new();
    for s in list {
        if s.id == start || dead.contains(&s.id) {
            continue;
        }
        if s.id.in_open(start, key) {
            before.push(s);
        } else if key.in_open_closed(start, s.id) && rest.len() < MAX_QUEUE {
            rest.push(s);
        }
    }
    before.reverse();
    before.truncate(MAX_QUEUE);
    (rest, before)
}

#[derive(Debug)]
struct Timers {
    stabilize: Time,
    fix_fingers: Time,
    check_predecessor: Time,
    join_retry: Option<Time>,
}

#[derive(Debug)]
enum JoinState<A> {
    /// Never asked to join: alone, maintaining itself.
    Idle,
    Joining {
        bootstrap: Vec<A>,
        next: usize,
        in_flight: bool,
        /// Attempts left before settling for being alone (`None`: forever).
        attempts_left: Option<usize>,
    },
    Joined,
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
}

#[derive(Debug, Clone, Copy)]
enum LookupKind {
    User(LookupId),
    Join,
    Finger(u8),
}

#[derive(Debug)]
struct LookupState<A> {
    key: RingPos,
    kind: LookupKind,
    /// Fallback candidates, closest to the key first.
    queue: Vec<Peer<A>>,
    /// Peers that failed during this lookup.
    dead: Vec<RingPos>,
    /// The last node that answered `Next`, until its successor list was asked.
    last: Option<Peer<A>>,
    /// Whether our own successor list was tried after the queue ran dry.
    widened_self: bool,
    hops: u32,
    timeouts: u32,
    phase: Phase<A>,
}

#[derive(Debug)]
enum Phase<A> {
    /// A `FindSuccessor` is out (or about to be).
    Routing,
    /// `GetNeighbors` to `responder`, all of whose candidates were dead.
    Widen { responder: Peer<A> },
    /// Pinging `owner`; if it is dead, do `then`.
    Verify { owner: Peer<A>, then: Then<A> },
    /// `GetNeighbors` to `responder`, whose list should hold the key's owner.
    AskResponder {
        responder: Peer<A>,
        closer: Vec<Peer<A>>,
    },
}

/// What to do when the owner a lookup found does not answer its ping.
#[derive(Debug)]
enum Then<A> {
    /// Ask the node that named it for its successor list.
    Ask(Peer<A>),
    /// Try these in turn, then ask `closer` (nodes before the key, closest
    /// first) for their successor lists.
    Fallback {
        rest: Vec<Peer<A>>,
        closer: Vec<Peer<A>>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(id: u64) -> Peer<u32> {
        Peer {
            id: RingPos(id),
            addr: id as u32,
        }
    }

    fn node(me: u64, pred: Option<u64>, succs: &[u64], fingers: &[(u32, u64)]) -> RingNode<u32> {
        RingNode::with_state(
            peer(me),
            Config::default(),
            7,
            pred.map(peer),
            succs.iter().copied().map(peer).collect(),
            fingers.iter().map(|(i, p)| (*i, peer(*p))).collect(),
        )
    }

    fn transmits(n: &mut RingNode<u32>) -> Vec<Transmit<u32>> {
        std::iter::from_fn(|| n.poll_transmit()).collect()
    }

    fn events(n: &mut RingNode<u32>) -> Vec<Event<u32>> {
        std::iter::from_fn(|| n.poll_event()).collect()
    }

    fn lookups(n: &mut RingNode<u32>) -> Vec<Result<LookupDone<u32>, LookupError>> {
        events(n)
            .into_iter()
            .filter_map(|e| match e {
                Event::Lookup { result, .. } => Some(result),
                _ => None,
            })
            .collect()
    }

    fn ids(peers: &[Peer<u32>]) -> Vec<u64> {
        peers.iter().map(|p| p.id.0).collect()
    }

    /// Delivers every transmit between `nodes` (by address) until quiet.
    fn pump(nodes: &mut [RingNode<u32>], now: Time) {
        for _ in 0..1000 {
            let mut moved = false;
            for i in 0..nodes.len() {
                for t in transmits(&mut nodes[i]) {
                    moved = true;
                    let Some(j) = nodes.iter().position(|n| n.me().addr == t.to) else {
                        nodes[i].handle_failure(now, t.id);
                        continue;
                    };
                    let response = nodes[j].handle_request(now, t.request);
                    nodes[i].handle_response(now, t.id, response);
                }
            }
            if !moved {
                return;
            }
        }
        panic!("messages never stopped");
    }

    #[test]
    fn a_lone_node_owns_everything() {
        let mut n = RingNode::new(peer(10), Config::default(), 1);
        let id = n.lookup(0, RingPos(5));
        assert!(transmits(&mut n).is_empty());
        match events(&mut n).as_slice() {
            [
                Event::Lookup {
                    id: got,
                    result: Ok(done),
                },
            ] => {
                assert_eq!(*got, id);
                assert_eq!(done.owner, peer(10));
                assert_eq!(done.hops, 0);
            }
            other => panic!("unexpected events {other:?}"),
        }
        assert_eq!(ids(n.successors()), vec![10]);
        assert!(n.predecessor().is_none());
    }

    #[test]
    fn local_lookups_take_no_hops() {
        let mut n = node(100, Some(50), &[200, 300], &[]);
        n.lookup(0, RingPos(150));
        n.lookup(0, RingPos(80));
        n.lookup(0, RingPos(100));
        let owners: Vec<u64> = lookups(&mut n)
            .into_iter()
            .map(|r| r.map(|d| (d.owner.id.0, d.hops)).unwrap())
            .map(|(o, h)| {
                assert_eq!(h, 0);
                o
            })
            .collect();
        assert_eq!(owners, vec![200, 100, 100]);
        assert!(transmits(&mut n).is_empty());
    }

    #[test]
    fn answers_find_successor_from_local_state() {
        let mut n = node(100, Some(50), &[200, 300], &[]);
        let r = n.handle_request(0, Request::FindSuccessor { key: RingPos(150) });
        assert_eq!(r, Response::FindSuccessor(Step::Done { owner: peer(200) }));
        let r = n.handle_request(0, Request::FindSuccessor { key: RingPos(60) });
        assert_eq!(r, Response::FindSuccessor(Step::Done { owner: peer(100) }));
        // Beyond the successor: the closest preceding nodes, best first.
        let r = n.handle_request(0, Request::FindSuccessor { key: RingPos(1000) });
        assert_eq!(
            r,
            Response::FindSuccessor(Step::Next {
                candidates: vec![peer(300), peer(200)]
            })
        );
    }

    #[test]
    fn lookup_falls_back_to_the_next_candidate() {
        // Fingers 10 (start 1024) and 12 (start 4096).
        let mut n = node(0, Some(u64::MAX - 5), &[10, 20], &[(10, 1100), (12, 5000)]);
        let lid = n.lookup(0, RingPos(6000));
        let t = transmits(&mut n);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].to, 5000);
        assert_eq!(t[0].to_id, Some(RingPos(5000)));
        assert_eq!(t[0].request, Request::FindSuccessor { key: RingPos(6000) });
        // The best candidate is dead: dropped at once, the next one asked.
        n.handle_failure(10, t[0].id);
        let t = transmits(&mut n);
        assert_eq!(t[0].to, 1100);
        assert!(!ids(&n.fingers()).contains(&5000));
        // It answers with candidates; those that make no progress are ignored.
        n.handle_response(
            20,
            t[0].id,
            Response::FindSuccessor(Step::Next {
                candidates: vec![peer(100_000), peer(5500), peer(900)],
            }),
        );
        let t = transmits(&mut n);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].to, 5500);
        n.handle_response(
            30,
            t[0].id,
            Response::FindSuccessor(Step::Done { owner: peer(7000) }),
        );
        let evs = events(&mut n);
        assert!(
            evs.iter()
                .any(|e| matches!(e, Event::PeerDropped(p) if p.id.0 == 5000))
        );
        let done = evs
            .into_iter()
            .find_map(|e| match e {
                Event::Lookup { id, result } if id == lid => Some(result),
                _ => None,
            })
            .unwrap()
            .unwrap();
        assert_eq!(done.owner, peer(7000));
        assert_eq!(done.hops, 2);
        assert_eq!(done.timeouts, 1);
    }

    #[test]
    fn lookup_fails_when_every_candidate_is_dead() {
        let mut n = node(0, None, &[10], &[(10, 1100)]);
        n.lookup(0, RingPos(6000));
        for _ in 0..10 {
            let t = transmits(&mut n);
            if t.is_empty() {
                break;
            }
            for t in t {
                n.handle_failure(0, t.id);
            }
        }
        assert_eq!(lookups(&mut n), vec![Err(LookupError::NoLiveCandidates)]);
        assert_eq!(n.pending_requests(), 0);
    }

    #[test]
    fn verified_lookup_skips_a_dead_owner() {
        let cfg = Config {
            verify_owner: true,
            ..Config::default()
        };
        let mut n = RingNode::with_state(
            peer(0),
            cfg,
            1,
            None,
            vec![peer(10), peer(20), peer(30)],
            vec![],
        );
        n.lookup(0, RingPos(5));
        let t = transmits(&mut n);
        assert_eq!((t.len(), t[0].to, &t[0].request), (1, 10, &Request::Ping));
        n.handle_failure(1, t[0].id);
        let t = transmits(&mut n);
        assert_eq!((t.len(), t[0].to, &t[0].request), (1, 20, &Request::Ping));
        n.handle_response(2, t[0].id, Response::Ack);
        let done = lookups(&mut n).pop().unwrap().unwrap();
        assert_eq!((done.owner.id.0, done.timeouts), (20, 1));
        assert_eq!(ids(n.successors()), vec![20, 30]);
    }

    #[test]
    fn stabilize_adopts_a_new_successor_only_once_it_answers() {
        let mut n = node(100, Some(50), &[300], &[]);
        n.handle_timeout(10_000);
        let t = transmits(&mut n);
        let get = t
            .iter()
            .find(|t| t.request == Request::GetNeighbors)
            .unwrap();
        assert_eq!(get.to, 300);
        n.handle_response(
            10_010,
            get.id,
            Response::Neighbors {
                me: peer(300),
                predecessor: Some(peer(200)),
                successors: vec![peer(400)],
            },
        );
        // Not yet: 200 must answer first (Zave).
        assert_eq!(ids(n.successors()), vec![300]);
        let t = transmits(&mut n);
        assert_eq!(
            (t.len(), t[0].to, &t[0].request),
            (1, 200, &Request::GetNeighbors)
        );
        n.handle_response(
            10_020,
            t[0].id,
            Response::Neighbors {
                me: peer(200),
                predecessor: Some(peer(100)),
                successors: vec![peer(300), peer(400)],
            },
        );
        assert_eq!(ids(n.successors()), vec![200, 300, 400]);
        let t = transmits(&mut n);
        assert_eq!(t[0].to, 200);
        assert_eq!(t[0].request, Request::Notify { peer: peer(100) });
        assert!(
            events(&mut n)
                .iter()
                .any(|e| matches!(e, Event::NeighborsChanged))
        );
    }

    #[test]
    fn stabilize_keeps_the_successor_when_its_predecessor_is_dead() {
        let mut n = node(100, Some(50), &[300], &[]);
        n.handle_timeout(10_000);
        let get = transmits(&mut n)
            .into_iter()
            .find(|t| t.request == Request::GetNeighbors)
            .unwrap();
        n.handle_response(
            10_010,
            get.id,
            Response::Neighbors {
                me: peer(300),
                predecessor: Some(peer(200)),
                successors: vec![peer(400), peer(500)],
            },
        );
        let t = transmits(&mut n);
        n.handle_failure(10_500, t[0].id);
        assert_eq!(ids(n.successors()), vec![300, 400, 500]);
        let t = transmits(&mut n);
        assert_eq!(t[0].to, 300);
        assert!(matches!(t[0].request, Request::Notify { .. }));
    }

    #[test]
    fn successor_list_repairs_after_failures() {
        let mut n = node(100, Some(50), &[200, 300, 400], &[]);
        n.handle_timeout(10_000);
        let get = transmits(&mut n)
            .into_iter()
            .find(|t| t.request == Request::GetNeighbors)
            .unwrap();
        assert_eq!(get.to, 200);
        n.handle_failure(10_500, get.id);
        assert_eq!(ids(n.successors()), vec![300, 400]);
        let evs = events(&mut n);
        assert!(
            evs.iter()
                .any(|e| matches!(e, Event::PeerDropped(p) if p.id.0 == 200))
        );
        assert!(evs.iter().any(|e| matches!(e, Event::NeighborsChanged)));
        // The next successor is asked straight away, and its list refills ours.
        let t = transmits(&mut n);
        assert_eq!((t[0].to, &t[0].request), (300, &Request::GetNeighbors));
        n.handle_response(
            10_510,
            t[0].id,
            Response::Neighbors {
                me: peer(300),
                predecessor: Some(peer(100)),
                successors: vec![peer(400), peer(500), peer(600)],
            },
        );
        assert_eq!(ids(n.successors()), vec![300, 400, 500, 600]);
    }

    #[test]
    fn losing_every_successor_falls_back_to_a_finger() {
        let mut n = node(0, None, &[10], &[(10, 1100), (12, 5000)]);
        n.handle_timeout(10_000);
        let get = transmits(&mut n)
            .into_iter()
            .find(|t| t.request == Request::GetNeighbors)
            .unwrap();
        n.handle_failure(10_500, get.id);
        assert_eq!(ids(n.successors()), vec![1100]);
    }

    #[test]
    fn rectify_replaces_the_predecessor_only_if_closer_or_dead() {
        let mut n = node(100, Some(50), &[200], &[]);
        n.handle_request(0, Request::Notify { peer: peer(80) });
        assert_eq!(n.predecessor().map(|p| p.id.0), Some(80));
        assert!(transmits(&mut n).is_empty());
        // Farther than 80: ping 80 first.
        n.handle_request(1, Request::Notify { peer: peer(60) });
        let t = transmits(&mut n);
        assert_eq!((t.len(), t[0].to, &t[0].request), (1, 80, &Request::Ping));
        n.handle_response(2, t[0].id, Response::Ack);
        assert_eq!(n.predecessor().map(|p| p.id.0), Some(80));
        n.handle_request(3, Request::Notify { peer: peer(60) });
        let t = transmits(&mut n);
        n.handle_failure(4, t[0].id);
        assert_eq!(n.predecessor().map(|p| p.id.0), Some(60));
        // From ourselves: ignored.
        n.handle_request(5, Request::Notify { peer: peer(100) });
        assert_eq!(n.predecessor().map(|p| p.id.0), Some(60));
        assert!(transmits(&mut n).is_empty());
    }

    #[test]
    fn authenticated_requests_cannot_speak_for_others() {
        let mut n = node(100, Some(50), &[200, 300], &[]);
        n.handle_request_from(0, RingPos(77), Request::Notify { peer: peer(80) });
        assert_eq!(n.predecessor().map(|p| p.id.0), Some(50));
        let leave = Request::Leave {
            peer: peer(200),
            predecessor: None,
            successors: vec![],
        };
        n.handle_request_from(0, RingPos(77), leave.clone());
        assert_eq!(ids(n.successors()), vec![200, 300]);
        n.handle_request_from(0, RingPos(200), leave);
        assert_eq!(ids(n.successors()), vec![300]);
        n.handle_request_from(0, RingPos(80), Request::Notify { peer: peer(80) });
        assert_eq!(n.predecessor().map(|p| p.id.0), Some(80));
    }

    #[test]
    fn check_predecessor_drops_a_dead_one() {
        let mut n = node(100, Some(50), &[200], &[]);
        n.handle_timeout(10_000);
        let ping = transmits(&mut n)
            .into_iter()
            .find(|t| t.request == Request::Ping)
            .unwrap();
        assert_eq!(ping.to, 50);
        n.handle_failure(10_500, ping.id);
        assert!(n.predecessor().is_none());
    }

    #[test]
    fn fingers_are_fixed_one_lookup_at_a_time() {
        let mut n = node(0, None, &[10], &[]);
        n.handle_timeout(10_000);
        // Fingers 0..=3 start inside (0, 10]: the first lookup is finger 4 (16).
        let find = transmits(&mut n)
            .into_iter()
            .find(|t| matches!(t.request, Request::FindSuccessor { .. }))
            .unwrap();
        assert_eq!(find.request, Request::FindSuccessor { key: RingPos(16) });
        assert_eq!(find.to, 10);
        n.handle_response(
            10_010,
            find.id,
            Response::FindSuccessor(Step::Done { owner: peer(1000) }),
        );
        // 16, 32, ..., 512 all lie before 1000: one lookup fills six fingers.
        for i in 4..=9 {
            assert_eq!(n.finger(i).map(|p| p.id.0), Some(1000), "finger {i}");
        }
        assert_eq!(n.finger(10), None);
        assert_eq!(ids(&n.fingers()), vec![10, 1000]);
        // The next round looks up finger 10.
        n.handle_timeout(20_000);
        let find = transmits(&mut n)
            .into_iter()
            .find(|t| matches!(t.request, Request::FindSuccessor { .. }))
            .unwrap();
        assert_eq!(find.request, Request::FindSuccessor { key: RingPos(1024) });
        assert_eq!(find.to, 1000);
    }

    #[test]
    fn leave_hands_over_to_both_neighbours() {
        let mut leaver = node(200, Some(100), &[300, 400], &[]);
        leaver.lookup(0, RingPos(10_000));
        leaver.leave(1);
        assert_eq!(leaver.poll_timeout(), None);
        let t: Vec<_> = transmits(&mut leaver)
            .into_iter()
            .filter(|t| matches!(t.request, Request::Leave { .. }))
            .collect();
        let mut to: Vec<u32> = t.iter().map(|t| t.to).collect();
        to.sort();
        assert_eq!(to, vec![100, 300]);
        assert!(lookups(&mut leaver).contains(&Err(LookupError::Left)));

        let mut pred = node(100, Some(50), &[200, 300], &[]);
        pred.handle_request(2, t[0].request.clone());
        assert_eq!(ids(pred.successors()), vec![300, 400]);

        let mut succ = node(300, Some(200), &[400], &[]);
        succ.handle_request(2, t[0].request.clone());
        assert_eq!(succ.predecessor().map(|p| p.id.0), Some(100));
        assert_eq!(ids(succ.successors()), vec![400]);
    }

    #[test]
    fn two_nodes_join_and_stabilize() {
        let a = RingNode::new(peer(100), Config::default(), 1);
        let mut b = RingNode::new(peer(200), Config::default(), 2);
        b.join(0, vec![100]);
        let t = transmits(&mut b);
        assert_eq!(t[0].to_id, None);
        let mut nodes = vec![a, b];
        for (k, t) in t.into_iter().enumerate() {
            let r = nodes[0].handle_request(0, t.request);
            nodes[1].handle_response(k as Time, t.id, r);
        }
        pump(&mut nodes, 1);
        assert!(
            events(&mut nodes[1])
                .iter()
                .any(|e| matches!(e, Event::Joined { successor } if successor.id.0 == 100))
        );
        for now in (1_000..10_000).step_by(500) {
            for n in nodes.iter_mut() {
                n.handle_timeout(now);
            }
            pump(&mut nodes, now);
        }
        assert_eq!(ids(nodes[0].successors()), vec![200]);
        assert_eq!(ids(nodes[1].successors()), vec![100]);
        assert_eq!(nodes[0].predecessor().map(|p| p.id.0), Some(200));
        assert_eq!(nodes[1].predecessor().map(|p| p.id.0), Some(100));
    }

    #[test]
    fn only_a_node_that_never_joined_claims_keys_when_alone() {
        let mut first = RingNode::new(peer(100), Config::default(), 1);
        let r = first.handle_request(0, Request::FindSuccessor { key: RingPos(5) });
        assert_eq!(r, Response::FindSuccessor(Step::Done { owner: peer(100) }));
        let mut joining = RingNode::new(peer(200), Config::default(), 2);
        joining.join(0, vec![1]);
        let r = joining.handle_request(0, Request::FindSuccessor { key: RingPos(5) });
        assert_eq!(
            r,
            Response::FindSuccessor(Step::Next { candidates: vec![] })
        );
    }

    #[test]
    fn stabilize_takes_a_closer_node_from_the_successors_list() {
        // We fell back to a far successor (900); its list wraps round to our
        // true neighbours 150 and 200.
        let mut n = node(100, Some(50), &[900], &[]);
        n.handle_timeout(10_000);
        let get = transmits(&mut n)
            .into_iter()
            .find(|t| t.request == Request::GetNeighbors)
            .unwrap();
        n.handle_response(
            10_010,
            get.id,
            Response::Neighbors {
                me: peer(900),
                predecessor: Some(peer(800)),
                successors: vec![peer(50), peer(100), peer(150), peer(200)],
            },
        );
        let t = transmits(&mut n);
        assert_eq!((t[0].to, &t[0].request), (150, &Request::GetNeighbors));
    }

    #[test]
    fn join_retries_the_next_bootstrap() {
        let mut n = RingNode::new(peer(200), Config::default(), 2);
        n.join(0, vec![1, 2]);
        let t = transmits(&mut n);
        assert_eq!(t[0].to, 1);
        n.handle_failure(500, t[0].id);
        assert!(!n.joined());
        assert_eq!(n.poll_timeout(), Some(1500));
        n.handle_timeout(1500);
        let t = transmits(&mut n);
        assert_eq!(t[0].to, 2);
    }

    #[test]
    fn odd_and_hostile_input_never_panics() {
        let mut n = node(100, Some(50), &[200, 300], &[(8, 400)]);
        // Unknown request ids.
        n.handle_response(0, RequestId(999), Response::Ack);
        n.handle_failure(0, RequestId(998));
        // Requests about ourselves, or carrying ourselves.
        n.handle_request(0, Request::FindSuccessor { key: RingPos(100) });
        n.handle_request(
            0,
            Request::Leave {
                peer: peer(100),
                predecessor: Some(peer(100)),
                successors: vec![peer(100)],
            },
        );
        n.handle_request(
            0,
            Request::Leave {
                peer: peer(200),
                predecessor: None,
                successors: vec![peer(100), peer(200), peer(150), peer(120)],
            },
        );
        assert!(
            n.successors()
                .iter()
                .all(|p| p.id.0 != 100 && p.id.0 != 200)
        );
        // Replies of the wrong shape, empty lists, an owner that is us.
        n.handle_timeout(10_000);
        for (k, t) in transmits(&mut n).into_iter().enumerate() {
            let r = match k % 4 {
                0 => Response::Ack,
                1 => Response::Neighbors {
                    me: peer(7),
                    predecessor: None,
                    successors: vec![],
                },
                2 => Response::FindSuccessor(Step::Next { candidates: vec![] }),
                _ => Response::FindSuccessor(Step::Done { owner: peer(100) }),
            };
            n.handle_response(10_001, t.id, r);
        }
        let lid = n.lookup(10_002, RingPos(5000));
        for round in 0..20 {
            for t in transmits(&mut n) {
                let r = match round % 3 {
                    0 => Response::FindSuccessor(Step::Next {
                        candidates: vec![peer(100), peer(5000), peer(4999), peer(4999)],
                    }),
                    1 => Response::Neighbors {
                        me: peer(4999),
                        predecessor: Some(peer(100)),
                        successors: vec![peer(100); 3],
                    },
                    _ => Response::Ack,
                };
                n.handle_response(10_003 + round, t.id, r);
            }
        }
        let _ = events(&mut n);
        let _ = lid;
        // The state is still sane.
        assert!(!n.successors().is_empty());
        assert!(n.successors().iter().all(|p| p.id.0 != 100) || n.successors().len() == 1);
        // A state built with junk is normalized.
        let n = node(100, Some(100), &[100, 300, 300, 200], &[(99, 5)]);
        assert_eq!(ids(n.successors()), vec![300]);
        assert!(n.predecessor().is_none());
        assert_eq!(ids(&n.fingers()), vec![300]);
    }

    #[test]
    fn random_garbage_never_panics() {
        let mut rng = Rng::new(0xF00D);
        let mut n = node(1 << 63, Some(1 << 62), &[(1 << 63) + 5], &[(40, 1 << 20)]);
        let mut outstanding: Vec<RequestId> = Vec::new();
        let mut rand_peer = |rng: &mut Rng| {
            let id = match rng.below(4) {
                0 => 1 << 63,
                1 => rng.next_u64() & 0xFFFF,
                _ => rng.next_u64(),
            };
            Peer {
                id: RingPos(id),
                addr: id as u32,
            }
        };
        for step in 0..20_000u64 {
            let now = step * 7;
            let peers = |rng: &mut Rng, f: &mut dyn FnMut(&mut Rng) -> Peer<u32>| {
                (0..rng.below(6)).map(|_| f(rng)).collect::<Vec<_>>()
            };
            match rng.below(8) {
                0 => {
                    let key = RingPos(rng.next_u64());
                    n.handle_request(now, Request::FindSuccessor { key });
                }
                1 => {
                    let peer = rand_peer(&mut rng);
                    n.handle_request(now, Request::Notify { peer });
                }
                2 => {
                    let peer = rand_peer(&mut rng);
                    let predecessor = Some(rand_peer(&mut rng));
                    let successors = peers(&mut rng, &mut rand_peer);
                    n.handle_request(
                        now,
                        Request::Leave {
                            peer,
                            predecessor,
                            successors,
                        },
                    );
                }
                3 => {
                    n.lookup(now, RingPos(rng.next_u64()));
                }
                4 => n.handle_timeout(now),
                _ => {
                    if outstanding.is_empty() {
                        continue;
                    }
                    let k = rng.below(outstanding.len() as u64) as usize;
                    let id = outstanding.swap_remove(k);
                    let response = match rng.below(5) {
                        0 => Response::Ack,
                        1 => Response::FindSuccessor(Step::Done {
                            owner: rand_peer(&mut rng),
                        }),
                        2 => Response::FindSuccessor(Step::Next {
                            candidates: peers(&mut rng, &mut rand_peer),
                        }),
                        3 => Response::Neighbors {
                            me: rand_peer(&mut rng),
                            predecessor: Some(rand_peer(&mut rng)),
                            successors: peers(&mut rng, &mut rand_peer),
                        },
                        _ => {
                            n.handle_failure(now, id);
                            continue;
                        }
                    };
                    n.handle_response(now, id, response);
                }
            }
            outstanding.extend(std::iter::from_fn(|| n.poll_transmit()).map(|t| t.id));
            let _ = events(&mut n);
            assert!(!n.successors().is_empty());
            assert!(n.successors().len() <= n.config().successors);
            assert!(n.pending_requests() <= outstanding.len());
        }
    }
}
