//! Is this key a member of the ring? The check a client or a backup makes of
//! every attestation signer it has not seen before, and its cache.
//!
//! Keys are free, so a valid signature alone proves nothing: an attestation
//! counts only when its signer is a member of the ring. A key is a member
//! when a lookup of its ring position finds a node with that very position,
//! and the node at the address the lookup returned answers a fresh
//! challenge ([`Request::Prove`]) with a signature by that key. What was
//! learned is cached: a member for [`MEMBER_TTL`], a key whose node answered
//! the challenge wrongly for [`STRANGER_TTL`]. A lookup that finds another
//! node at the key's position is not cached: it may have been misled while
//! the ring repairs, so callers ask again through other nodes.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};

use crate::attest::member_message;
use crate::identity::{self, PeerId};
use crate::transport::Transport;
use crate::wire::{Peer, Request, Response};

/// How long a key found to be a member is trusted without asking again.
pub const MEMBER_TTL: Duration = Duration::from_secs(600);
/// How long a key found not to be a member is refused without asking again.
pub const STRANGER_TTL: Duration = Duration::from_secs(10);
/// Most keys remembered; the cache is emptied when it would grow past this.
const MAX_CACHED: usize = 100_000;
/// Cap on the answer to a challenge.
const PROOF_CAP: usize = 4096;

/// Membership answers, cached.
#[derive(Debug, Default)]
pub struct Members {
    known: Mutex<HashMap<[u8; 32], (bool, Instant)>>,
}

impl Members {
    /// An empty cache.
    pub fn new() -> Members {
        Members::default()
    }

    /// The cached answer for `key`, if still fresh.
    pub fn cached(&self, key: &[u8; 32]) -> Option<bool> {
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        let (member, at) = known.get(key)?;
        let ttl = if *member { MEMBER_TTL } else { STRANGER_TTL };
        (at.elapsed() < ttl).then_some(*member)
    }

    /// Records an answer.
    pub fn record(&self, key: [u8; 32], member: bool) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if known.len() >= MAX_CACHED {
            known.clear();
        }
        known.insert(key, (member, Instant::now()));
    }

    /// Whether `key` is a member: from the cache, or by asking. `lookup`
    /// resolves a ring position to its owner (`None` when it cannot); the
    /// owner is then challenged through `transport`. `None` when it cannot
    /// tell (a failed lookup, an owner that does not answer): that is not
    /// cached, and the caller may ask again, through another node.
    pub async fn check<F, Fut>(
        &self,
        key: &[u8; 32],
        lookup: F,
        transport: &Transport,
        timeout: Duration,
    ) -> Option<bool>
    where
        F: FnOnce(chorus_core::RingPos) -> Fut,
        Fut: Future<Output = Option<Peer>>,
    {
        if let Some(member) = self.cached(key) {
            return Some(member);
        }
        let pos = PeerId::from_public_key(key).ring_pos();
        let owner = lookup(pos).await?;
        if owner.id != pos {
            // Someone else owns the position: no node holds this key, or the
            // lookup was misled (an owner under load taken for dead). Not
            // cached and not final: the caller asks again through another node.
            tracing::debug!(%pos, owner = %owner.id, "signer's position found elsewhere");
            return None;
        }
        let member = challenge(transport, &owner, key, timeout).await?;
        self.record(*key, member);
        Some(member)
    }
}

/// Asks the node at `owner` to sign a fresh nonce: `Some(true)` when it did
/// with `key`, `Some(false)` when it answered with another key or a bad
/// signature, `None` when it did not answer.
pub async fn challenge(
    transport: &Transport,
    owner: &Peer,
    key: &[u8; 32],
    timeout: Duration,
) -> Option<bool> {
    let mut nonce = [0u8; 32];
    SystemRandom::new().fill(&mut nonce).ok()?;
    let r: Response = transport
        .call(
            owner.addr,
            Some(owner.id),
            &Request::Prove { nonce },
            PROOF_CAP,
            timeout,
        )
        .await
        .ok()?;
    match r {
        Response::Proof {
            public_key,
            signature,
        } => Some(
            public_key == *key && identity::verify(key, &member_message(&nonce, key), &signature),
        ),
        _ => Some(false),
    }
}
