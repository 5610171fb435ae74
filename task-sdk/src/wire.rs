//! The messages nodes and clients exchange, one request and one response per stream.

use std::net::SocketAddr;

use chorus_core::RingPos;
use chorus_core::ring;
use serde::{Deserialize, Serialize};

use crate::capacity::SignedCapacity;
use crate::job::{JobRequest, JobResponse, PeerList};

/// Most capacity records carried by one ring message.
pub const MAX_GOSSIP: usize = 8;

/// A peer as the wire names it: ring position and address.
pub type Peer = ring::Peer<SocketAddr>;

/// A request on one bidirectional stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Ring maintenance and lookup steps between nodes, with capacity records
    /// riding along (the sender's own first).
    Ring {
        /// The ring message.
        msg: ring::Request<SocketAddr>,
        /// Signed capacity records (at most [`MAX_GOSSIP`]).
        capacity: Vec<SignedCapacity>,
    },
    /// The capacity records this node knows (for `chorus peers`).
    Peers,
    /// Jobs: submission, progress, results, work and replication.
    Job(JobRequest),
    /// This node's view of the ring (for `chorus ring`).
    RingView,
    /// Resolve the owner of a key with an iterative lookup started at this node.
    Lookup {
        /// The ring position to resolve.
        key: RingPos,
    },
}

/// The answer to a [`Request`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// Answer to [`Request::Ring`], with capacity records riding along (the
    /// responder's own first).
    Ring {
        /// The ring message.
        msg: ring::Response<SocketAddr>,
        /// Signed capacity records (at most [`MAX_GOSSIP`]).
        capacity: Vec<SignedCapacity>,
    },
    /// Answer to [`Request::Peers`].
    Peers(PeerList),
    /// Answer to [`Request::Job`].
    Job(JobResponse),
    /// Answer to [`Request::RingView`].
    RingView(RingView),
    /// Answer to [`Request::Lookup`].
    Lookup(LookupAnswer),
    /// The request was refused or failed; nothing changed on the node.
    Error(WireError),
}

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

/// An error reported to the peer on the stream that caused it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct WireError {
    /// Stable short name (`malformed`, `oversized`, `forbidden`, `lookup`, ...).
    pub kind: String,
    /// Human-readable detail.
    pub message: String,
}

impl WireError {
    /// A new error of `kind`.
    pub fn new(kind: &str, message: impl Into<String>) -> Self {
        WireError {
            kind: kind.to_string(),
            message: message.into(),
        }
    }
}
