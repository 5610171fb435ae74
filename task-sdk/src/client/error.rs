//! The errors of the client, one enum for every call, each variant saying
//! whether anything changed on the grid.

use std::net::SocketAddr;

use crate::bundle::BundleError;
use crate::job::JobError;
use crate::transport::TransportError;
use crate::wire::{ErrorKind, WireError};

/// Errors of the client. None of them leaves the client unusable.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The local QUIC endpoint or its identity could not be created; nothing was sent.
    #[error("client endpoint: {0}")]
    Endpoint(String),
    /// No node answered (the last one tried is named), after every retry.
    /// For a submission, whether the job was stored is unknown: submitting
    /// the same spec again is safe (it names the same job).
    #[error("node {node}: {source}")]
    Transport {
        /// The last node tried.
        node: SocketAddr,
        /// Why the call failed.
        source: TransportError,
    },
    /// A node refused the request with a wire error (`unknown_job`,
    /// `bad_bundle`, `bad_policy`, `not_enough_workers`, `forbidden`, ...).
    /// Nothing changed on the grid.
    #[error("node {node} refused: {error}")]
    Node {
        /// The node that answered.
        node: SocketAddr,
        /// Its error: [`WireError::kind`] is stable, `message` is for people.
        error: WireError,
    },
    /// A node answered something that is not an answer to the request.
    #[error("unexpected answer from {node}: {what}")]
    Unexpected {
        /// The node that answered.
        node: SocketAddr,
        /// What came back.
        what: String,
    },
    /// The job could not be built (no inputs, bad policy, input over the cap);
    /// nothing was sent.
    #[error(transparent)]
    Job(#[from] JobError),
    /// The bundle could not be built or signed; nothing was sent.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// The job's encoding is larger than a node accepts in one frame
    /// ([`crate::job::JOB_FRAME_CAP`]); nothing was sent. Split its inputs
    /// over several jobs.
    #[error(
        "the job is {bytes} bytes encoded, over the {cap} bytes a node accepts in one submission; split its inputs over several jobs"
    )]
    TooLarge {
        /// The encoded size.
        bytes: usize,
        /// The cap.
        cap: usize,
    },
    /// A typed input could not be encoded as MessagePack; nothing was sent.
    #[error("cannot encode an input: {0}")]
    Encode(String),
    /// A task has no output to give: it ended in an agreed error, no result
    /// could be accepted, it is not decided yet, or there is no such task.
    #[error("task {task}: {what}")]
    Task {
        /// The task.
        task: u32,
        /// Why it has no output.
        what: String,
    },
    /// A task's output is not the MessagePack encoding of the type asked for.
    #[error("task {task}: cannot decode its output: {source}")]
    Decode {
        /// The task.
        task: u32,
        /// The decoder's error.
        source: rmp_serde::decode::Error,
    },
}

impl ClientError {
    /// The node's wire error kind, when a node refused the request.
    pub fn kind(&self) -> Option<&ErrorKind> {
        match self {
            ClientError::Node { error, .. } => Some(&error.kind),
            _ => None,
        }
    }
}
