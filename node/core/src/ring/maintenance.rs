//! Periodic maintenance (Chord with Zave's corrections): stabilize, notify,
//! rectify, check predecessor and fix fingers.

use super::lookup::LookupKind;
use super::{Address, Peer, Purpose, Request, Response, RingNode, Time};

impl<A: Address> RingNode<A> {
    pub(super) fn stabilize(&mut self, _now: Time) {
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

    pub(super) fn stabilize_response(
        &mut self,
        now: Time,
        target: Option<Peer<A>>,
        response: Response<A>,
    ) {
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
    pub(super) fn adopt_successor(&mut self, _now: Time, succ: Peer<A>, list: Vec<Peer<A>>) {
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
    pub(super) fn rectify(&mut self, _now: Time, peer: Peer<A>) {
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

    pub(super) fn offer_predecessor(&mut self, candidate: Peer<A>) {
        if candidate.id == self.me.id {
            return;
        }
        match &self.predecessor {
            None => self.predecessor = Some(candidate),
            Some(p) if candidate.id.in_open(p.id, self.me.id) => self.predecessor = Some(candidate),
            _ => {}
        }
    }

    pub(super) fn check_predecessor(&mut self) {
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

    pub(super) fn fix_fingers(&mut self, now: Time) {
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
    pub(super) fn finger_found(&mut self, i: u8, owner: Peer<A>) {
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
}
