//! Large content (files, directories, runtime modules) as content-addressed
//! blobs that travel in chunks: sans-IO, no clock, no network, and no panic
//! on any input.
//!
//! A blob of `size` bytes (at most [`MAX_BLOB_BYTES`]) is cut into chunks of
//! [`CHUNK_BYTES`] (the last one shorter). Its [`BlobIndex`] lists the
//! SHA-256 of every chunk; its [`BlobId`] is the SHA-256 of a
//! domain-separation prefix, the size and those hashes. Whoever knows the id
//! can check an index it is handed ([`BlobIndex::decode_for`]) and then every
//! chunk on its own ([`BlobIndex::check_chunk`]), from any source, in any
//! order: a chunk is never trusted for where it came from.
//!
//! The index has one canonical encoding ([`BlobIndex::encode`]): a magic, the
//! size as a big-endian `u64`, then exactly as many 32-byte hashes as the size
//! needs. Anything else (a short or long body, a size over the maximum, a
//! wrong magic) is refused by [`BlobIndex::decode`], so two encodings of one
//! index cannot exist. At most 1,024 hashes: an index is at most 32 KiB.
//!
//! Building an index streams ([`IndexBuilder`], [`BlobIndex::read_from`]):
//! a 1 GiB file is hashed one chunk at a time, never held whole.

use std::fmt;
use std::io::Read;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Bytes per chunk (1 MiB); the last chunk of a blob may be shorter.
pub const CHUNK_BYTES: usize = 1 << 20;
/// The largest blob (1 GiB).
pub const MAX_BLOB_BYTES: u64 = 1 << 30;
/// The most chunks of one blob (`MAX_BLOB_BYTES / CHUNK_BYTES`).
pub const MAX_CHUNKS: usize = (MAX_BLOB_BYTES / CHUNK_BYTES as u64) as usize;
/// The first bytes of an encoded index (format version 1).
const MAGIC: &[u8; 4] = b"CBI1";
/// Bytes of an encoded index before the chunk hashes.
const HEADER: usize = MAGIC.len() + 8;
/// Domain separation of the blob id from every other SHA-256 in Chorus.
const ID_DOMAIN: &[u8] = b"chorus blob id v1\0";
/// The largest encoded index.
pub const MAX_INDEX_BYTES: usize = HEADER + 32 * MAX_CHUNKS;

/// The id of a blob: SHA-256 over a domain prefix, the size (little-endian
/// `u64`) and the chunk hashes in order. Printed as 64 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BlobId(#[serde(with = "serde_bytes")] pub [u8; 32]);

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobId({})", hex::encode(self.0))
    }
}

impl FromStr for BlobId {
    type Err = BlobError;

    /// 64 hex digits.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = hex::decode(s.trim()).map_err(|_| BlobError::BadId)?;
        let id: [u8; 32] = bytes.try_into().map_err(|_| BlobError::BadId)?;
        Ok(BlobId(id))
    }
}

/// Why a blob's index or chunk was refused. Checking changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlobError {
    /// The blob is larger than [`MAX_BLOB_BYTES`].
    #[error("a blob of {size} bytes is larger than the maximum {MAX_BLOB_BYTES}")]
    TooLarge {
        /// Its size.
        size: u64,
    },
    /// The encoded index does not start with the format's magic.
    #[error("not a blob index (wrong magic)")]
    BadMagic,
    /// The encoded index's length does not match the chunk count its size
    /// needs (short, long, or a size that disagrees with the hashes).
    #[error(
        "a blob index of {len} bytes does not match its size of {size} bytes ({want} bytes expected)"
    )]
    Length {
        /// The encoded length.
        len: usize,
        /// The size it announces.
        size: u64,
        /// The length a canonical index of that size has.
        want: usize,
    },
    /// The index does not hash to the blob id it was asked for (a forgery,
    /// or an answer about another blob).
    #[error("the index hashes to blob {got}, not to {want}")]
    IdMismatch {
        /// The id asked for.
        want: BlobId,
        /// What the index hashes to.
        got: BlobId,
    },
    /// A chunk index past the last chunk.
    #[error("chunk {index} is past the blob's last chunk ({chunks} chunks)")]
    NoSuchChunk {
        /// The index asked for.
        index: u32,
        /// The blob's chunk count.
        chunks: usize,
    },
    /// A chunk of the wrong length.
    #[error("chunk {index} has {got} bytes, not {want}")]
    ChunkLength {
        /// Its index.
        index: u32,
        /// The length it must have.
        want: usize,
        /// The length it has.
        got: usize,
    },
    /// A chunk whose bytes do not hash to the index's entry.
    #[error("chunk {index} does not match its hash")]
    ChunkHash {
        /// Its index.
        index: u32,
    },
    /// Not 64 hex digits.
    #[error("a blob id is 64 hex digits")]
    BadId,
    /// Reading the content failed (only [`BlobIndex::read_from`]).
    #[error("reading the blob: {0}")]
    Read(String),
}

/// A blob's size and the SHA-256 of each of its chunks.
#[derive(Clone, PartialEq, Eq)]
pub struct BlobIndex {
    size: u64,
    chunks: Vec<[u8; 32]>,
}

impl fmt::Debug for BlobIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobIndex")
            .field("id", &self.id())
            .field("size", &self.size)
            .field("chunks", &self.chunks.len())
            .finish()
    }
}

/// Chunks a blob of `size` bytes has (0 for an empty blob).
pub fn chunks_for(size: u64) -> usize {
    let c = CHUNK_BYTES as u64;
    usize::try_from(size.div_ceil(c)).unwrap_or(usize::MAX)
}

/// The SHA-256 of a chunk's bytes.
pub fn chunk_hash(bytes: &[u8]) -> [u8; 32] {
    crate::job::sha256(bytes)
}

impl BlobIndex {
    /// The index of `bytes` (held in memory; see [`IndexBuilder`] for streams).
    pub fn of(bytes: &[u8]) -> Result<BlobIndex, BlobError> {
        let mut b = IndexBuilder::new();
        b.update(bytes)?;
        b.finish()
    }

    /// The index of everything `r` yields, read one chunk at a time.
    pub fn read_from(mut r: impl Read) -> Result<BlobIndex, BlobError> {
        let mut b = IndexBuilder::new();
        let mut buf = vec![0u8; CHUNK_BYTES];
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(BlobError::Read(e.to_string())),
            };
            b.update(&buf[..n])?;
        }
        b.finish()
    }

    /// An index from its parts, checked: at most [`MAX_BLOB_BYTES`], and as
    /// many hashes as the size needs.
    pub fn from_parts(size: u64, chunks: Vec<[u8; 32]>) -> Result<BlobIndex, BlobError> {
        if size > MAX_BLOB_BYTES {
            return Err(BlobError::TooLarge { size });
        }
        let want = chunks_for(size);
        if chunks.len() != want {
            return Err(BlobError::Length {
                len: HEADER.saturating_add(chunks.len().saturating_mul(32)),
                size,
                want: HEADER + 32 * want,
            });
        }
        Ok(BlobIndex { size, chunks })
    }

    /// The blob's id.
    pub fn id(&self) -> BlobId {
        let mut m = Vec::with_capacity(ID_DOMAIN.len() + 8 + 32 * self.chunks.len());
        m.extend_from_slice(ID_DOMAIN);
        m.extend_from_slice(&self.size.to_le_bytes());
        for c in &self.chunks {
            m.extend_from_slice(c);
        }
        BlobId(crate::job::sha256(&m))
    }

    /// The blob's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The chunk hashes, in order.
    pub fn chunks(&self) -> &[[u8; 32]] {
        &self.chunks
    }

    /// The number of chunks.
    pub fn chunk_count(&self) -> u32 {
        // At most MAX_CHUNKS, checked at construction.
        u32::try_from(self.chunks.len()).unwrap_or(u32::MAX)
    }

    /// The byte offset of chunk `index` in the blob.
    pub fn offset(&self, index: u32) -> u64 {
        u64::from(index).saturating_mul(CHUNK_BYTES as u64)
    }

    /// The length chunk `index` must have, or `None` past the last chunk.
    pub fn chunk_len(&self, index: u32) -> Option<usize> {
        let i = usize::try_from(index).ok()?;
        if i >= self.chunks.len() {
            return None;
        }
        let rest = self.size - self.offset(index);
        Some(usize::try_from(rest.min(CHUNK_BYTES as u64)).unwrap_or(CHUNK_BYTES))
    }

    /// Whether `bytes` is chunk `index` of this blob: the right length and
    /// the right hash.
    pub fn check_chunk(&self, index: u32, bytes: &[u8]) -> Result<(), BlobError> {
        let want = self.chunk_len(index).ok_or(BlobError::NoSuchChunk {
            index,
            chunks: self.chunks.len(),
        })?;
        if bytes.len() != want {
            return Err(BlobError::ChunkLength {
                index,
                want,
                got: bytes.len(),
            });
        }
        // chunk_len checked the index.
        let expected = self.chunks.get(index as usize).copied().unwrap_or_default();
        if chunk_hash(bytes) != expected {
            return Err(BlobError::ChunkHash { index });
        }
        Ok(())
    }

    /// The canonical encoding: magic, size (big-endian `u64`), hashes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + 32 * self.chunks.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.size.to_be_bytes());
        for c in &self.chunks {
            out.extend_from_slice(c);
        }
        out
    }

    /// Decodes a canonical encoding; refuses every other byte string.
    pub fn decode(bytes: &[u8]) -> Result<BlobIndex, BlobError> {
        if bytes.len() < HEADER || &bytes[..MAGIC.len()] != MAGIC {
            return Err(BlobError::BadMagic);
        }
        let mut size = [0u8; 8];
        size.copy_from_slice(&bytes[MAGIC.len()..HEADER]);
        let size = u64::from_be_bytes(size);
        if size > MAX_BLOB_BYTES {
            return Err(BlobError::TooLarge { size });
        }
        let want = HEADER + 32 * chunks_for(size);
        if bytes.len() != want {
            return Err(BlobError::Length {
                len: bytes.len(),
                size,
                want,
            });
        }
        let chunks = bytes[HEADER..]
            .chunks_exact(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                h
            })
            .collect();
        Ok(BlobIndex { size, chunks })
    }

    /// Decodes an index and checks that it is the index of `id`.
    pub fn decode_for(id: BlobId, bytes: &[u8]) -> Result<BlobIndex, BlobError> {
        let index = Self::decode(bytes)?;
        let got = index.id();
        if got != id {
            return Err(BlobError::IdMismatch { want: id, got });
        }
        Ok(index)
    }
}

/// Builds a [`BlobIndex`] from bytes fed in any pieces, holding at most one
/// chunk.
#[derive(Debug, Default)]
pub struct IndexBuilder {
    size: u64,
    chunks: Vec<[u8; 32]>,
    pending: Vec<u8>,
}

impl IndexBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        IndexBuilder::default()
    }

    /// Feeds the next bytes; refuses once the total passes [`MAX_BLOB_BYTES`].
    pub fn update(&mut self, mut bytes: &[u8]) -> Result<(), BlobError> {
        let size = self.size.saturating_add(bytes.len() as u64);
        if size > MAX_BLOB_BYTES {
            return Err(BlobError::TooLarge { size });
        }
        self.size = size;
        while !bytes.is_empty() {
            let take = (CHUNK_BYTES - self.pending.len()).min(bytes.len());
            self.pending.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.pending.len() == CHUNK_BYTES {
                self.chunks.push(chunk_hash(&self.pending));
                self.pending.clear();
            }
        }
        Ok(())
    }

    /// The index of everything fed.
    pub fn finish(mut self) -> Result<BlobIndex, BlobError> {
        if !self.pending.is_empty() {
            self.chunks.push(chunk_hash(&self.pending));
        }
        BlobIndex::from_parts(self.size, self.chunks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic bytes (xorshift), fast.
    fn bytes(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.truncate(n);
        out
    }

    #[test]
    fn sizes_and_chunks_agree_at_every_boundary() {
        for n in [
            0,
            1,
            CHUNK_BYTES - 1,
            CHUNK_BYTES,
            CHUNK_BYTES + 1,
            3 * CHUNK_BYTES + 5,
        ] {
            let data = bytes(n, 7);
            let index = BlobIndex::of(&data).unwrap();
            assert_eq!(index.size(), n as u64);
            assert_eq!(index.chunks().len(), chunks_for(n as u64));
            let total: usize = (0..index.chunk_count())
                .map(|i| index.chunk_len(i).unwrap())
                .sum();
            assert_eq!(total, n);
            for (i, c) in data.chunks(CHUNK_BYTES).enumerate() {
                index.check_chunk(i as u32, c).unwrap();
            }
            assert!(index.chunk_len(index.chunk_count()).is_none());
            // Streaming in odd pieces gives the same index.
            let mut b = IndexBuilder::new();
            for piece in data.chunks(77_777) {
                b.update(piece).unwrap();
            }
            assert_eq!(b.finish().unwrap(), index);
            assert_eq!(BlobIndex::read_from(&data[..]).unwrap(), index);
            // Round trip, and the id is bound to the content.
            let enc = index.encode();
            assert_eq!(BlobIndex::decode_for(index.id(), &enc).unwrap(), index);
        }
        assert_ne!(
            BlobIndex::of(b"").unwrap().id(),
            BlobIndex::of(b"\0").unwrap().id()
        );
    }

    #[test]
    fn a_chunk_is_refused_for_any_flipped_bit_wrong_length_or_index() {
        let data = bytes(2 * CHUNK_BYTES + 10, 3);
        let index = BlobIndex::of(&data).unwrap();
        let mut c = data[CHUNK_BYTES..2 * CHUNK_BYTES].to_vec();
        index.check_chunk(1, &c).unwrap();
        c[12345] ^= 1;
        assert_eq!(
            index.check_chunk(1, &c),
            Err(BlobError::ChunkHash { index: 1 })
        );
        assert!(matches!(
            index.check_chunk(0, &data[..CHUNK_BYTES - 1]),
            Err(BlobError::ChunkLength { .. })
        ));
        assert!(matches!(
            index.check_chunk(2, &data[..CHUNK_BYTES]),
            Err(BlobError::ChunkLength { .. })
        ));
        // The right bytes at the wrong place.
        assert!(
            index
                .check_chunk(0, &data[CHUNK_BYTES..2 * CHUNK_BYTES])
                .is_err()
        );
        assert!(matches!(
            index.check_chunk(3, b"x"),
            Err(BlobError::NoSuchChunk { .. })
        ));
        assert!(index.check_chunk(u32::MAX, b"").is_err());
    }

    #[test]
    fn only_canonical_indexes_decode() {
        let index = BlobIndex::of(&bytes(CHUNK_BYTES + 1, 9)).unwrap();
        let enc = index.encode();
        // Short, long, a size that needs another chunk count, a bad magic.
        assert!(BlobIndex::decode(&enc[..enc.len() - 1]).is_err());
        let mut long = enc.clone();
        long.extend_from_slice(&[0; 32]);
        assert!(matches!(
            BlobIndex::decode(&long),
            Err(BlobError::Length { .. })
        ));
        let mut size = enc.clone();
        size[4..12].copy_from_slice(&(3 * CHUNK_BYTES as u64).to_be_bytes());
        assert!(matches!(
            BlobIndex::decode(&size),
            Err(BlobError::Length { .. })
        ));
        let mut magic = enc.clone();
        magic[0] = b'X';
        assert_eq!(BlobIndex::decode(&magic), Err(BlobError::BadMagic));
        // Over the maximum, whatever follows.
        let mut big = enc.clone();
        big[4..12].copy_from_slice(&(MAX_BLOB_BYTES + 1).to_be_bytes());
        assert!(matches!(
            BlobIndex::decode(&big),
            Err(BlobError::TooLarge { .. })
        ));
        // Another index (same shape, a hash changed) is refused for this id.
        let mut other = enc.clone();
        other[HEADER] ^= 1;
        assert!(matches!(
            BlobIndex::decode_for(index.id(), &other),
            Err(BlobError::IdMismatch { .. })
        ));
        assert!(BlobIndex::from_parts(5, vec![]).is_err());
        assert!(BlobIndex::from_parts(0, vec![[0; 32]]).is_err());
    }

    #[test]
    fn no_byte_string_panics_the_decoder() {
        // A seeded sweep of short and mutated inputs (the fuzz target does more).
        let good = BlobIndex::of(&bytes(3 * CHUNK_BYTES, 1)).unwrap().encode();
        let mut x = 0x0b10bu64;
        for len in 0..200usize {
            let mut b = bytes(len, x);
            if len >= 4 {
                b[..4].copy_from_slice(MAGIC);
            }
            let _ = BlobIndex::decode(&b);
            let mut m = good.clone();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let at = (x as usize) % m.len();
            m[at] ^= (x >> 32) as u8 | 1;
            let _ = BlobIndex::decode(&m);
        }
    }

    #[test]
    fn ids_print_and_parse_as_hex() {
        let id = BlobIndex::of(b"hello").unwrap().id();
        assert_eq!(id.to_string().len(), 64);
        assert_eq!(id.to_string().parse::<BlobId>().unwrap(), id);
        assert!("abc".parse::<BlobId>().is_err());
        let bytes = rmp_serde::to_vec(&id).unwrap();
        assert_eq!(bytes.len(), 2 + 32, "a bin of 32 bytes");
        assert_eq!(rmp_serde::from_slice::<BlobId>(&bytes).unwrap(), id);
    }

    #[test]
    fn too_large_is_refused_while_streaming() {
        let mut b = IndexBuilder::new();
        b.size = MAX_BLOB_BYTES;
        assert!(matches!(b.update(b"x"), Err(BlobError::TooLarge { .. })));
    }
}
