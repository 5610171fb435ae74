//! What this node donates, and what it has learned of other nodes.
//!
//! The node's own record is re-signed whenever its free slots change (at most
//! every [`REFRESH`]) and rides on every ring message it sends or answers,
//! together with a few records of others (gossip), so records spread along ring
//! maintenance traffic and lookup replies. A record from the wire is kept only
//! if its signature holds and it is younger than [`MAX_AGE_MS`]; expired ones
//! are dropped when read.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chorus_core::RingPos;
use chorus_sdk::capacity::{CapacityError, CapacityRecord, SignedCapacity};
use chorus_sdk::identity::Identity;
use chorus_sdk::wire::MAX_GOSSIP;
use dashmap::DashMap;
use tracing::debug;

/// Records older than this are dropped (ms). Nodes refresh theirs every few
/// seconds, so a record this old belongs to a node that stopped talking.
pub const MAX_AGE_MS: u64 = 30_000;
/// The own record is re-signed at least this often.
pub const REFRESH: Duration = Duration::from_secs(5);
/// Most records of other nodes kept; the oldest go first.
pub const MAX_KNOWN: usize = 4096;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The capacity table of a node: its own signed record and the verified
/// records of others. Cheap to clone.
#[derive(Clone)]
pub struct Capacity {
    inner: Arc<Inner>,
}

struct Inner {
    identity: Arc<Identity>,
    me: RingPos,
    own: RwLock<SignedCapacity>,
    known: DashMap<RingPos, SignedCapacity>,
    rotate: AtomicU64,
}

impl std::fmt::Debug for Capacity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capacity")
            .field("me", &self.inner.me)
            .field("known", &self.inner.known.len())
            .finish()
    }
}

impl Capacity {
    /// A table whose own record is `record`, signed by `identity`.
    pub fn new(identity: Arc<Identity>, record: CapacityRecord) -> Result<Self, CapacityError> {
        let own = SignedCapacity::sign(record, &identity)?;
        Ok(Capacity {
            inner: Arc::new(Inner {
                me: identity.ring_pos(),
                identity,
                own: RwLock::new(own),
                known: DashMap::new(),
                rotate: AtomicU64::new(0),
            }),
        })
    }

    /// This node's current signed record.
    pub fn own(&self) -> SignedCapacity {
        match self.inner.own.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Re-signs the own record with `free_slots` and a fresh timestamp, if the
    /// slots changed or the record is older than [`REFRESH`].
    pub fn refresh(&self, free_slots: u32) {
        let now = now_ms();
        let current = self.own();
        let stale = now.saturating_sub(current.record.timestamp_ms) >= REFRESH.as_millis() as u64;
        if !stale && current.record.free_slots == free_slots {
            return;
        }
        let mut record = current.record;
        record.free_slots = free_slots;
        record.timestamp_ms = now;
        match SignedCapacity::sign(record, &self.inner.identity) {
            Ok(signed) => match self.inner.own.write() {
                Ok(mut g) => *g = signed,
                Err(p) => *p.into_inner() = signed,
            },
            Err(e) => debug!(error = %e, "could not re-sign the capacity record"),
        }
    }

    /// Takes records from the wire: each is kept if its signature holds, it is
    /// fresh, and it is newer than what we have. Returns how many were kept.
    pub fn absorb(&self, records: &[SignedCapacity]) -> usize {
        let now = now_ms();
        let mut kept = 0;
        for s in records.iter().take(MAX_GOSSIP) {
            let Ok(r) = s.verify(now, MAX_AGE_MS) else {
                continue;
            };
            let id = r.peer_id().ring_pos();
            if id == self.inner.me {
                continue;
            }
            let newer = self
                .inner
                .known
                .get(&id)
                .is_none_or(|have| have.record.timestamp_ms < r.timestamp_ms);
            if newer {
                self.inner.known.insert(id, s.clone());
                kept += 1;
            }
        }
        if self.inner.known.len() > MAX_KNOWN {
            self.evict(now);
        }
        kept
    }

    fn evict(&self, now: u64) {
        self.inner
            .known
            .retain(|_, s| now.saturating_sub(s.record.timestamp_ms) <= MAX_AGE_MS);
        let excess = self.inner.known.len().saturating_sub(MAX_KNOWN);
        if excess > 0 {
            let mut by_age: Vec<(u64, RingPos)> = self
                .inner
                .known
                .iter()
                .map(|e| (e.value().record.timestamp_ms, *e.key()))
                .collect();
            by_age.sort();
            for (_, id) in by_age.into_iter().take(excess) {
                self.inner.known.remove(&id);
            }
        }
    }

    /// Forgets a node (it was found dead).
    pub fn forget(&self, id: RingPos) {
        self.inner.known.remove(&id);
    }

    /// What rides on one ring message: the own record first, then up to
    /// [`MAX_GOSSIP`]` - 1` fresh records of others, rotating through the table.
    pub fn gossip(&self) -> Vec<SignedCapacity> {
        let mut out = vec![self.own()];
        let n = self.inner.known.len();
        if n == 0 {
            return out;
        }
        let now = now_ms();
        let start = (self.inner.rotate.fetch_add(3, Ordering::Relaxed) as usize) % n;
        let fresh = self
            .inner
            .known
            .iter()
            .skip(start)
            .chain(self.inner.known.iter().take(start))
            .filter(|e| now.saturating_sub(e.value().record.timestamp_ms) <= MAX_AGE_MS)
            .take(MAX_GOSSIP - 1)
            .map(|e| e.value().clone())
            .collect::<Vec<_>>();
        out.extend(fresh);
        out
    }

    /// Every fresh record, the own first, the others by ring position.
    pub fn list(&self) -> Vec<SignedCapacity> {
        let now = now_ms();
        let mut others: Vec<(RingPos, SignedCapacity)> = self
            .inner
            .known
            .iter()
            .filter(|e| now.saturating_sub(e.value().record.timestamp_ms) <= MAX_AGE_MS)
            .map(|e| (*e.key(), e.value().clone()))
            .collect();
        others.sort_by_key(|(id, _)| *id);
        let mut out = vec![self.own()];
        out.extend(others.into_iter().map(|(_, s)| s));
        out
    }

    /// The fresh record of `id`, if known (the own one for this node).
    pub fn get(&self, id: RingPos) -> Option<CapacityRecord> {
        if id == self.inner.me {
            return Some(self.own().record);
        }
        let s = self.inner.known.get(&id)?;
        (now_ms().saturating_sub(s.record.timestamp_ms) <= MAX_AGE_MS).then(|| s.record.clone())
    }

    /// Metrics addresses of every node known, this one included.
    pub fn metrics_addrs(&self) -> Vec<SocketAddr> {
        self.list()
            .iter()
            .filter_map(|s| s.record.metrics_addr)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(addr: &str) -> CapacityRecord {
        CapacityRecord {
            public_key: [0; 32],
            addr: addr.parse().unwrap(),
            metrics_addr: None,
            cores: 2,
            memory_mb: 1024,
            free_slots: 2,
            fuel_per_sec: 1_000_000_000,
            version: "test".into(),
            timestamp_ms: now_ms(),
        }
    }

    fn table() -> Capacity {
        let id = Arc::new(Identity::generate().unwrap());
        Capacity::new(id, record("127.0.0.1:1")).unwrap()
    }

    #[test]
    fn keeps_verified_fresh_records_only() {
        let a = table();
        let b = table();
        let c = table();
        assert_eq!(a.absorb(&b.gossip()), 1);
        // Same record again: not newer.
        assert_eq!(a.absorb(&b.gossip()), 0);
        // Our own record is not "known".
        assert_eq!(a.absorb(&a.gossip()), 0);
        let mut forged = c.own();
        forged.record.free_slots = 99;
        assert_eq!(a.absorb(&[forged]), 0);
        let mut old = record("127.0.0.1:3");
        old.timestamp_ms = now_ms() - MAX_AGE_MS - 1;
        let old = SignedCapacity::sign(old, &Identity::generate().unwrap()).unwrap();
        assert_eq!(a.absorb(&[old]), 0);
        assert_eq!(a.list().len(), 2);
        // Records travel onward: c learns b through a.
        assert_eq!(c.absorb(&a.gossip()), 2);
        assert_eq!(c.list().len(), 3);
    }

    #[test]
    fn refresh_re_signs_with_new_slots() {
        let a = table();
        let before = a.own();
        a.refresh(0);
        let after = a.own();
        assert_eq!(after.record.free_slots, 0);
        assert!(after.verify(now_ms(), MAX_AGE_MS).is_ok());
        assert_ne!(before.signature, after.signature);
    }
}
