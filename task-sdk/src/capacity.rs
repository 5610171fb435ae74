//! Signed capacity records: what a node donates, as it announces it over the ring.
//!
//! A record is trusted for nothing beyond its signature and its age: the key that
//! signed it must be the key whose hash is the record's peer id, and a record
//! older than the reader's limit (or stamped too far in the future) is refused.

use std::net::SocketAddr;

use chorus_core::RingPos;
use serde::{Deserialize, Serialize};

use crate::identity::{Identity, PeerId, verify};

/// Domain separation for capacity signatures.
const CONTEXT: &[u8] = b"chorus capacity v1\0";

/// Clock skew tolerated for records stamped in the future, in ms.
pub const MAX_FUTURE_SKEW_MS: u64 = 5_000;

/// What a node donates and how to reach it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapacityRecord {
    /// The node's Ed25519 public key (its peer id is the SHA-256 of it).
    pub public_key: [u8; 32],
    /// Where the node's QUIC endpoint listens.
    pub addr: SocketAddr,
    /// Where the node serves Prometheus metrics, if it does.
    pub metrics_addr: Option<SocketAddr>,
    /// Cores donated (task slots in all).
    pub cores: u32,
    /// Memory donated, in MiB.
    pub memory_mb: u64,
    /// Task slots free when the record was made.
    pub free_slots: u32,
    /// Measured speed: wasm fuel per second of one slot.
    pub fuel_per_sec: u64,
    /// Software version of the node.
    pub version: String,
    /// When the record was made, ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// The most each limit of a task may be on this node (what it donates at
    /// most): a coordinator refuses at submission a job whose limits fewer
    /// than `replicas` known nodes accept. `None`: not announced.
    #[serde(default)]
    pub ceiling: Option<crate::bundle::Limits>,
}

/// A capacity record with its signature, as it travels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedCapacity {
    /// The record.
    pub record: CapacityRecord,
    /// Ed25519 signature by `record.public_key` over the record's encoding.
    pub signature: Vec<u8>,
}

/// Why a capacity record was refused. Nothing is stored when one is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapacityError {
    /// The record could not be encoded for signing.
    #[error("capacity record could not be encoded: {0}")]
    Encode(String),
    /// The signature does not verify with the record's key.
    #[error("capacity record of {0} has a bad signature")]
    BadSignature(RingPos),
    /// The record is older than the reader accepts.
    #[error("capacity record of {peer} is {age_ms} ms old (limit {max_age_ms} ms)")]
    Expired {
        /// Whose record.
        peer: RingPos,
        /// Its age.
        age_ms: u64,
        /// The limit.
        max_age_ms: u64,
    },
    /// The record is stamped in the future beyond the tolerated skew.
    #[error("capacity record of {0} is stamped in the future")]
    FromTheFuture(RingPos),
}

impl CapacityRecord {
    /// The peer id of the node this record describes.
    pub fn peer_id(&self) -> PeerId {
        PeerId::from_public_key(&self.public_key)
    }

    fn signed_bytes(&self) -> Result<Vec<u8>, CapacityError> {
        let mut out = CONTEXT.to_vec();
        rmp_serde::encode::write(&mut out, self)
            .map_err(|e| CapacityError::Encode(e.to_string()))?;
        Ok(out)
    }
}

impl SignedCapacity {
    /// Signs `record` with `identity`; the record's key is set to the identity's.
    pub fn sign(mut record: CapacityRecord, identity: &Identity) -> Result<Self, CapacityError> {
        record.public_key = identity.public_key();
        let signature = identity.sign(&record.signed_bytes()?).to_vec();
        Ok(SignedCapacity { record, signature })
    }

    /// Checks signature and age at `now_ms`; returns the record if it may be used.
    pub fn verify(&self, now_ms: u64, max_age_ms: u64) -> Result<&CapacityRecord, CapacityError> {
        let r = &self.record;
        let peer = r.peer_id().ring_pos();
        if !verify(&r.public_key, &r.signed_bytes()?, &self.signature) {
            return Err(CapacityError::BadSignature(peer));
        }
        if r.timestamp_ms > now_ms.saturating_add(MAX_FUTURE_SKEW_MS) {
            return Err(CapacityError::FromTheFuture(peer));
        }
        let age_ms = now_ms.saturating_sub(r.timestamp_ms);
        if age_ms > max_age_ms {
            return Err(CapacityError::Expired {
                peer,
                age_ms,
                max_age_ms,
            });
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(ts: u64) -> CapacityRecord {
        CapacityRecord {
            public_key: [0; 32],
            addr: "127.0.0.1:7001".parse().unwrap(),
            metrics_addr: Some("127.0.0.1:9001".parse().unwrap()),
            cores: 3,
            memory_mb: 4096,
            free_slots: 2,
            fuel_per_sec: 1_300_000_000,
            version: "0.1.0".into(),
            timestamp_ms: ts,
            ceiling: None,
        }
    }

    #[test]
    fn signed_records_verify_and_name_their_signer() {
        let id = Identity::generate().unwrap();
        let s = SignedCapacity::sign(record(1_000), &id).unwrap();
        let r = s.verify(2_000, 60_000).unwrap();
        assert_eq!(r.peer_id(), id.peer_id());
        let bytes = rmp_serde::to_vec(&s).unwrap();
        let back: SignedCapacity = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back.verify(2_000, 60_000).unwrap(), r);
    }

    #[test]
    fn tampering_age_and_future_stamps_are_refused() {
        let id = Identity::generate().unwrap();
        let s = SignedCapacity::sign(record(100_000), &id).unwrap();

        let mut more_slots = s.clone();
        more_slots.record.free_slots = 64;
        assert!(matches!(
            more_slots.verify(100_000, 60_000),
            Err(CapacityError::BadSignature(_))
        ));

        // Someone else's key on our signature: refused, so no one can speak for another node.
        let other = Identity::generate().unwrap();
        let mut stolen = s.clone();
        stolen.record.public_key = other.public_key();
        assert!(matches!(
            stolen.verify(100_000, 60_000),
            Err(CapacityError::BadSignature(_))
        ));

        let mut bad_sig = s.clone();
        bad_sig.signature[0] ^= 1;
        assert!(matches!(
            bad_sig.verify(100_000, 60_000),
            Err(CapacityError::BadSignature(_))
        ));
        bad_sig.signature.truncate(3);
        assert!(matches!(
            bad_sig.verify(100_000, 60_000),
            Err(CapacityError::BadSignature(_))
        ));

        assert!(matches!(
            s.verify(200_000, 60_000),
            Err(CapacityError::Expired {
                age_ms: 100_000,
                ..
            })
        ));
        assert!(matches!(
            s.verify(10_000, 60_000),
            Err(CapacityError::FromTheFuture(_))
        ));
        assert!(s.verify(100_000 - MAX_FUTURE_SKEW_MS, 60_000).is_ok());
    }
}
