//! Membership: join (and joining again when cut off), graceful leave, a
//! neighbour's leave, and the successor list and finger table bookkeeping.

use super::lookup::{LookupKind, LookupState};
use super::{Address, Event, LookupDone, LookupError, Peer, Purpose, Request, RingNode, Time};

impl<A: Address> RingNode<A> {
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

    pub(super) fn try_join(&mut self) {
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
        self.lookups
            .insert(lid, LookupState::new(key, LookupKind::Join));
        self.send(
            None,
            addr,
            Request::FindSuccessor { key },
            Purpose::Lookup(lid),
        );
    }

    pub(super) fn join_done(&mut self, now: Time, result: Result<LookupDone<A>, LookupError>) {
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
    pub(super) fn peer_left(
        &mut self,
        peer: Peer<A>,
        predecessor: Option<Peer<A>>,
        successors: Vec<Peer<A>>,
    ) {
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
    pub(super) fn rejoin_if_isolated(&mut self) {
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

    pub(super) fn set_finger(&mut self, i: u8, p: Peer<A>) {
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

    pub(super) fn remove_finger(&mut self, i: u8) {
        if let Ok(k) = self.fingers.binary_search_by_key(&i, |(j, _)| *j) {
            self.fingers.remove(k);
        }
    }

    /// Replace the successor list. The first entry (the node we just heard
    /// from) stays first; the others are kept only if they lie after it and
    /// before us, sorted by distance from us, without duplicates, cut to `r`.
    /// Sorting rather than trusting the order keeps a stale or hostile entry
    /// from cutting the list short. `[me]` if nothing is left.
    pub(super) fn set_successors(&mut self, list: Vec<Peer<A>>) {
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
    pub(super) fn drop_peer(&mut self, peer: Peer<A>) {
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
            self.remember(peer.clone(), false);
            self.events.push_back(Event::PeerDropped(peer));
        }
    }
}

#[derive(Debug)]
pub(super) enum JoinState<A> {
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
