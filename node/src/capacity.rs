//! What this node donates, and what it has learned of other nodes.
//!
//! The node's own record is re-signed whenever its free slots change (at most
//! every [`REFRESH`]) and rides on every ring message it sends or answers,
//! together with a few records of others (gossip), so records spread along ring
//! maintenance traffic and lookup replies. Expired records are dropped when read.
//!
//! The table decides where replicas go, so it must not be capturable by a
//! stranger with many keys. A record from the wire is kept only if:
//! - its signature holds, it is younger than [`MAX_AGE_MS`] and not stamped
//!   more than [`MAX_FUTURE_SKEW_MS`](chorus_sdk::capacity::MAX_FUTURE_SKEW_MS) ahead;
//! - its key carries the identity proof of work
//!   ([`ID_WORK_BITS`](chorus_sdk::identity::ID_WORK_BITS));
//! - it comes from the node it describes, or it is relayed: a sender may
//!   introduce at most [`RELAY_BUDGET`] identities the table does not know per
//!   [`RELAY_WINDOW_MS`] (updates of known records cost nothing: they are
//!   signed by their subject);
//! - at most [`MAX_PER_PREFIX`] records share a network (an IPv4 /24 or an
//!   IPv6 /48 of the record's address): the first ones stay.
//!
//! Everything else is dropped and counted by reason
//! (`chorus_capacity_records_refused_total`). A node's metrics address is
//! listed in `/sd` only if its IP is the one this node saw the node itself
//! send from.

use std::net::{IpAddr, SocketAddr};
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
/// Most records kept per network (IPv4 /24, IPv6 /48 of the record's address).
pub const MAX_PER_PREFIX: usize = 4;
/// Most identities one sender may introduce per [`RELAY_WINDOW_MS`].
pub const RELAY_BUDGET: u32 = 16;
/// The window of [`RELAY_BUDGET`] (ms).
pub const RELAY_WINDOW_MS: u64 = 60_000;
/// Most senders whose relay budget is tracked; the table of budgets is
/// cleared when it grows past this (senders are ring members: few).
const MAX_SENDERS: usize = 4096;

/// The network a socket address belongs to, for per-network caps: the IPv4
/// /24 or the IPv6 /48 (IPv4-mapped IPv6 counts as IPv4). The same rule as
/// replica diversity's default.
pub fn network_of(addr: &SocketAddr) -> (bool, u128) {
    prefix_of(addr.ip(), 24, 48)
}

/// `ip` cut to its first `v4_bits` (IPv4) or `v6_bits` (IPv6) bits, with
/// whether it is IPv6.
pub fn prefix_of(ip: IpAddr, v4_bits: u32, v6_bits: u32) -> (bool, u128) {
    let mask = |bits: u32, width: u32| -> u128 {
        let bits = bits.min(width);
        if bits == 0 {
            0
        } else {
            (!0u128 >> (128 - bits)) << (width - bits)
        }
    };
    match ip {
        IpAddr::V4(v4) => (false, u128::from(u32::from(v4)) & mask(v4_bits, 32)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => (false, u128::from(u32::from(v4)) & mask(v4_bits, 32)),
            None => (true, u128::from(v6) & mask(v6_bits, 128)),
        },
    }
}

/// Why a record from the wire was dropped (the metric's `reason` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refused {
    /// The signature does not hold.
    BadSignature,
    /// Stamped too far ahead.
    FromTheFuture,
    /// Older than [`MAX_AGE_MS`].
    Expired,
    /// Its key lacks the identity proof of work.
    NoWork,
    /// The sender used up its relay budget.
    RelayBudget,
    /// Its network already has [`MAX_PER_PREFIX`] records.
    PrefixFull,
    /// The table is full of fresher records.
    TableFull,
}

impl Refused {
    /// The stable label.
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::BadSignature => "bad_signature",
            Refused::FromTheFuture => "from_the_future",
            Refused::Expired => "expired",
            Refused::NoWork => "no_work",
            Refused::RelayBudget => "relay_budget",
            Refused::PrefixFull => "prefix_full",
            Refused::TableFull => "table_full",
        }
    }
}

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
    /// The IP each node was seen sending its own record from.
    seen: DashMap<RingPos, IpAddr>,
    /// Per sender: (window start ms, identities introduced in it).
    relayed: DashMap<RingPos, (u64, u32)>,
    /// `inflate-capacity`: the own record always claims every slot free.
    inflated: std::sync::atomic::AtomicBool,
    /// Records dropped, by reason label (also requests refused for lack of
    /// work, counted here by the dispatcher).
    refused: DashMap<&'static str, u64>,
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
                seen: DashMap::new(),
                relayed: DashMap::new(),
                refused: DashMap::new(),
                inflated: std::sync::atomic::AtomicBool::new(false),
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
        let free_slots = if self.inner.inflated.load(Ordering::Relaxed) {
            current.record.cores
        } else {
            free_slots
        };
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

    /// Takes records relayed by nobody in particular (tests, tools): as
    /// [`Capacity::absorb_from`] with every record counted as relayed by one
    /// anonymous sender.
    pub fn absorb(&self, records: &[SignedCapacity]) -> usize {
        self.absorb_records(records, None)
    }

    /// Takes the records a ring message of `sender` carried, its packets seen
    /// from `seen`: its own record (kept, and `seen` remembered as its IP)
    /// and those it relays (within its budget). See the [module docs](self)
    /// for every rule. Returns how many were kept.
    pub fn absorb_from(
        &self,
        records: &[SignedCapacity],
        sender: RingPos,
        seen: SocketAddr,
    ) -> usize {
        self.absorb_records(records, Some((sender, seen)))
    }

    fn absorb_records(
        &self,
        records: &[SignedCapacity],
        sender: Option<(RingPos, SocketAddr)>,
    ) -> usize {
        let now = now_ms();
        let mut kept = 0;
        for s in records.iter().take(MAX_GOSSIP) {
            match self.admit(s, sender, now) {
                Ok(true) => kept += 1,
                Ok(false) => {}
                Err(why) => {
                    debug!(peer = %s.record.peer_id(), reason = why.as_str(), "capacity record refused");
                    self.count_refused(why.as_str());
                }
            }
        }
        if self.inner.known.len() > MAX_KNOWN {
            self.evict(now);
        }
        kept
    }

    /// Counts one refusal under `reason` (`chorus_capacity_records_refused_total`).
    pub fn count_refused(&self, reason: &'static str) {
        *self.inner.refused.entry(reason).or_insert(0) += 1;
    }

    /// Refusals so far, by reason.
    pub fn refused(&self) -> Vec<(&'static str, u64)> {
        self.inner
            .refused
            .iter()
            .map(|e| (*e.key(), *e.value()))
            .collect()
    }

    /// Whether to keep `s`: `Ok(true)` kept, `Ok(false)` not newer than what
    /// we have (or our own), `Err` refused.
    fn admit(
        &self,
        s: &SignedCapacity,
        sender: Option<(RingPos, SocketAddr)>,
        now: u64,
    ) -> Result<bool, Refused> {
        let r = s.verify(now, MAX_AGE_MS).map_err(|e| match e {
            CapacityError::FromTheFuture(_) => Refused::FromTheFuture,
            CapacityError::Expired { .. } => Refused::Expired,
            _ => Refused::BadSignature,
        })?;
        let peer = r.peer_id();
        let id = peer.ring_pos();
        if id == self.inner.me {
            return Ok(false);
        }
        if !peer.has_work() {
            return Err(Refused::NoWork);
        }
        let have = self.inner.known.get(&id).map(|h| h.record.timestamp_ms);
        if have.is_some_and(|t| t >= r.timestamp_ms) {
            return Ok(false);
        }
        let direct = sender.is_some_and(|(from, _)| from == id);
        if have.is_none() {
            // The network's cap first: a record refused for it must not cost
            // its sender an introduction. Otherwise an honest node that
            // relays (as gossip does, over and over) a crowded network's
            // records this table has no room for would spend its whole
            // budget on them, and this table would refuse the new honest
            // nodes it introduces: five keys on one /24 would slow the
            // spread of every newcomer's record.
            let net = network_of(&r.addr);
            let same_net = self
                .inner
                .known
                .iter()
                .filter(|e| {
                    now.saturating_sub(e.value().record.timestamp_ms) <= MAX_AGE_MS
                        && network_of(&e.value().record.addr) == net
                })
                .count();
            if same_net >= MAX_PER_PREFIX {
                return Err(Refused::PrefixFull);
            }
            if !direct {
                self.spend_relay_budget(sender.map(|(from, _)| from), now)?;
            }
        }
        if let Some((_, seen)) = sender
            && direct
        {
            self.inner.seen.insert(id, seen.ip());
        }
        self.inner.known.insert(id, s.clone());
        Ok(true)
    }

    /// Takes one introduction from `sender`'s budget (anonymous senders share one).
    fn spend_relay_budget(&self, sender: Option<RingPos>, now: u64) -> Result<(), Refused> {
        if self.inner.relayed.len() > MAX_SENDERS {
            self.inner.relayed.clear();
        }
        let key = sender.unwrap_or(RingPos(0));
        let mut e = self.inner.relayed.entry(key).or_insert((now, 0));
        if now.saturating_sub(e.0) > RELAY_WINDOW_MS {
            *e = (now, 0);
        }
        if e.1 >= RELAY_BUDGET {
            return Err(Refused::RelayBudget);
        }
        e.1 += 1;
        Ok(())
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

    /// `--chaos inflate-capacity`: from now on the own record claims every
    /// slot free, whatever runs.
    pub fn inflate(&self) {
        self.inner.inflated.store(true, Ordering::Relaxed);
    }

    /// Forgets a node (it was found dead).
    pub fn forget(&self, id: RingPos) {
        self.inner.known.remove(&id);
        self.inner.seen.remove(&id);
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

    /// Nodes whose record names a metrics address at an IP this node has not
    /// seen them at: what [`Capacity::mark_seen`] waits for (at most `max`).
    pub fn unseen_metrics(&self, max: usize) -> Vec<(RingPos, SocketAddr)> {
        self.list()
            .iter()
            .skip(1)
            .filter_map(|s| {
                let m = s.record.metrics_addr?;
                let id = s.record.peer_id().ring_pos();
                let seen = self.inner.seen.get(&id).is_some_and(|ip| *ip == m.ip());
                (!seen && s.record.addr.ip() == m.ip()).then_some((id, s.record.addr))
            })
            .take(max)
            .collect()
    }

    /// Records that the node `id` answered a call at `at`, its identity
    /// pinned by the handshake: it is reachable at that IP.
    pub fn mark_seen(&self, id: RingPos, at: SocketAddr) {
        if self.inner.known.contains_key(&id) {
            self.inner.seen.insert(id, at.ip());
        }
    }

    /// Metrics addresses of every node known, this one included, for `/sd`:
    /// another node's only when its IP is the one that node was seen sending
    /// from or reached at (a record cannot point Prometheus at some other
    /// host: the node probes records' addresses, see `chorus_node::node`).
    pub fn metrics_addrs(&self) -> Vec<SocketAddr> {
        let mut out: Vec<SocketAddr> = self.own().record.metrics_addr.into_iter().collect();
        for s in self.list().iter().skip(1) {
            let Some(m) = s.record.metrics_addr else {
                continue;
            };
            let id = s.record.peer_id().ring_pos();
            if self.inner.seen.get(&id).is_some_and(|ip| *ip == m.ip()) {
                out.push(m);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_sdk::capacity::MAX_FUTURE_SKEW_MS;
    use chorus_sdk::identity::ID_WORK_BITS;

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
            ceiling: None,
        }
    }

    fn member() -> Arc<Identity> {
        Arc::new(Identity::generate_member().unwrap())
    }

    fn table_at(addr: &str) -> Capacity {
        let id = member();
        let mut r = record(addr);
        r.public_key = id.public_key();
        Capacity::new(id, r).unwrap()
    }

    fn table() -> Capacity {
        table_at("127.0.0.1:1")
    }

    fn signed(id: &Identity, addr: &str, ts: u64) -> SignedCapacity {
        let mut r = record(addr);
        r.public_key = id.public_key();
        r.timestamp_ms = ts;
        SignedCapacity::sign(r, id).unwrap()
    }

    fn refused(t: &Capacity, reason: &str) -> u64 {
        t.refused()
            .into_iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| n)
    }

    #[test]
    fn keeps_verified_fresh_records_only() {
        let a = table_at("127.0.1.1:1");
        let b = table_at("127.0.2.1:1");
        let c = table_at("127.0.3.1:1");
        assert_eq!(a.absorb(&b.gossip()), 1);
        // Same record again: not newer.
        assert_eq!(a.absorb(&b.gossip()), 0);
        // Our own record is not "known".
        assert_eq!(a.absorb(&a.gossip()), 0);
        let mut forged = c.own();
        forged.record.free_slots = 99;
        assert_eq!(a.absorb(&[forged]), 0);
        assert_eq!(refused(&a, "bad_signature"), 1);
        let old = signed(&member(), "127.0.4.1:1", now_ms() - MAX_AGE_MS - 1);
        assert_eq!(a.absorb(&[old]), 0);
        assert_eq!(refused(&a, "expired"), 1);
        let ahead = signed(
            &member(),
            "127.0.4.1:1",
            now_ms() + MAX_FUTURE_SKEW_MS + 2_000,
        );
        assert_eq!(a.absorb(&[ahead]), 0);
        assert_eq!(refused(&a, "from_the_future"), 1);
        // A key without the identity proof of work is no member.
        let plain = Identity::generate().unwrap();
        assert!(!plain.peer_id().has_work());
        assert_eq!(a.absorb(&[signed(&plain, "127.0.5.1:1", now_ms())]), 0);
        assert_eq!(refused(&a, "no_work"), 1);
        assert_eq!(a.list().len(), 2);
        // Records travel onward: c learns b through a.
        assert_eq!(c.absorb(&a.gossip()), 2);
        assert_eq!(c.list().len(), 3);
    }

    #[test]
    fn a_sender_introduces_a_bounded_number_and_a_network_holds_a_few() {
        let a = table_at("127.0.1.1:1");
        let sender = table_at("127.0.2.1:1");
        let sender_pos = sender.own().record.peer_id().ring_pos();
        let seen: SocketAddr = "127.0.2.1:1".parse().unwrap();
        // Its own record: always direct, never from the budget.
        assert_eq!(a.absorb_from(&[sender.own()], sender_pos, seen), 1);
        // Relayed records of members on distinct networks: RELAY_BUDGET pass.
        let keys: Vec<Identity> = (0..RELAY_BUDGET + 3)
            .map(|_| Identity::generate_with_work(ID_WORK_BITS).unwrap())
            .collect();
        let relayed: Vec<SignedCapacity> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| signed(k, &format!("127.1.{i}.1:1"), now_ms()))
            .collect();
        let mut kept = 0;
        for chunk in relayed.chunks(MAX_GOSSIP - 1) {
            kept += a.absorb_from(chunk, sender_pos, seen);
        }
        assert_eq!(kept, RELAY_BUDGET as usize);
        assert_eq!(refused(&a, "relay_budget"), 3);
        // Updates of records it already introduced are free.
        let again: Vec<SignedCapacity> = keys[..3]
            .iter()
            .enumerate()
            .map(|(i, k)| signed(k, &format!("127.1.{i}.1:1"), now_ms() + 1))
            .collect();
        assert_eq!(a.absorb_from(&again, sender_pos, seen), 3);
        // One network holds MAX_PER_PREFIX records, whoever sends them.
        let b = table_at("127.0.1.1:1");
        let crowd: Vec<SignedCapacity> = (0..MAX_PER_PREFIX + 2)
            .map(|i| {
                let k = Identity::generate_member().unwrap();
                let s = signed(&k, &format!("127.9.9.{}:1", i + 1), now_ms());
                let pos = k.ring_pos();
                assert_eq!(
                    b.absorb_from(
                        std::slice::from_ref(&s),
                        pos,
                        "127.9.9.1:1".parse().unwrap()
                    ),
                    usize::from(i < MAX_PER_PREFIX)
                );
                s
            })
            .collect();
        assert_eq!(crowd.len(), MAX_PER_PREFIX + 2);
        assert_eq!(refused(&b, "prefix_full"), 2);
    }

    #[test]
    fn relaying_a_full_network_costs_the_sender_no_introductions() {
        // An honest sender whose table holds other members of a crowded
        // network than ours gossips them to us again and again; we refuse
        // them for the network's cap, and the sender keeps its budget for
        // the newcomers it introduces.
        let a = table_at("127.0.1.1:1");
        let sender = table_at("127.0.2.1:1");
        let sender_pos = sender.own().record.peer_id().ring_pos();
        let seen: SocketAddr = "127.0.2.1:1".parse().unwrap();
        assert_eq!(a.absorb_from(&[sender.own()], sender_pos, seen), 1);
        let crowd: Vec<SignedCapacity> = (0..MAX_PER_PREFIX + 1)
            .map(|i| {
                let k = Identity::generate_member().unwrap();
                signed(&k, &format!("127.9.9.{}:1", i + 1), now_ms())
            })
            .collect();
        assert_eq!(
            a.absorb_from(&crowd[..MAX_PER_PREFIX], sender_pos, seen),
            MAX_PER_PREFIX
        );
        let extra = &crowd[MAX_PER_PREFIX];
        let rounds = RELAY_BUDGET as usize * 2;
        for _ in 0..rounds {
            assert_eq!(
                a.absorb_from(std::slice::from_ref(extra), sender_pos, seen),
                0
            );
        }
        assert_eq!(refused(&a, "prefix_full"), rounds as u64);
        // What is left of the budget: all but the MAX_PER_PREFIX spent above.
        let newcomers: Vec<SignedCapacity> = (0..RELAY_BUDGET as usize - MAX_PER_PREFIX)
            .map(|i| {
                let k = Identity::generate_member().unwrap();
                signed(&k, &format!("127.2.{i}.1:1"), now_ms())
            })
            .collect();
        let mut kept = 0;
        for chunk in newcomers.chunks(MAX_GOSSIP - 1) {
            kept += a.absorb_from(chunk, sender_pos, seen);
        }
        assert_eq!(kept, newcomers.len());
        assert_eq!(refused(&a, "relay_budget"), 0);
    }

    #[test]
    fn sd_lists_a_metrics_address_only_where_the_node_was_seen() {
        let a = table_at("127.0.1.1:1");
        let k = member();
        let mut r = record("127.0.2.1:1");
        r.public_key = k.public_key();
        r.metrics_addr = Some("10.9.9.9:9100".parse().unwrap());
        let liar = SignedCapacity::sign(r.clone(), &k).unwrap();
        let pos = k.ring_pos();
        assert_eq!(
            a.absorb_from(&[liar], pos, "127.0.2.1:1".parse().unwrap()),
            1
        );
        assert!(a.metrics_addrs().is_empty(), "{:?}", a.metrics_addrs());
        r.metrics_addr = Some("127.0.2.1:9100".parse().unwrap());
        r.timestamp_ms += 1;
        let honest = SignedCapacity::sign(r, &k).unwrap();
        assert_eq!(
            a.absorb_from(&[honest], pos, "127.0.2.1:1".parse().unwrap()),
            1
        );
        assert_eq!(
            a.metrics_addrs(),
            vec!["127.0.2.1:9100".parse::<SocketAddr>().unwrap()]
        );
    }

    #[test]
    fn networks_are_v4_24_and_v6_48() {
        let n = |s: &str| network_of(&s.parse().unwrap());
        assert_eq!(n("127.0.1.1:1"), n("127.0.1.200:2"));
        assert_ne!(n("127.0.1.1:1"), n("127.0.2.1:1"));
        assert_eq!(n("[2001:db8:1::1]:1"), n("[2001:db8:1:ffff::2]:1"));
        assert_ne!(n("[2001:db8:1::1]:1"), n("[2001:db8:2::1]:1"));
        assert_eq!(n("[::ffff:10.0.0.1]:1"), n("10.0.0.2:1"));
        assert_eq!(prefix_of("10.1.2.3".parse().unwrap(), 0, 0), (false, 0));
        assert_eq!(
            prefix_of("10.1.2.3".parse().unwrap(), 32, 128).1,
            0x0a01_0203
        );
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
