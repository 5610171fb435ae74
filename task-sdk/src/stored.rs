//! The records a node keeps in its job store, and their codec: a job's spec,
//! its small mutable flags, one decided task, and the coordinator's trust
//! records of workers. Values are MessagePack (named fields).
//!
//! The node's store (`chorus-node`'s `jobs::store`) keeps these bytes in its
//! database and reads them back only through the decoders here, so a record
//! damaged on disk, or written by other code, is an error and never a panic,
//! and the fuzzers (`fuzz/`) reach the same code without the node's sandbox.

use chorus_core::jobs::Reputation;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::identity::PeerId;
use crate::job::{DecidedTask, JobSpec};

/// A job's small mutable state beside its spec (the store's `flags` table),
/// kept apart so that a cancel or a failover never rewrites the spec.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobFlags {
    /// The submitter's cancel signature, when cancelled.
    #[serde(default)]
    pub cancel: Option<ByteBuf>,
    /// Times the job moved to a new coordinator.
    #[serde(default)]
    pub failovers: u32,
}

/// Why a stored record could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Not MessagePack of the expected shape.
    #[error(transparent)]
    Msgpack(#[from] rmp_serde::decode::Error),
    /// The job's flags are missing beside its spec.
    #[error("missing")]
    Missing,
    /// A decided task stored under one task index names another.
    #[error("stored as task {key} but is task {found}")]
    WrongTask {
        /// The index it is stored under.
        key: u32,
        /// The index it names.
        found: u32,
    },
    /// The trust records decode but their settings cannot be used: their
    /// lowest score is above their highest.
    #[error("unusable trust records: lowest score {min} above highest {max}")]
    UnusableTrust {
        /// The lowest score.
        min: i32,
        /// The highest score.
        max: i32,
    },
}

impl JobFlags {
    /// The stored bytes of these flags.
    pub fn encode(&self) -> Result<Vec<u8>, rmp_serde::encode::Error> {
        rmp_serde::to_vec_named(self)
    }

    /// Flags read back; `None` (no row beside a spec) is [`RecordError::Missing`].
    pub fn decode(bytes: Option<&[u8]>) -> Result<JobFlags, RecordError> {
        Ok(rmp_serde::from_slice(bytes.ok_or(RecordError::Missing)?)?)
    }
}

/// The stored bytes of a job's spec.
pub fn encode_spec(spec: &JobSpec) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    rmp_serde::to_vec_named(spec)
}

/// A job's spec read back. Its signature and bundle were checked when the
/// job was accepted; a caller that cannot trust its disk checks them again
/// with [`JobSpec::verify`].
pub fn decode_spec(bytes: &[u8]) -> Result<JobSpec, RecordError> {
    Ok(rmp_serde::from_slice(bytes)?)
}

/// The stored bytes of a decided task (stored under its own `task`).
pub fn encode_task(task: &DecidedTask) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    rmp_serde::to_vec_named(task)
}

/// A decided task read back from under index `key`; a record that names
/// another task is [`RecordError::WrongTask`].
pub fn decode_task(key: u32, bytes: &[u8]) -> Result<DecidedTask, RecordError> {
    let task: DecidedTask = rmp_serde::from_slice(bytes)?;
    if task.task != key {
        return Err(RecordError::WrongTask {
            key,
            found: task.task,
        });
    }
    Ok(task)
}

/// The stored bytes of the coordinator's trust records.
pub fn encode_trust(table: &Reputation<PeerId>) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    rmp_serde::to_vec_named(table)
}

/// The coordinator's trust records read back; settings a table cannot run
/// on are [`RecordError::UnusableTrust`] (the node then starts afresh).
pub fn decode_trust(bytes: &[u8]) -> Result<Reputation<PeerId>, RecordError> {
    let table: Reputation<PeerId> = rmp_serde::from_slice(bytes)?;
    let config = table.config();
    if !config.is_usable() {
        return Err(RecordError::UnusableTrust {
            min: config.min,
            max: config.max,
        });
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use chorus_core::jobs::ReputationConfig;

    use super::*;

    /// Found by the `store` fuzz target (`fuzz/corpus/store/crash_trust_min_above_max`):
    /// trust records whose lowest score is above the highest decoded, and
    /// the coordinator's next vote panicked in `i32::clamp`.
    #[test]
    fn trust_records_with_a_lowest_score_above_the_highest_are_refused() {
        let good = Reputation::<PeerId>::default();
        assert!(decode_trust(&encode_trust(&good).unwrap()).is_ok());
        let bad = Reputation::<PeerId>::new(ReputationConfig {
            min: 64_536,
            max: 1000,
            ..ReputationConfig::default()
        });
        assert!(matches!(
            decode_trust(&encode_trust(&bad).unwrap()),
            Err(RecordError::UnusableTrust {
                min: 64_536,
                max: 1000
            })
        ));
    }

    #[test]
    fn records_round_trip_and_damage_is_an_error() {
        let flags = JobFlags {
            cancel: Some(ByteBuf::from(vec![9; 64])),
            failovers: 2,
        };
        let bytes = flags.encode().unwrap();
        assert_eq!(JobFlags::decode(Some(&bytes)).unwrap(), flags);
        assert!(matches!(JobFlags::decode(None), Err(RecordError::Missing)));
        assert!(matches!(decode_spec(b"\xc1"), Err(RecordError::Msgpack(_))));
    }
}
