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
}

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

    /// Loads `DIR/node.key`, or creates it (mode 0600) on first start.
    pub fn load_or_create(dir: &Path) -> Result<Self, IdentityError> {
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
                let id = Self::generate()?;
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
