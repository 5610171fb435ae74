//! Iterative lookups: the local step, the walk over candidates with fallback,
//! verifying the owner that was found, and each lookup's state.

use crate::id::RingPos;

use super::{
    Address, Event, JoinState, LookupDone, LookupError, LookupId, Peer, Purpose, Request, Response,
    RingNode, Step, Time,
};

impl<A: Address> RingNode<A> {
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

    /// The local answer to `FindSuccessor(key)`.
    pub(super) fn step(&self, key: RingPos) -> Step<A> {
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

    pub(super) fn start_lookup(&mut self, now: Time, key: RingPos, kind: LookupKind) {
        let lid = self.next_lookup;
        self.next_lookup += 1;
        let mut state = LookupState::new(key, kind);
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

    pub(super) fn lookup_response(
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
                if l.kind != LookupKind::Merge {
                    // Peers seen in lookups are what a node of another ring
                    // may one day know us by.
                    self.sample(&candidates);
                }
                let Some(l) = self.lookups.get_mut(&lid) else {
                    return;
                };
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
            // The owner must answer for the key as its own: its predecessor
            // is known and the key lies between it and the owner. A hop that
            // named some other node as owner (a liar capturing the key, or a
            // stale entry) fails here and the lookup falls back. A joining
            // node only needs its successor alive.
            (
                Phase::Verify { owner, .. },
                Response::Neighbors {
                    me, predecessor, ..
                },
            ) if me.id == owner.id
                && (l.kind == LookupKind::Join
                    || !self.config.verify_owner_claim
                    || predecessor
                        .as_ref()
                        .is_some_and(|p| l.key.in_open_closed(p.id, me.id))) =>
            {
                let Phase::Verify { owner, .. } = std::mem::replace(&mut l.phase, Phase::Routing)
                else {
                    return;
                };
                let done = self.done(lid, owner);
                self.finish_lookup(now, lid, done);
            }
            // Alive, but it does not claim the key. It is not dead, so the
            // next node after it is not the owner either: falling back to it
            // would hand the key to the wrong node. Fail; the caller retries.
            (Phase::Verify { owner, .. }, Response::Neighbors { me, .. }) if me.id == owner.id => {
                let id = owner.id;
                self.finish_lookup(now, lid, Err(LookupError::OwnerUnverified(id)));
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

    pub(super) fn lookup_failure(&mut self, now: Time, lid: u64, target: Option<Peer<A>>) {
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
                LookupKind::Finger(_) | LookupKind::Merge => false,
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
            Request::GetNeighbors,
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
            Request::GetNeighbors,
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
            LookupKind::Merge => self.merge_lookup_done(now, lid, result),
        }
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LookupKind {
    User(LookupId),
    Join,
    Finger(u8),
    /// Is this id's node in our ring? (ring unification)
    Merge,
}

#[derive(Debug)]
pub(super) struct LookupState<A> {
    pub(super) key: RingPos,
    pub(super) kind: LookupKind,
    /// Fallback candidates, closest to the key first.
    pub(super) queue: Vec<Peer<A>>,
    /// Peers that failed during this lookup.
    pub(super) dead: Vec<RingPos>,
    /// The last node that answered `Next`, until its successor list was asked.
    pub(super) last: Option<Peer<A>>,
    /// Whether our own successor list was tried after the queue ran dry.
    pub(super) widened_self: bool,
    pub(super) hops: u32,
    pub(super) timeouts: u32,
    pub(super) phase: Phase<A>,
}

impl<A> LookupState<A> {
    /// A lookup of `key` that has not sent anything yet.
    pub(super) fn new(key: RingPos, kind: LookupKind) -> LookupState<A> {
        LookupState {
            key,
            kind,
            queue: Vec::new(),
            dead: Vec::new(),
            last: None,
            widened_self: false,
            hops: 0,
            timeouts: 0,
            phase: Phase::Routing,
        }
    }
}

#[derive(Debug)]
pub(super) enum Phase<A> {
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
pub(super) enum Then<A> {
    /// Ask the node that named it for its successor list.
    Ask(Peer<A>),
    /// Try these in turn, then ask `closer` (nodes before the key, closest
    /// first) for their successor lists.
    Fallback {
        rest: Vec<Peer<A>>,
        closer: Vec<Peer<A>>,
    },
}
