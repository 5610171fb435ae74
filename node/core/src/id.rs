//! Positions on the 64-bit identifier circle and interval arithmetic on it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A position on the 64-bit Chord identifier circle.
///
/// Node positions are derived from the SHA-256 of the node's public key (the
/// first eight bytes, big-endian), so nobody chooses where they sit. Positions
/// print as 16 lower-case hex digits everywhere.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct RingPos(pub u64);

/// A ring position that could not be parsed from text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid ring position {0:?}: expected 16 hex digits")]
pub struct ParseRingPosError(pub String);

impl RingPos {
    /// The position derived from a 32-byte digest: its first eight bytes, big-endian.
    pub fn from_digest(digest: &[u8; 32]) -> Self {
        let mut b = [0u8; 8];
        b.copy_from_slice(&digest[..8]);
        RingPos(u64::from_be_bytes(b))
    }

    /// Clockwise distance from `self` to `other` (0 when equal).
    pub fn distance_to(self, other: RingPos) -> u64 {
        other.0.wrapping_sub(self.0)
    }

    /// The position `self + 2^i` (mod 2^64), the start of finger `i`.
    pub fn finger_start(self, i: u32) -> RingPos {
        RingPos(self.0.wrapping_add(1u64.checked_shl(i).unwrap_or(0)))
    }

    /// `self` in the open interval `(a, b)` going clockwise from `a`.
    ///
    /// When `a == b` the interval is the whole circle except `a`.
    pub fn in_open(self, a: RingPos, b: RingPos) -> bool {
        if a == b {
            return self != a;
        }
        let d = a.distance_to(self);
        d != 0 && d < a.distance_to(b)
    }

    /// `self` in the half-open interval `(a, b]` going clockwise from `a`.
    ///
    /// When `a == b` the interval is the whole circle.
    pub fn in_open_closed(self, a: RingPos, b: RingPos) -> bool {
        if a == b {
            return true;
        }
        let d = a.distance_to(self);
        d != 0 && d <= a.distance_to(b)
    }
}

impl fmt::Display for RingPos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for RingPos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RingPos({:016x})", self.0)
    }
}

impl FromStr for RingPos {
    type Err = ParseRingPosError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 16 || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(ParseRingPosError(s.to_string()));
        }
        u64::from_str_radix(s, 16)
            .map(RingPos)
            .map_err(|_| ParseRingPosError(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_wrap_around() {
        let a = RingPos(u64::MAX - 10);
        let b = RingPos(5);
        assert!(RingPos(u64::MAX).in_open(a, b));
        assert!(RingPos(0).in_open(a, b));
        assert!(RingPos(4).in_open(a, b));
        assert!(!RingPos(5).in_open(a, b));
        assert!(RingPos(5).in_open_closed(a, b));
        assert!(!a.in_open(a, b));
        assert!(!a.in_open_closed(a, b));
        assert!(!RingPos(6).in_open_closed(a, b));
        assert!(!RingPos(100).in_open(a, b));
    }

    #[test]
    fn degenerate_intervals_cover_the_circle() {
        let a = RingPos(42);
        assert!(!a.in_open(a, a));
        assert!(RingPos(43).in_open(a, a));
        assert!(a.in_open_closed(a, a));
        assert!(RingPos(7).in_open_closed(a, a));
    }

    #[test]
    fn finger_starts_wrap() {
        let a = RingPos(u64::MAX);
        assert_eq!(a.finger_start(0), RingPos(0));
        assert_eq!(RingPos(0).finger_start(63), RingPos(1 << 63));
        assert_eq!(RingPos(1 << 63).finger_start(63), RingPos(0));
    }

    #[test]
    fn hex_round_trip() {
        let p = RingPos(0x00ab_cdef_0123_4567);
        assert_eq!(p.to_string(), "00abcdef01234567");
        assert_eq!("00abcdef01234567".parse::<RingPos>(), Ok(p));
        assert!("abc".parse::<RingPos>().is_err());
        assert!("+0abcdef01234567".parse::<RingPos>().is_err());
    }
}
