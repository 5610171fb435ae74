//! Node and client identity: an Ed25519 key, its peer id and its ring position.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use chorus_core::RingPos;
use ring::rand::SystemRandom;
use ring::signature::{self, Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};

/// File name of the key inside a data dir.
pub const KEY_FILE: &str = "node.key";

/// The identity proof of work: a node id is valid only if the SHA-256 of its
/// peer id (itself the SHA-256 of the public key) starts with this many zero
/// bits (the static crypto puzzle of S/Kademlia, Baumgart and Mies 2007).
///
/// A network parameter: every node checks it on every handshake with a node,
/// every capacity record and every batch, so all nodes of one network use the
/// same value (changing it makes a new network). At 14 bits an honest node
/// tries about 16,000 keys once, in its first start (about 0.3–1 s on one
/// core of a laptop; `cargo bench -p chorus-node --bench proofs` measures it),
/// and an attacker pays the same for every identity: a thousand Sybils cost
/// a thousand such seconds, and landing an identity just before a chosen job
/// id on a ring of N nodes costs about N of them instead of N key generations.
/// Clients (submitters) need no work: their keys only sign their own jobs.
pub const ID_WORK_BITS: u32 = 14;

/// A peer id: the SHA-256 of an Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PeerId(pub [u8; 32]);

impl PeerId {
    /// The id of an Ed25519 public key.
    pub fn from_public_key(public_key: &[u8]) -> Self {
        let d = ring::digest::digest(&ring::digest::SHA256, public_key);
        let mut id = [0u8; 32];
        id.copy_from_slice(d.as_ref());
        PeerId(id)
    }

    /// Where this peer sits on the ring.
    pub fn ring_pos(&self) -> RingPos {
        RingPos::from_digest(&self.0)
    }

    /// The leading zero bits of SHA-256(peer id): the work its key carries.
    pub fn work_bits(&self) -> u32 {
        let d = ring::digest::digest(&ring::digest::SHA256, &self.0);
        let mut bits = 0;
        for b in d.as_ref() {
            if *b == 0 {
                bits += 8;
            } else {
                bits += b.leading_zeros();
                break;
            }
        }
        bits
    }

    /// Whether this id carries the network's identity proof of work
    /// ([`ID_WORK_BITS`]): only such ids may be ring members.
    pub fn has_work(&self) -> bool {
        self.work_bits() >= ID_WORK_BITS
    }
}

/// A peer id equals the ring position it derives: tests and displays name
/// workers by the position `chorus ring` shows.
impl PartialEq<RingPos> for PeerId {
    fn eq(&self, other: &RingPos) -> bool {
        self.ring_pos() == *other
    }
}

impl fmt::Display for PeerId {
    /// Peers are shown by their ring position, 16 hex digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.ring_pos())
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({})", hex::encode(self.0))
    }
}

/// Errors loading or creating an identity.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The key file or data dir could not be read or written; nothing was changed.
    #[error("key file {path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The key file exists but does not hold a valid PKCS#8 Ed25519 key; it was left as is.
    #[error("key file {0} does not hold a valid Ed25519 PKCS#8 key")]
    BadKey(PathBuf),
    /// The system random source failed.
    #[error("could not generate a key: system randomness unavailable")]
    Rng,
    /// The key file holds a key without the identity proof of work (made by
    /// an older version or by hand); it was left as is.
    #[error(
        "key file {0} holds a key without the identity proof of work ({ID_WORK_BITS} bits); \
         move it away and start again to make a new identity"
    )]
    NoWork(PathBuf),
}

/// The PKCS#8 v1 prefix of an Ed25519 private key document (RFC 8410): the
/// 32-byte seed follows.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// An Ed25519 key pair with its derived peer id.
pub struct Identity {
    pkcs8: Vec<u8>,
    key: Ed25519KeyPair,
    id: PeerId,
}

impl Identity {
    /// A fresh random identity, kept only in memory.
    pub fn generate() -> Result<Self, IdentityError> {
        let rng = SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| IdentityError::Rng)?;
        Self::from_pkcs8(doc.as_ref()).ok_or(IdentityError::Rng)
    }

    /// A fresh identity that carries the identity proof of work
    /// ([`ID_WORK_BITS`]): what a node needs to join a ring. Tries keys until
    /// one qualifies (about 2^ID_WORK_BITS of them).
    pub fn generate_member() -> Result<Self, IdentityError> {
        Self::generate_with_work(ID_WORK_BITS)
    }

    /// A fresh identity whose peer id has at least `bits` bits of work.
    pub fn generate_with_work(bits: u32) -> Result<Self, IdentityError> {
        let rng = SystemRandom::new();
        let mut seed = [0u8; 32];
        ring::rand::SecureRandom::fill(&rng, &mut seed).map_err(|_| IdentityError::Rng)?;
        // The first 8 bytes count up from a random start: a fresh seed per
        // try without a system call per try.
        let start = u64::from_le_bytes(seed[..8].try_into().unwrap_or_default());
        for i in 0u64.. {
            seed[..8].copy_from_slice(&start.wrapping_add(i).to_le_bytes());
            let key = Ed25519KeyPair::from_seed_unchecked(&seed).map_err(|_| IdentityError::Rng)?;
            let id = PeerId::from_public_key(key.public_key().as_ref());
            if id.work_bits() >= bits {
                let mut pkcs8 = PKCS8_ED25519_PREFIX.to_vec();
                pkcs8.extend_from_slice(&seed);
                return Self::from_pkcs8(&pkcs8).ok_or(IdentityError::Rng);
            }
        }
        Err(IdentityError::Rng)
    }

    /// An identity from a PKCS#8 (v1 or v2) Ed25519 document.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Option<Self> {
        let key = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8).ok()?;
        let id = PeerId::from_public_key(key.public_key().as_ref());
        Some(Identity {
            pkcs8: pkcs8.to_vec(),
            key,
            id,
        })
    }

    /// Loads `DIR/node.key`, or creates it (mode 0600) on first start, as a
    /// node's identity: created with the proof of work, refused on load
    /// without it.
    pub fn load_or_create_member(dir: &Path) -> Result<Self, IdentityError> {
        let id = Self::load_or_create_with(dir, Self::generate_member)?;
        if id.peer_id().has_work() {
            Ok(id)
        } else {
            Err(IdentityError::NoWork(dir.join(KEY_FILE)))
        }
    }

    /// Loads `DIR/node.key`, or creates it (mode 0600) on first start (a
    /// client's key: no proof of work).
    pub fn load_or_create(dir: &Path) -> Result<Self, IdentityError> {
        Self::load_or_create_with(dir, Self::generate)
    }

    fn load_or_create_with(
        dir: &Path,
        generate: fn() -> Result<Self, IdentityError>,
    ) -> Result<Self, IdentityError> {
        let path = dir.join(KEY_FILE);
        let io = |source| IdentityError::Io {
            path: path.clone(),
            source,
        };
        match fs::read(&path) {
            Ok(bytes) => {
                Self::from_pkcs8(&bytes).ok_or_else(|| IdentityError::BadKey(path.clone()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir_all(dir).map_err(io)?;
                let id = generate()?;
                let mut opts = fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    opts.mode(0o600);
                }
                let mut f = opts.open(&path).map_err(io)?;
                f.write_all(&id.pkcs8).map_err(io)?;
                f.sync_all().map_err(io)?;
                Ok(id)
            }
            Err(e) => Err(io(e)),
        }
    }

    /// This identity's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.id
    }

    /// This identity's ring position.
    pub fn ring_pos(&self) -> RingPos {
        self.id.ring_pos()
    }

    /// The raw 32-byte Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        let mut pk = [0u8; 32];
        pk.copy_from_slice(self.key.public_key().as_ref());
        pk
    }

    /// The PKCS#8 document (for TLS certificates).
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// Signs `msg` with this key.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        let mut sig = [0u8; 64];
        sig.copy_from_slice(self.key.sign(msg).as_ref());
        sig
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Checks an Ed25519 signature by `public_key` over `msg`.
pub fn verify(public_key: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    signature::UnparsedPublicKey::new(&signature::ED25519, public_key)
        .verify(msg, sig)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_identities_carry_the_work_and_others_rarely_do() {
        let m = Identity::generate_member().unwrap();
        assert!(m.peer_id().has_work());
        assert!(m.peer_id().work_bits() >= ID_WORK_BITS);
        // The key round-trips through its PKCS#8 document.
        let again = Identity::from_pkcs8(m.pkcs8()).unwrap();
        assert_eq!(again.peer_id(), m.peer_id());
        let msg = b"hello";
        assert!(verify(&m.public_key(), msg, &m.sign(msg)));
        // A plain key has the work with probability 2^-14: 20 in a row
        // without it is all but certain.
        let plain = (0..20)
            .filter(|_| !Identity::generate().unwrap().peer_id().has_work())
            .count();
        assert!(plain >= 19, "{plain} of 20 plain keys lack the work");
        let dir = std::env::temp_dir().join(format!("chorus-idw-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        Identity::load_or_create(&dir).unwrap();
        assert!(matches!(
            Identity::load_or_create_member(&dir),
            Err(IdentityError::NoWork(_))
        ));
        fs::remove_dir_all(&dir).unwrap();
        let a = Identity::load_or_create_member(&dir).unwrap();
        assert!(a.peer_id().has_work());
        assert_eq!(
            Identity::load_or_create_member(&dir).unwrap().peer_id(),
            a.peer_id()
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn key_is_created_once_with_mode_0600() {
        let dir = std::env::temp_dir().join(format!("chorus-id-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let a = Identity::load_or_create(&dir).unwrap();
        let b = Identity::load_or_create(&dir).unwrap();
        assert_eq!(a.peer_id(), b.peer_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        fs::write(dir.join(KEY_FILE), b"garbage").unwrap();
        assert!(matches!(
            Identity::load_or_create(&dir),
            Err(IdentityError::BadKey(_))
        ));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn signatures_verify_and_tampering_fails() {
        let id = Identity::generate().unwrap();
        let sig = id.sign(b"hello");
        assert!(verify(&id.public_key(), b"hello", &sig));
        assert!(!verify(&id.public_key(), b"hellp", &sig));
        assert_eq!(PeerId::from_public_key(&id.public_key()), id.peer_id());
    }
}
