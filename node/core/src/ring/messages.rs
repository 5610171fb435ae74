//! The ring's wire types: peers, ids, requests and responses, and what the
//! state machine hands its driver (transmits, events, lookup results).

use serde::{Deserialize, Serialize};

use crate::id::RingPos;

/// A node on the ring: where it sits and where it can be reached.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Peer<A> {
    /// Its ring position (derived from its public key).
    pub id: RingPos,
    /// Where to send it requests.
    pub addr: A,
}

/// Identifies one of our outgoing requests; the driver hands it back with the
/// outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RequestId(pub u64);

/// Identifies a lookup started with [`RingNode::lookup`](super::RingNode::lookup).
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
    /// Ring unification: "these nodes may belong to a ring other than yours".
    /// The receiver looks up (at most [`MERGE_PEERS`](super::MERGE_PEERS)
    /// of) them in its own ring and introduces each one missing there to
    /// that ring's nodes around it; it adopts none of them before they
    /// answered it themselves. Answered with `Ack`.
    Merge {
        /// Nodes of the sender's ring, usually two consecutive ones.
        peers: Vec<Peer<A>>,
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
    /// Answer to `Notify`, `Ping`, `Leave` and `Merge`.
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
    /// A lookup started with [`RingNode::lookup`](super::RingNode::lookup) finished.
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
    /// The owner the lookup reached is alive but does not claim the key (it
    /// does not know its predecessor, or the key is not between the two): a
    /// hop lied, or the ring is still repairing. Try again.
    #[error("owner {0} does not claim the key")]
    OwnerUnverified(RingPos),
}
