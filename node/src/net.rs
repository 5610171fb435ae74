//! The node's network side under its historical paths: a re-export facade.
//!
//! The code lives in [`node`](crate::node) (a node, its config and start-up),
//! [`ring_actor`](crate::ring_actor) (the actor driving the ring of
//! `chorus-core`) and [`rpc`](crate::rpc) (the RPC server, the dispatch of
//! requests, and [`call_node`]). Every `chorus_node::net::…` path that tests,
//! benches, examples and other crates use keeps working through here; code
//! inside this crate imports from those modules instead.

pub use crate::node::{Node, NodeConfig, NodeError, default_cores};
pub use crate::ring_actor::{RingError, RingHandle};
pub use crate::rpc::{SMALL_REQUEST, ServeLimits, call_node};
