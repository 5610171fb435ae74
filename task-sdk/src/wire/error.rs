//! Errors reported on the wire: a typed kind with a stable string form, and
//! a message for people.

use serde::{Deserialize, Serialize};

/// An error reported to the peer on the stream that caused it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct WireError {
    /// What went wrong, as a typed kind with a stable string form.
    pub kind: ErrorKind,
    /// Human-readable detail.
    pub message: String,
}

impl WireError {
    /// A new error of `kind`.
    pub fn new(kind: impl Into<ErrorKind>, message: impl Into<String>) -> Self {
        WireError {
            kind: kind.into(),
            message: message.into(),
        }
    }
}

/// The kinds of [`WireError`]. On the wire (and in metrics labels) each is
/// its stable snake_case name ([`ErrorKind::as_str`]); a name this version
/// does not know decodes as [`ErrorKind::Other`], so newer peers can add
/// kinds without breaking older ones.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum ErrorKind {
    /// A frame whose body does not decode.
    Malformed,
    /// A frame over its size cap.
    Oversized,
    /// A stream that ended inside a frame.
    Truncated,
    /// A stream error.
    Stream,
    /// A request not delivered whole in time.
    ReadTimeout,
    /// The one "busy" answer: no room for this request or batch now (memory,
    /// task slots, or limits this worker will not run); ask again or elsewhere.
    Busy,
    /// A message could not be encoded.
    Encode,
    /// The sender may not do this (a stranger's cancel, a copy from a node
    /// that does not coordinate the job).
    Forbidden,
    /// No such job here or at its coordinator.
    UnknownJob,
    /// No such bundle here.
    UnknownBundle,
    /// A job copy that does not match its id.
    BadJob,
    /// A bundle that is malformed, tampered or unsigned.
    BadBundle,
    /// A policy that cannot be met on its own terms.
    BadPolicy,
    /// A job with no tasks.
    NoTasks,
    /// A job over the task cap.
    TooManyTasks,
    /// A task input over the job's input cap.
    InputTooLarge,
    /// A module over the job's module cap.
    ModuleTooLarge,
    /// More replicas than live workers.
    NotEnoughWorkers,
    /// The coordinator (or the owner of a key) could not be reached.
    Unavailable,
    /// A lookup failed.
    Lookup,
    /// A call to another node failed.
    Transport,
    /// A bundle could not be fetched.
    Bundle,
    /// The sandbox failed (not the task).
    Sandbox,
    /// The node could not store the job.
    Store,
    /// The node is stopping.
    Stopped,
    /// A batch for a job whose signed terms the worker could not get from
    /// the sender (no such job there, or terms that do not verify).
    UnsignedJob,
    /// A batch whose tasks, limits, policy or bundle differ from the job's
    /// signed terms.
    TermsMismatch,
    /// A batch over the most tasks a worker takes at once, whatever its load.
    BatchTooLarge,
    /// A bug on the node.
    Internal,
    /// The node holds no blob of that id.
    UnknownBlob,
    /// A blob index or chunk that does not check out (wrong hash, length,
    /// encoding, or a chunk of no upload in progress).
    BadBlob,
    /// The node's blob store has no room for it: its bound is taken by
    /// blobs in use and uploads in progress. Retry later or elsewhere.
    BlobStoreFull,
    /// A kind this version does not know (its name as sent).
    Other(String),
}

impl ErrorKind {
    const NAMED: [(ErrorKind, &'static str); 32] = [
        (ErrorKind::Malformed, "malformed"),
        (ErrorKind::Oversized, "oversized"),
        (ErrorKind::Truncated, "truncated"),
        (ErrorKind::Stream, "stream"),
        (ErrorKind::ReadTimeout, "read_timeout"),
        (ErrorKind::Busy, "busy"),
        (ErrorKind::Encode, "encode"),
        (ErrorKind::Forbidden, "forbidden"),
        (ErrorKind::UnknownJob, "unknown_job"),
        (ErrorKind::UnknownBundle, "unknown_bundle"),
        (ErrorKind::BadJob, "bad_job"),
        (ErrorKind::BadBundle, "bad_bundle"),
        (ErrorKind::BadPolicy, "bad_policy"),
        (ErrorKind::NoTasks, "no_tasks"),
        (ErrorKind::TooManyTasks, "too_many_tasks"),
        (ErrorKind::InputTooLarge, "input_too_large"),
        (ErrorKind::ModuleTooLarge, "module_too_large"),
        (ErrorKind::NotEnoughWorkers, "not_enough_workers"),
        (ErrorKind::Unavailable, "unavailable"),
        (ErrorKind::Lookup, "lookup"),
        (ErrorKind::Transport, "transport"),
        (ErrorKind::Bundle, "bundle"),
        (ErrorKind::Sandbox, "sandbox"),
        (ErrorKind::Store, "store"),
        (ErrorKind::Stopped, "stopped"),
        (ErrorKind::UnsignedJob, "unsigned_job"),
        (ErrorKind::TermsMismatch, "terms_mismatch"),
        (ErrorKind::BatchTooLarge, "batch_too_large"),
        (ErrorKind::Internal, "internal"),
        (ErrorKind::UnknownBlob, "unknown_blob"),
        (ErrorKind::BadBlob, "bad_blob"),
        (ErrorKind::BlobStoreFull, "blob_store_full"),
    ];

    /// The stable name, as sent on the wire and used in metrics labels.
    pub fn as_str(&self) -> &str {
        if let ErrorKind::Other(s) = self {
            return s;
        }
        Self::NAMED
            .iter()
            .find(|(k, _)| k == self)
            .map_or("other", |(_, n)| n)
    }

    /// Whether asking again (here or at another node) may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ErrorKind::Busy | ErrorKind::Unavailable | ErrorKind::BlobStoreFull
        )
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for ErrorKind {
    fn from(s: &str) -> Self {
        Self::NAMED
            .iter()
            .find(|(_, n)| *n == s)
            .map_or_else(|| ErrorKind::Other(s.to_string()), |(k, _)| k.clone())
    }
}

impl From<String> for ErrorKind {
    fn from(s: String) -> Self {
        ErrorKind::from(s.as_str())
    }
}

impl From<ErrorKind> for String {
    fn from(k: ErrorKind) -> String {
        k.as_str().to_string()
    }
}

impl PartialEq<str> for ErrorKind {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ErrorKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds_round_trip_by_their_stable_names() {
        for (kind, name) in ErrorKind::NAMED {
            assert_eq!(kind.as_str(), name);
            assert_eq!(ErrorKind::from(name), kind);
            let bytes = rmp_serde::to_vec(&kind).unwrap();
            assert_eq!(rmp_serde::from_slice::<String>(&bytes).unwrap(), name);
            assert_eq!(rmp_serde::from_slice::<ErrorKind>(&bytes).unwrap(), kind);
        }
        let future = ErrorKind::from("rate_limited");
        assert_eq!(future, ErrorKind::Other("rate_limited".into()));
        assert_eq!(future.as_str(), "rate_limited");
        assert!(ErrorKind::Busy.is_retryable() && !ErrorKind::Forbidden.is_retryable());
    }
}
