//! Runtime bundles: an interpreter module plus its read-only files, named by
//! hash, so that a job carries only its program (a Python script, say).
//!
//! A [`RuntimeBundle`] is signed by its publisher and travels as a blob (its
//! canonical encoding is the blob's bytes, so its [`RuntimeId`] is that blob's
//! id). A job's manifest names it by id; a worker fetches it, checks the
//! signature, fetches the module and files it names (blobs too), compiles the
//! module once and keeps it. Donors choose which runtimes their node runs
//! (`chorus node --accept-runtime`), because compiling a 100 MB interpreter
//! costs them a minute of CPU.
//!
//! How a task of a runtime runs: the interpreter module is the task's module;
//! the job's program (the bundle's module bytes) is a file at
//! [`RuntimeManifest::program`] in a mount of its own; argv is
//! [`RuntimeManifest::argv0`], then [`RuntimeManifest::args`], then the
//! program's path, then the bundle's arguments; the environment is the
//! runtime's, overlaid by the bundle's; the mounts are the runtime's, then the
//! bundle's (a bundle may not mount where the runtime does).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::bundle::Limits;
use crate::files::{self, FileRef, FilesError, Mount};
use crate::identity::{self, Identity};

/// Version of the runtime encoding in [`RuntimeManifest::format`].
pub const RUNTIME_FORMAT: u32 = 1;
/// Domain separation for the publisher's signature.
const SIGNING_CONTEXT: &[u8] = b"chorus runtime v1\0";
/// Largest runtime interpreter module, in bytes.
pub const MAX_RUNTIME_MODULE_BYTES: u64 = 512 << 20;

/// What a runtime is and how its tasks run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeManifest {
    /// Encoding version, [`RUNTIME_FORMAT`].
    pub format: u32,
    /// Short name (`python`), 1 to 64 bytes of `[a-z0-9._-]`.
    pub name: String,
    /// Free-form version, at most 128 bytes.
    pub version: String,
    /// The interpreter: a WASI preview 1 module (a command with `_start`, or a
    /// reactor exporting `run: () -> i32`, called after `_initialize`).
    pub module: FileRef,
    /// Read-only files the interpreter needs, sorted by mount point.
    pub mounts: Vec<Mount>,
    /// Environment every task gets (the bundle's may override), sorted by key.
    pub env: Vec<(String, String)>,
    /// `argv[0]` of every task.
    pub argv0: String,
    /// Arguments before the program's path.
    pub args: Vec<String>,
    /// Absolute guest path where the job's program is placed.
    pub program: String,
    /// Limits a task of this runtime needs at least (stack, memory, fuel):
    /// `chorus submit` starts from these.
    pub limits: Limits,
    /// The publisher's Ed25519 key, which signs the runtime.
    pub publisher: [u8; 32],
}

/// The id of a runtime: the blob id of its canonical encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RuntimeId(pub [u8; 32]);

impl fmt::Display for RuntimeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for RuntimeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RuntimeId({})", hex::encode(self.0))
    }
}

impl std::str::FromStr for RuntimeId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut id = [0u8; 32];
        hex::decode_to_slice(s, &mut id)
            .map_err(|_| format!("{s:?} is not a runtime id (64 hex digits)"))?;
        Ok(RuntimeId(id))
    }
}

/// A signed runtime.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeBundle {
    /// What the runtime is.
    pub manifest: RuntimeManifest,
    /// The publisher's signature over [`RuntimeBundle::signed_hash`].
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

/// Why a runtime bundle was refused.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Not the canonical encoding of a runtime bundle.
    #[error("not a canonical runtime bundle: {0}")]
    Malformed(String),
    /// A manifest field is out of range.
    #[error("bad runtime manifest: {0}")]
    BadManifest(String),
    /// Its files or environment are malformed.
    #[error("bad runtime files: {0}")]
    Files(#[from] FilesError),
    /// The signature does not hold under the publisher's key.
    #[error("bad signature on runtime {0}")]
    BadSignature(String),
    /// Could not be encoded.
    #[error("cannot encode runtime bundle: {0}")]
    Encode(String),
}

impl RuntimeManifest {
    /// Checks the fields that have a valid range.
    pub fn check(&self) -> Result<(), RuntimeError> {
        let bad = |why: String| Err(RuntimeError::BadManifest(why));
        if self.format != RUNTIME_FORMAT {
            return bad(format!("unknown format {}", self.format));
        }
        if self.name.is_empty()
            || self.name.len() > 64
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        {
            return bad(format!(
                "name {:?} must be 1..=64 of [a-z0-9._-]",
                self.name
            ));
        }
        if self.version.len() > 128 {
            return bad("version over 128 bytes".into());
        }
        if self.module.size == 0 || self.module.size > MAX_RUNTIME_MODULE_BYTES {
            return bad(format!(
                "module of {} bytes, must be 1..={MAX_RUNTIME_MODULE_BYTES}",
                self.module.size
            ));
        }
        files::check_mounts(&self.mounts)?;
        files::check_env(&self.env)?;
        if !files::is_mount_point(&self.program) || self.program == "/" {
            return bad(format!("program path {:?} is not absolute", self.program));
        }
        let argv_bytes: usize = self.args.iter().map(String::len).sum::<usize>() + self.argv0.len();
        if self.args.len() > 16
            || argv_bytes > 4096
            || self.args.iter().any(|a| a.contains('\0'))
            || self.argv0.contains('\0')
        {
            return bad("arguments: at most 16, 4 KiB, no NUL".into());
        }
        Ok(())
    }

    /// The mount point of the program's own directory and the program's
    /// file name in it.
    pub fn program_mount(&self) -> (&str, &str) {
        match self.program.rfind('/') {
            Some(0) => ("/", &self.program[1..]),
            Some(i) => (&self.program[..i], &self.program[i + 1..]),
            None => ("/", &self.program),
        }
    }
}

impl RuntimeBundle {
    /// Signs `manifest` as `publisher` (its key is written into the manifest).
    pub fn sign(
        mut manifest: RuntimeManifest,
        publisher: &Identity,
    ) -> Result<RuntimeBundle, RuntimeError> {
        manifest.publisher = publisher.public_key();
        manifest.check()?;
        let hash = signed_hash(&manifest)?;
        let signature = publisher.sign(&message(&hash)).to_vec();
        Ok(RuntimeBundle {
            manifest,
            signature,
        })
    }

    /// The canonical bytes (the blob a job's manifest names by id).
    pub fn encode(&self) -> Result<Vec<u8>, RuntimeError> {
        rmp_serde::to_vec(self).map_err(|e| RuntimeError::Encode(e.to_string()))
    }

    /// Decodes canonical bytes and checks the manifest and the signature.
    pub fn decode_verified(bytes: &[u8]) -> Result<RuntimeBundle, RuntimeError> {
        let b: RuntimeBundle =
            rmp_serde::from_slice(bytes).map_err(|e| RuntimeError::Malformed(e.to_string()))?;
        if b.encode()? != bytes {
            return Err(RuntimeError::Malformed(
                "not in canonical form (trailing or re-encoded bytes)".into(),
            ));
        }
        b.manifest.check()?;
        let hash = signed_hash(&b.manifest)?;
        if !identity::verify(&b.manifest.publisher, &message(&hash), &b.signature) {
            return Err(RuntimeError::BadSignature(b.manifest.name.clone()));
        }
        Ok(b)
    }
}

fn signed_hash(manifest: &RuntimeManifest) -> Result<[u8; 32], RuntimeError> {
    let bytes = rmp_serde::to_vec(manifest).map_err(|e| RuntimeError::Encode(e.to_string()))?;
    Ok(crate::job::sha256(&bytes))
}

fn message(hash: &[u8; 32]) -> Vec<u8> {
    let mut m = SIGNING_CONTEXT.to_vec();
    m.extend_from_slice(hash);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> RuntimeManifest {
        RuntimeManifest {
            format: RUNTIME_FORMAT,
            name: "python".into(),
            version: "3.15".into(),
            module: FileRef {
                blob: crate::blob::BlobId([7; 32]),
                size: 100,
            },
            mounts: vec![],
            env: vec![("TMPDIR".into(), "/tmp".into())],
            argv0: "python".into(),
            args: vec![],
            program: "/task/main.py".into(),
            limits: Limits::default(),
            publisher: [0; 32],
        }
    }

    #[test]
    fn signed_runtimes_round_trip_and_tampering_is_refused() {
        let who = Identity::generate().unwrap();
        let b = RuntimeBundle::sign(manifest(), &who).unwrap();
        let bytes = b.encode().unwrap();
        assert_eq!(RuntimeBundle::decode_verified(&bytes).unwrap(), b);
        assert_eq!(b.manifest.program_mount(), ("/task", "main.py"));
        let mut tampered = b.clone();
        tampered.manifest.env[0].1 = "/evil".into();
        let t = tampered.encode().unwrap();
        assert!(matches!(
            RuntimeBundle::decode_verified(&t),
            Err(RuntimeError::BadSignature(_))
        ));
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(matches!(
            RuntimeBundle::decode_verified(&trailing),
            Err(RuntimeError::Malformed(_))
        ));
        let mut bad = manifest();
        bad.name = "Py thon".into();
        assert!(RuntimeBundle::sign(bad, &who).is_err());
    }
}
