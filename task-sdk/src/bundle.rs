//! Signed task bundles: a manifest plus a WebAssembly module, addressed by hash.
//!
//! A [`Bundle`] is what a submitter sends and a node runs. Its [`BundleId`] is
//! the SHA-256 of the canonical encoding of the manifest and the module; the
//! submitter signs that id with the Ed25519 key named in the manifest. A node
//! turns the bytes it received into a [`VerifiedBundle`] with
//! [`Bundle::decode`] then [`Bundle::verify`] (or [`Bundle::verify_as`] when it
//! asked for a given id) before anything runs: there is no way to reach the
//! module of an unverified bundle.
//!
//! The [`Limits`] a task runs under live here because they travel in the
//! manifest and in jobs; the node's sandbox enforces them.
//!
//! Encoding: MessagePack (`rmp-serde`) of fixed structs, fields in order,
//! integers in their shortest form. [`Bundle::decode`] accepts only that
//! canonical form (it re-encodes and compares), so a bundle has exactly one
//! byte string and a flipped byte anywhere is refused.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::files::{self, Mount};
use crate::identity::{self, Identity};
use crate::runtime::RuntimeId;

/// Version of the bundle encoding in [`Manifest::format`].
pub const FORMAT_VERSION: u32 = 1;
/// Domain separation for the submitter's signature.
const SIGNING_CONTEXT: &[u8] = b"chorus bundle v1\0";
/// Longest accepted [`Manifest::name`] and [`Manifest::version`], in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// Limits a task runs under. Every replica of a task runs under the same
/// limits, because the ones that can change an outcome (fuel, memory, stack,
/// output) must be identical for outcomes to be comparable; a node refuses a
/// task whose limits exceed what it donates rather than lowering them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Limits {
    /// Fuel: roughly one unit per wasm instruction. Deterministic; also the unit
    /// in which donated work is counted. Default 10^11 (about a minute of work).
    pub fuel: u64,
    /// Wall-clock deadline in milliseconds (epoch interruption). Machine-dependent,
    /// so hitting it is "no verdict". Default 60 000.
    pub wall_ms: u64,
    /// Linear memory, in bytes, summed over all memories. Default 256 MiB.
    pub memory_bytes: u64,
    /// Table elements per table. Default 100 000.
    pub table_elements: u32,
    /// Instances, memories and tables: at most this many of each. Default 4.
    pub instances: u32,
    /// Wasm stack in bytes. Default 512 KiB.
    pub stack_bytes: u32,
    /// Cap on stdout (the task's output) in bytes. Default 16 MiB.
    pub stdout_bytes: u64,
    /// Cap on stderr (diagnostics) in bytes. Default 64 KiB.
    pub stderr_bytes: u64,
    /// Cap on stdin (the task's input) in bytes. Default 16 MiB.
    pub input_bytes: u64,
    /// Cap on the module in bytes. Default 32 MiB.
    pub module_bytes: u64,
    /// Cap on the bytes a task's writes may add to its mounted directories
    /// (new and grown files, new entries). Default 64 MiB.
    pub scratch_bytes: u64,
}

impl Default for Limits {
    /// Limits tuned for tasks of up to about a minute on one core.
    fn default() -> Self {
        Limits {
            fuel: 100_000_000_000,
            wall_ms: 60_000,
            memory_bytes: 256 << 20,
            table_elements: 100_000,
            instances: 4,
            stack_bytes: 512 << 10,
            stdout_bytes: 16 << 20,
            stderr_bytes: 64 << 10,
            input_bytes: 16 << 20,
            module_bytes: 32 << 20,
            scratch_bytes: 64 << 20,
        }
    }
}

impl Limits {
    /// The first limit of `self` that is above the same limit in `ceiling`, by name.
    pub fn first_above(&self, ceiling: &Limits) -> Option<&'static str> {
        let pairs: [(&'static str, u64, u64); 11] = [
            ("fuel", self.fuel, ceiling.fuel),
            ("wall_ms", self.wall_ms, ceiling.wall_ms),
            ("memory_bytes", self.memory_bytes, ceiling.memory_bytes),
            (
                "table_elements",
                self.table_elements.into(),
                ceiling.table_elements.into(),
            ),
            ("instances", self.instances.into(), ceiling.instances.into()),
            (
                "stack_bytes",
                self.stack_bytes.into(),
                ceiling.stack_bytes.into(),
            ),
            ("stdout_bytes", self.stdout_bytes, ceiling.stdout_bytes),
            ("stderr_bytes", self.stderr_bytes, ceiling.stderr_bytes),
            ("input_bytes", self.input_bytes, ceiling.input_bytes),
            ("module_bytes", self.module_bytes, ceiling.module_bytes),
            ("scratch_bytes", self.scratch_bytes, ceiling.scratch_bytes),
        ];
        pairs.into_iter().find(|(_, v, c)| v > c).map(|(n, _, _)| n)
    }
}

/// What a bundle is and how its tasks run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Encoding version, [`FORMAT_VERSION`].
    pub format: u32,
    /// Human-readable name, 1 to [`MAX_NAME_LEN`] bytes.
    pub name: String,
    /// The task's version, free form, at most [`MAX_NAME_LEN`] bytes.
    pub version: String,
    /// Limits for tasks of this bundle unless a job overrides them.
    pub limits: Limits,
    /// Replicas each task runs on by default.
    pub replicas: u32,
    /// Matching replicas needed to accept a result by default (`1..=replicas`).
    pub quorum: u32,
    /// The submitter's Ed25519 public key, which signs the bundle.
    pub submitter: [u8; 32],
    /// Arguments every task gets after its program name (`argv[1..]`), at
    /// most [`MAX_ARGS`] of them and [`MAX_ARGS_BYTES`] bytes in all. Part of
    /// the bundle's id, so of what workers attest.
    #[serde(default)]
    pub args: Vec<String>,
    /// The seed of `random_get`: task `i` gets `seed + i` (wrapping). `None`:
    /// each task's seed is derived from the job id and its index. Part of the
    /// bundle's id.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Environment variables every task sees, sorted by key
    /// ([`files::check_env`]). Part of the bundle's id.
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Directory trees every task sees as preopened directories, sorted by
    /// mount point ([`files::check_mounts`]); file contents are blobs named
    /// by hash. Part of the bundle's id.
    #[serde(default)]
    pub mounts: Vec<Mount>,
    /// The runtime this bundle's program runs on ([`crate::runtime`]), by
    /// id; `None`: the module is the task itself. With a runtime, the
    /// bundle's module bytes are the program the runtime runs.
    #[serde(default)]
    pub runtime: Option<RuntimeId>,
}

/// Most arguments a manifest may give its tasks.
pub const MAX_ARGS: usize = 64;
/// Most bytes of arguments, summed, a manifest may give its tasks.
pub const MAX_ARGS_BYTES: usize = 4096;

impl Manifest {
    /// A manifest with default limits, 3 replicas and a quorum of 2.
    pub fn new(name: impl Into<String>, version: impl Into<String>, submitter: [u8; 32]) -> Self {
        Manifest {
            format: FORMAT_VERSION,
            name: name.into(),
            version: version.into(),
            limits: Limits::default(),
            replicas: 3,
            quorum: 2,
            submitter,
            args: Vec::new(),
            seed: None,
            env: Vec::new(),
            mounts: Vec::new(),
            runtime: None,
        }
    }

    /// Checks the fields that have a valid range.
    pub fn check(&self) -> Result<(), BundleError> {
        let bad = |why: String| Err(BundleError::BadManifest(why));
        if self.format != FORMAT_VERSION {
            return Err(BundleError::UnknownFormat(self.format));
        }
        if self.name.is_empty() || self.name.len() > MAX_NAME_LEN {
            return bad(format!("name must be 1..={MAX_NAME_LEN} bytes"));
        }
        if self.version.len() > MAX_NAME_LEN {
            return bad(format!("version must be at most {MAX_NAME_LEN} bytes"));
        }
        if self.args.len() > MAX_ARGS {
            return bad(format!(
                "{} arguments, at most {MAX_ARGS} allowed",
                self.args.len()
            ));
        }
        let arg_bytes: usize = self.args.iter().map(String::len).sum();
        if arg_bytes > MAX_ARGS_BYTES {
            return bad(format!(
                "arguments of {arg_bytes} bytes, at most {MAX_ARGS_BYTES} allowed"
            ));
        }
        if self.args.iter().any(|a| a.contains('\0')) {
            return bad("an argument contains a NUL byte".into());
        }
        files::check_env(&self.env).map_err(|e| BundleError::BadManifest(e.to_string()))?;
        files::check_mounts(&self.mounts).map_err(|e| BundleError::BadManifest(e.to_string()))?;
        if self.quorum == 0 || self.quorum > self.replicas {
            return bad(format!(
                "quorum {} must be in 1..=replicas ({})",
                self.quorum, self.replicas
            ));
        }
        Ok(())
    }
}

/// The id of a bundle: SHA-256 of the canonical encoding of manifest and module.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BundleId(pub [u8; 32]);

impl fmt::Display for BundleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for BundleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BundleId({})", hex::encode(self.0))
    }
}

/// A bundle as received: not yet checked. Decode with [`Bundle::decode`],
/// then [`Bundle::verify`] to reach the module.
#[derive(Clone, PartialEq, Eq)]
pub struct Bundle {
    manifest: Manifest,
    module: Vec<u8>,
    signature: Vec<u8>,
}

/// A bundle whose hash and signature have been checked.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifiedBundle {
    id: BundleId,
    bundle: Bundle,
}

/// Why a bundle was refused. Nothing is run and nothing is stored for a refused bundle.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The bytes are not a bundle in the canonical encoding.
    #[error("not a canonical bundle encoding: {0}")]
    Malformed(String),
    /// The manifest names an encoding version this build does not know.
    #[error("unknown bundle format version {0} (this build reads {FORMAT_VERSION})")]
    UnknownFormat(u32),
    /// A manifest field is out of range.
    #[error("bad manifest: {0}")]
    BadManifest(String),
    /// The bundle's hash is not the id it was requested or announced under.
    #[error("bundle hash {actual} does not match the expected id {expected}")]
    HashMismatch {
        /// The id that was asked for.
        expected: BundleId,
        /// The hash of the bytes received.
        actual: BundleId,
    },
    /// The signature does not verify under the submitter key in the manifest:
    /// the bundle was altered or signed by someone else.
    #[error("bad signature on bundle {0}: tampered or not signed by its submitter")]
    BadSignature(BundleId),
    /// The bundle could not be encoded (never expected for a valid manifest).
    #[error("cannot encode bundle: {0}")]
    Encode(String),
}

/// The signed part, in its canonical field order.
#[derive(Serialize)]
struct UnsignedRef<'a> {
    manifest: &'a Manifest,
    #[serde(with = "bytes_ref")]
    module: &'a [u8],
}

/// The wire form, in its canonical field order.
#[derive(Serialize)]
struct WireRef<'a> {
    manifest: &'a Manifest,
    #[serde(with = "bytes_ref")]
    module: &'a [u8],
    #[serde(with = "bytes_ref")]
    signature: &'a [u8],
}

#[derive(Deserialize)]
struct WireOwned {
    manifest: Manifest,
    #[serde(with = "bytes_owned")]
    module: Vec<u8>,
    #[serde(with = "bytes_owned")]
    signature: Vec<u8>,
}

impl Bundle {
    /// Builds and signs a bundle with `submitter`'s key. The manifest's
    /// `submitter` field is set to that key.
    pub fn sign(
        mut manifest: Manifest,
        module: Vec<u8>,
        submitter: &Identity,
    ) -> Result<VerifiedBundle, BundleError> {
        manifest.submitter = submitter.public_key();
        manifest.check()?;
        let id = id_of(&manifest, &module)?;
        let signature = submitter.sign(&signed_message(&id)).to_vec();
        Ok(VerifiedBundle {
            id,
            bundle: Bundle {
                manifest,
                module,
                signature,
            },
        })
    }

    /// Decodes a bundle from its canonical bytes. Checks the form only:
    /// call [`Bundle::verify`] before using it.
    pub fn decode(bytes: &[u8]) -> Result<Bundle, BundleError> {
        let wire: WireOwned =
            rmp_serde::from_slice(bytes).map_err(|e| BundleError::Malformed(e.to_string()))?;
        let bundle = Bundle {
            manifest: wire.manifest,
            module: wire.module,
            signature: wire.signature,
        };
        // One bundle, one byte string: anything but the canonical form is refused,
        // so trailing bytes or a re-encoded field cannot slip past the hash.
        if bundle.encode()? != bytes {
            return Err(BundleError::Malformed(
                "not in canonical form (trailing or re-encoded bytes)".into(),
            ));
        }
        Ok(bundle)
    }

    /// The canonical bytes of this bundle.
    pub fn encode(&self) -> Result<Vec<u8>, BundleError> {
        rmp_serde::to_vec(&WireRef {
            manifest: &self.manifest,
            module: &self.module,
            signature: &self.signature,
        })
        .map_err(|e| BundleError::Encode(e.to_string()))
    }

    /// The hash of manifest and module: the id this bundle claims to be.
    pub fn id(&self) -> Result<BundleId, BundleError> {
        id_of(&self.manifest, &self.module)
    }

    /// The manifest, unchecked.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Checks the manifest and the submitter's signature over the bundle's hash.
    pub fn verify(self) -> Result<VerifiedBundle, BundleError> {
        self.manifest.check()?;
        let id = self.id()?;
        if !identity::verify(
            &self.manifest.submitter,
            &signed_message(&id),
            &self.signature,
        ) {
            return Err(BundleError::BadSignature(id));
        }
        Ok(VerifiedBundle { id, bundle: self })
    }

    /// [`Bundle::verify`], and checks that the bundle is the one asked for.
    pub fn verify_as(self, expected: &BundleId) -> Result<VerifiedBundle, BundleError> {
        let actual = self.id()?;
        if &actual != expected {
            return Err(BundleError::HashMismatch {
                expected: *expected,
                actual,
            });
        }
        self.verify()
    }
}

impl fmt::Debug for Bundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bundle")
            .field("manifest", &self.manifest)
            .field("module_bytes", &self.module.len())
            .finish_non_exhaustive()
    }
}

impl VerifiedBundle {
    /// The bundle's id (its hash).
    pub fn id(&self) -> BundleId {
        self.id
    }

    /// The checked manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.bundle.manifest
    }

    /// The WebAssembly module.
    pub fn module(&self) -> &[u8] {
        &self.bundle.module
    }

    /// The canonical bytes, to send or store.
    pub fn encode(&self) -> Result<Vec<u8>, BundleError> {
        self.bundle.encode()
    }

    /// The Ed25519 signature (64 bytes).
    pub fn signature(&self) -> &[u8] {
        &self.bundle.signature
    }
}

impl fmt::Debug for VerifiedBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedBundle")
            .field("id", &self.id)
            .field("manifest", &self.bundle.manifest)
            .field("module_bytes", &self.bundle.module.len())
            .finish_non_exhaustive()
    }
}

fn id_of(manifest: &Manifest, module: &[u8]) -> Result<BundleId, BundleError> {
    let bytes = rmp_serde::to_vec(&UnsignedRef { manifest, module })
        .map_err(|e| BundleError::Encode(e.to_string()))?;
    let d = ring::digest::digest(&ring::digest::SHA256, &bytes);
    let mut id = [0u8; 32];
    id.copy_from_slice(d.as_ref());
    Ok(BundleId(id))
}

fn signed_message(id: &BundleId) -> Vec<u8> {
    let mut msg = Vec::with_capacity(SIGNING_CONTEXT.len() + 32);
    msg.extend_from_slice(SIGNING_CONTEXT);
    msg.extend_from_slice(&id.0);
    msg
}

/// Byte strings as MessagePack `bin`, not as arrays of integers.
mod bytes_ref {
    pub fn serialize<S: serde::Serializer>(v: &&[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }
}

mod bytes_owned {
    use std::fmt;

    use serde::de::{self, Visitor};

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
        }
        d.deserialize_byte_buf(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Identity, VerifiedBundle) {
        let id = Identity::generate().unwrap();
        let mut manifest = Manifest::new("primes", "1.0.0", [0; 32]);
        manifest.limits.fuel = 12345;
        let module = b"\0asm\x01\0\0\0 some module bytes".to_vec();
        let b = Bundle::sign(manifest, module, &id).unwrap();
        (id, b)
    }

    #[test]
    fn round_trip_verifies() {
        let (who, b) = sample();
        let bytes = b.encode().unwrap();
        let back = Bundle::decode(&bytes).unwrap().verify_as(&b.id()).unwrap();
        assert_eq!(back.id(), b.id());
        assert_eq!(back.module(), b.module());
        assert_eq!(back.manifest().submitter, who.public_key());
        assert_eq!(back.manifest().limits.fuel, 12345);
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let (_, b) = sample();
        let bytes = b.encode().unwrap();
        for i in 0..bytes.len() {
            for bit in [0x01u8, 0x80] {
                let mut t = bytes.clone();
                t[i] ^= bit;
                let verdict = Bundle::decode(&t).and_then(Bundle::verify);
                assert!(
                    verdict.is_err(),
                    "flip of bit {bit:#x} at byte {i} accepted"
                );
            }
        }
        // Appended or removed bytes too.
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            Bundle::decode(&longer),
            Err(BundleError::Malformed(_))
        ));
        assert!(Bundle::decode(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn garbage_never_panics() {
        // A seeded xorshift: random strings and random mutations of a real bundle.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let (_, b) = sample();
        let bytes = b.encode().unwrap();
        for round in 0..20_000 {
            let candidate: Vec<u8> = if round % 2 == 0 {
                let len = (next() % 200) as usize;
                (0..len).map(|_| next() as u8).collect()
            } else {
                let mut t = bytes.clone();
                for _ in 0..1 + next() % 4 {
                    let i = (next() as usize) % t.len();
                    t[i] = next() as u8;
                }
                t.truncate((next() as usize) % (t.len() + 1) + t.len() / 2);
                t
            };
            if let Ok(bundle) = Bundle::decode(&candidate) {
                let same = bundle.encode().unwrap() == bytes;
                assert_eq!(bundle.verify().is_ok(), same, "round {round}");
            }
        }
    }

    #[test]
    fn resigned_by_someone_else_is_not_the_same_bundle() {
        let (_, b) = sample();
        let mallory = Identity::generate().unwrap();
        let forged = Bundle::sign(b.manifest().clone(), b.module().to_vec(), &mallory).unwrap();
        assert_ne!(forged.id(), b.id());
        let bytes = forged.encode().unwrap();
        assert!(matches!(
            Bundle::decode(&bytes).unwrap().verify_as(&b.id()),
            Err(BundleError::HashMismatch { .. })
        ));
    }

    #[test]
    fn signature_by_another_key_is_refused() {
        let (_, b) = sample();
        let mallory = Identity::generate().unwrap();
        let mut bundle = b.bundle.clone();
        bundle.signature = mallory.sign(&signed_message(&b.id())).to_vec();
        assert!(matches!(bundle.verify(), Err(BundleError::BadSignature(_))));
    }

    #[test]
    fn manifest_ranges_are_checked() {
        let who = Identity::generate().unwrap();
        let mut m = Manifest::new("x", "1", [0; 32]);
        m.quorum = 4;
        assert!(matches!(
            Bundle::sign(m, vec![], &who),
            Err(BundleError::BadManifest(_))
        ));
        let m = Manifest::new("", "1", [0; 32]);
        assert!(Bundle::sign(m, vec![], &who).is_err());
    }

    #[test]
    fn task_arguments_are_bounded() {
        let with = |args: Vec<String>| {
            let mut m = Manifest::new("x", "1", [0; 32]);
            m.args = args;
            m.check()
        };
        assert!(with(vec!["a".into(); MAX_ARGS]).is_ok());
        assert!(with(vec!["a".into(); MAX_ARGS + 1]).is_err());
        assert!(with(vec!["a".repeat(MAX_ARGS_BYTES)]).is_ok());
        assert!(with(vec!["a".repeat(MAX_ARGS_BYTES + 1)]).is_err());
        assert!(with(vec!["a\0b".into()]).is_err());
        // Signing refuses what the check refuses.
        let who = Identity::generate().unwrap();
        let mut m = Manifest::new("x", "1", who.public_key());
        m.args = vec!["a".into(); MAX_ARGS + 1];
        assert!(matches!(
            Bundle::sign(m, vec![], &who),
            Err(BundleError::BadManifest(_))
        ));
    }

    #[test]
    fn limits_ceiling() {
        let ceiling = Limits::default();
        assert_eq!(ceiling.first_above(&ceiling), None);
        let mut l = ceiling;
        l.memory_bytes += 1;
        assert_eq!(l.first_above(&ceiling), Some("memory_bytes"));
    }
}
