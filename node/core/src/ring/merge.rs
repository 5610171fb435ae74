//! Ring unification: healing a ring that a network partition split in two
//! (Shafaat, Ghodsi and Haridi, "Dealing with network partitions in structured
//! overlay networks", 2009).
//!
//! Plain Chord never merges two rings: after a partition each side repairs
//! into a ring of its own and they stay apart when the links come back. Here:
//!
//! 1. **Remember.** A node keeps a short, bounded list of peers it has seen:
//!    every peer it dropped from its view as failed, and now and then a node
//!    named in a lookup step. (`Config::remembered_peers` entries.)
//! 2. **Probe.** Every `Config::merge_probe_interval` it asks one remembered
//!    peer that is not in its view for its neighbours. A peer that does not
//!    answer is probed again later, less and less often, and forgotten after
//!    a few failures: a peer that really died costs a handful of failed pings.
//! 3. **Check.** A peer `p` that answers is looked up in the node's own ring.
//!    If the owner found is `p`, it is in our ring. Otherwise the owner's
//!    predecessor `x` and the owner `o` are the nodes of our ring around `p`,
//!    and `p` is not between them: it lives in another ring.
//! 4. **Zip.** The node sends `p` a `Merge { peers: [x, o] }`. A node that
//!    receives a `Merge` runs step 3 on each named peer in its own ring. Each
//!    check thus introduces the nodes of one ring that sit around a node of the
//!    other ring to that node, which checks them in its ring and answers in
//!    kind one place further along: the check walks both rings in both
//!    directions, like a zipper, so one peer found is enough to merge two whole
//!    rings. A node that learns of a node that belongs between it and its
//!    successor (or predecessor) confirms that node alive itself, then adopts
//!    it; stabilization does the rest.
//!
//! What a stranger can do with a `Merge`: make us look up at most
//! [`MERGE_PEERS`] ids in our own ring and send at most as many `Merge`s and
//! `GetNeighbors`; no more than [`MERGE_BUDGET`] such checks start per probe
//! interval and [`MERGE_IN_FLIGHT`] run at once, whoever asks. Nothing named
//! in a `Merge` becomes our successor or predecessor before it answered us
//! itself, and only peers that were in our view are remembered, so forged
//! names cannot fill the list either.

use crate::id::RingPos;

use super::lookup::LookupKind;
use super::{Address, LookupDone, LookupError, Peer, Purpose, Request, Response, RingNode, Time};

/// Most peers of one `Merge` request that are looked at; the rest are ignored.
pub const MERGE_PEERS: usize = 2;
/// Most merge checks (a lookup in our ring, then a question to the owner) that
/// run at once.
pub const MERGE_IN_FLIGHT: usize = 4;
/// Most merge checks that may start per probe interval, from probes and
/// `Merge` requests together.
pub const MERGE_BUDGET: u8 = 8;
/// A remembered peer is forgotten after this many probes in a row failed.
/// With the backoff (2, 4, 8, 16, then 32 intervals) that is about 254
/// probe intervals, 8.5 minutes at the default: a partition up to that long
/// heals by itself, and a peer that really died costs 12 pings in all.
pub const PROBE_FAILURES: u8 = 12;
/// Checks waiting for a free slot; further ones are dropped.
const MERGE_QUEUE: usize = 8;
/// Ids checked lately, not checked again within a probe interval.
const RECENT: usize = 16;
/// One lookup step in this many has one of its candidates remembered.
const SAMPLE_ONE_IN: u64 = 64;

/// A peer a node remembers, to probe later.
#[derive(Debug, Clone)]
pub(super) struct Remembered<A> {
    peer: Peer<A>,
    /// Probes in a row that failed.
    failures: u8,
    /// Only seen in a lookup step (it was never in our view).
    sampled: bool,
    /// Not probed before this time.
    not_before: Time,
}

/// The merge machinery's state in a [`RingNode`].
#[derive(Debug)]
pub(super) struct MergeState<A> {
    /// Remembered peers, oldest first.
    remembered: Vec<Remembered<A>>,
    /// Checks waiting for a slot.
    queue: Vec<Peer<A>>,
    /// Checks running: the lookup id (while the lookup runs) and the peer.
    /// The others that run are `MergeOwner` requests in `pending`.
    lookups: Vec<(u64, Peer<A>)>,
    /// Ids checked lately and when.
    recent: Vec<(RingPos, Time)>,
    /// Checks that may still start this probe interval.
    budget: u8,
}

impl<A> Default for MergeState<A> {
    fn default() -> Self {
        MergeState {
            remembered: Vec::new(),
            queue: Vec::new(),
            lookups: Vec::new(),
            recent: Vec::new(),
            budget: MERGE_BUDGET,
        }
    }
}

impl<A> MergeState<A> {
    /// Heap bytes held.
    pub(super) fn heap_bytes(&self) -> usize {
        self.remembered.capacity() * std::mem::size_of::<Remembered<A>>()
            + self.queue.capacity() * std::mem::size_of::<Peer<A>>()
            + self.lookups.capacity() * std::mem::size_of::<(u64, Peer<A>)>()
            + self.recent.capacity() * std::mem::size_of::<(RingPos, Time)>()
    }
}

impl<A: Address> RingNode<A> {
    /// The peers this node remembers and probes now and then for a ring of
    /// their own (see [`Config::merge_probe_interval`](super::Config)).
    pub fn remembered(&self) -> impl Iterator<Item = &Peer<A>> {
        self.merge.remembered.iter().map(|r| &r.peer)
    }

    /// Remember `peer`, which was in our view and was dropped (`sampled`
    /// false), or was named in a lookup step (`sampled` true).
    pub(super) fn remember(&mut self, peer: Peer<A>, sampled: bool) {
        let cap = self.config.remembered_peers;
        if cap == 0 || self.config.merge_probe_interval == 0 || peer.id == self.me.id {
            return;
        }
        let list = &mut self.merge.remembered;
        if let Some(r) = list.iter_mut().find(|r| r.peer.id == peer.id) {
            r.sampled &= sampled;
            return;
        }
        let entry = Remembered {
            peer,
            failures: 0,
            sampled,
            not_before: 0,
        };
        let samples = list.iter().filter(|r| r.sampled).count();
        let sample_full = sampled && samples >= cap.div_ceil(2);
        if list.len() < cap && !sample_full {
            list.push(entry);
            return;
        }
        // Full: a sample makes way first (dropped peers are what heals a
        // partition); a sample never evicts a dropped peer.
        if samples > 0 {
            let k = self.rng.below(samples as u64) as usize;
            if let Some(i) = list
                .iter()
                .enumerate()
                .filter(|(_, r)| r.sampled)
                .map(|(i, _)| i)
                .nth(k)
            {
                list.remove(i);
                list.push(entry);
            }
        } else if !sampled {
            list.remove(0);
            list.push(entry);
        }
    }

    /// Now and then remember one of the candidates of a lookup step.
    pub(super) fn sample(&mut self, candidates: &[Peer<A>]) {
        if candidates.is_empty()
            || self.config.merge_probe_interval == 0
            || self.rng.below(SAMPLE_ONE_IN) != 0
        {
            return;
        }
        let k = self.rng.below(candidates.len() as u64) as usize;
        let p = candidates[k].clone();
        if !self.in_view(p.id) {
            self.remember(p, true);
        }
    }

    /// The probe timer fired: refill the budget, probe one remembered peer.
    pub(super) fn probe(&mut self, now: Time) {
        self.merge.budget = MERGE_BUDGET;
        let in_view: Vec<bool> = self
            .merge
            .remembered
            .iter()
            .map(|r| self.in_view(r.peer.id))
            .collect();
        // Back in our view: back in our ring, nothing to probe.
        let mut k = 0;
        self.merge.remembered.retain(|_| {
            k += 1;
            !in_view[k - 1]
        });
        if self.merge.remembered.is_empty() {
            self.merge.remembered = Vec::new();
            return;
        }
        let due = self
            .merge
            .remembered
            .iter()
            .filter(|r| r.not_before <= now)
            .count();
        if due == 0 {
            return;
        }
        let k = self.rng.below(due as u64) as usize;
        let interval = self.config.merge_probe_interval;
        let Some(r) = self
            .merge
            .remembered
            .iter_mut()
            .filter(|r| r.not_before <= now)
            .nth(k)
        else {
            return;
        };
        // Not again while this probe is out.
        r.not_before = now.saturating_add(interval.saturating_mul(8));
        let p = r.peer.clone();
        self.send(
            Some(p.clone()),
            p.addr.clone(),
            Request::GetNeighbors,
            Purpose::Probe,
        );
    }

    /// The answer to a probe (`None`: it failed or made no sense).
    pub(super) fn probe_done(&mut self, now: Time, target: Option<Peer<A>>, ok: bool) {
        let Some(target) = target else { return };
        let interval = self.config.merge_probe_interval;
        let list = &mut self.merge.remembered;
        let Some(i) = list.iter().position(|r| r.peer.id == target.id) else {
            if ok {
                self.merge_candidate(now, target);
            }
            return;
        };
        if ok {
            list[i].failures = 0;
            self.merge_candidate(now, target);
            return;
        }
        let r = &mut list[i];
        r.failures = r.failures.saturating_add(1);
        if r.failures >= PROBE_FAILURES {
            list.remove(i);
            if list.is_empty() {
                *list = Vec::new();
            }
        } else {
            // 2, 4, 8, 16, then 32 intervals: a partition of minutes is
            // outlived, a dead peer costs PROBE_FAILURES pings in all.
            let backoff = 1u64 << r.failures.min(5);
            r.not_before = now.saturating_add(interval.saturating_mul(backoff));
        }
    }

    /// A `Merge` request: check each named peer (at most [`MERGE_PEERS`]).
    pub(super) fn merge_request(&mut self, now: Time, peers: Vec<Peer<A>>) {
        if self.left || !self.joined() {
            return;
        }
        for p in peers.into_iter().take(MERGE_PEERS) {
            self.merge_candidate(now, p);
        }
    }

    /// Check whether `p` lives in another ring, if the budget allows.
    fn merge_candidate(&mut self, now: Time, p: Peer<A>) {
        if p.id == self.me.id || self.in_view(p.id) || self.left {
            return;
        }
        let interval = self.config.merge_probe_interval.max(1);
        let recent = &mut self.merge.recent;
        recent.retain(|(_, t)| t.saturating_add(interval) > now);
        if recent.iter().any(|(id, _)| *id == p.id) {
            return;
        }
        if self.merge.budget == 0 {
            return;
        }
        self.merge.budget -= 1;
        if recent.len() >= RECENT {
            recent.remove(0);
        }
        recent.push((p.id, now));
        if self.merge_checks_running() < MERGE_IN_FLIGHT {
            self.start_merge_check(now, p);
        } else if self.merge.queue.len() < MERGE_QUEUE {
            self.merge.queue.push(p);
        }
    }

    /// Checks running: looking up their peer, or asking its owner.
    fn merge_checks_running(&self) -> usize {
        self.merge.lookups.len()
            + self
                .pending
                .0
                .iter()
                .filter(|(_, p)| matches!(p.purpose, Purpose::MergeOwner { .. }))
                .count()
    }

    fn start_merge_check(&mut self, now: Time, p: Peer<A>) {
        // A node that belongs right next to us: confirm it, then adopt it.
        let me = self.me.id;
        let succ = self.successor().id;
        let next_to_us = p.id.in_open(me, succ)
            || self
                .predecessor
                .as_ref()
                .is_none_or(|x| p.id.in_open(x.id, me));
        if next_to_us {
            self.send(
                Some(p.clone()),
                p.addr.clone(),
                Request::GetNeighbors,
                Purpose::MergeConfirm,
            );
        }
        let lid = self.next_lookup;
        self.merge.lookups.push((lid, p.clone()));
        self.start_lookup(now, p.id, LookupKind::Merge);
    }

    /// The lookup of a merge check ended.
    pub(super) fn merge_lookup_done(
        &mut self,
        now: Time,
        lid: u64,
        result: Result<LookupDone<A>, LookupError>,
    ) {
        let Some(i) = self.merge.lookups.iter().position(|(l, _)| *l == lid) else {
            return;
        };
        let (_, p) = self.merge.lookups.swap_remove(i);
        if self.merge.lookups.is_empty() {
            self.merge.lookups = Vec::new();
        }
        let Ok(done) = result else {
            self.merge_check_done(now);
            return;
        };
        let o = done.owner;
        if o.id == p.id {
            self.same_ring(p.id);
            self.merge_check_done(now);
        } else if o.id == self.me.id {
            let x = self.predecessor.clone();
            let o = self.me.clone();
            self.merge_verdict(p, x, o);
            self.merge_check_done(now);
        } else {
            // Its predecessor is the other node of our ring around `p`.
            self.send(
                Some(o.clone()),
                o.addr,
                Request::GetNeighbors,
                Purpose::MergeOwner { candidate: p },
            );
        }
    }

    /// The owner `o` of a checked peer's id answered (or not: `None`).
    pub(super) fn merge_owner_done(
        &mut self,
        now: Time,
        target: Option<Peer<A>>,
        candidate: Peer<A>,
        response: Option<Response<A>>,
    ) {
        if let (
            Some(o),
            Some(Response::Neighbors {
                me, predecessor, ..
            }),
        ) = (target, response)
            && me.id == o.id
        {
            self.merge_verdict(candidate, predecessor, o);
        }
        self.merge_check_done(now);
    }

    /// `x` and `o` are consecutive in our ring and `o` owns `p`'s id: unless
    /// `p` is `x`, it is missing from our ring between them; introduce them
    /// to it.
    fn merge_verdict(&mut self, p: Peer<A>, x: Option<Peer<A>>, o: Peer<A>) {
        if x.as_ref().is_some_and(|x| x.id == p.id) {
            self.same_ring(p.id);
            return;
        }
        if x.as_ref().is_some_and(|x| !p.id.in_open(x.id, o.id)) {
            // The ring moved since the lookup; a later probe looks again.
            return;
        }
        let mut peers = Vec::with_capacity(2);
        peers.extend(x);
        peers.push(o);
        self.send(
            Some(p.clone()),
            p.addr,
            Request::Merge { peers },
            Purpose::MergeSend,
        );
    }

    /// A peer that we checked answered us itself: adopt it as successor or
    /// predecessor if it belongs there.
    pub(super) fn merge_confirmed(&mut self, now: Time, target: Option<Peer<A>>, r: Response<A>) {
        let (Some(p), Response::Neighbors { me, successors, .. }) = (target, r) else {
            return;
        };
        if me.id != p.id || self.left {
            return;
        }
        let my = self.me.id;
        if p.id.in_open(my, self.successor().id) {
            // Keep our own list behind it: its list is of the other ring.
            let mut list = successors;
            list.extend(self.successors.iter().cloned());
            self.adopt_successor(now, p.clone(), list);
        }
        if self
            .predecessor
            .as_ref()
            .is_none_or(|x| p.id.in_open(x.id, my))
        {
            self.offer_predecessor(p);
        }
    }

    fn merge_check_done(&mut self, now: Time) {
        if self.merge_checks_running() < MERGE_IN_FLIGHT && !self.merge.queue.is_empty() {
            let p = self.merge.queue.remove(0);
            if self.merge.queue.is_empty() {
                self.merge.queue = Vec::new();
            }
            self.start_merge_check(now, p);
        }
    }

    /// `id` is in our ring: nothing to probe there.
    fn same_ring(&mut self, id: RingPos) {
        self.merge.remembered.retain(|r| r.peer.id != id);
        if self.merge.remembered.is_empty() {
            self.merge.remembered = Vec::new();
        }
    }

    /// Whether `id` is our predecessor, a successor or a finger.
    pub(super) fn in_view(&self, id: RingPos) -> bool {
        self.predecessor.as_ref().is_some_and(|p| p.id == id)
            || self.successors.iter().any(|p| p.id == id)
            || self.fingers.iter().any(|(_, p)| p.id == id)
    }
}
