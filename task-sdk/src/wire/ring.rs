//! The ring's messages as the wire carries them: how peers are named, what
//! a node reports of its ring and of its lookups, and the capacity records
//! that ride along.

use std::net::SocketAddr;

use chorus_core::RingPos;
use chorus_core::ring;
use serde::{Deserialize, Serialize};

use crate::capacity::SignedCapacity;

/// Most capacity records carried by one ring message.
pub const MAX_GOSSIP: usize = 8;

/// A peer as the wire names it: ring position and address.
pub type Peer = ring::Peer<SocketAddr>;

/// A node's view of the ring.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RingView {
    /// The node itself.
    pub me: Peer,
    /// Its predecessor, if known.
    pub predecessor: Option<Peer>,
    /// Its successor list, nearest first.
    pub successors: Vec<Peer>,
    /// Distinct finger entries in finger order.
    pub fingers: Vec<Peer>,
}

/// The result of a lookup.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LookupAnswer {
    /// The key looked up.
    pub key: RingPos,
    /// The live node that owns it.
    pub owner: Peer,
    /// Remote lookup steps taken.
    pub hops: u32,
}

/// Capacity records a node knows, for `chorus peers`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerList {
    /// Verified, unexpired records, the node's own first.
    pub records: Vec<SignedCapacity>,
}
