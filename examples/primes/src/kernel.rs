//! Prime counter: the pure computation (a segmented sieve of Eratosthenes over
//! odd numbers), shared by the guest task and the native reference.

use serde::{Deserialize, Serialize};

/// The largest upper bound accepted (2^42, so the base sieve stays ≤ 2^21).
pub const MAX_HI: u64 = 1 << 42;

/// Odd numbers per sieve segment (32 KiB, fits in L1 on the host).
const SEGMENT: usize = 32 * 1024;

/// A half-open range of integers to search, `lo..hi`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    /// First number searched.
    pub lo: u64,
    /// One past the last number searched.
    pub hi: u64,
}

/// How many primes a range holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrimeCount {
    /// First number searched.
    pub lo: u64,
    /// One past the last number searched.
    pub hi: u64,
    /// Number of primes in `lo..hi`.
    pub count: u64,
    /// The largest prime in `lo..hi`, if any.
    pub largest: Option<u64>,
}

/// Counts the primes in `range.lo..range.hi`.
pub fn count_primes(range: &Range) -> Result<PrimeCount, String> {
    let (lo, hi) = (range.lo, range.hi);
    if lo > hi || hi > MAX_HI {
        return Err(format!("range {lo}..{hi}: need lo <= hi <= {MAX_HI}"));
    }
    let mut count = 0u64;
    let mut largest = None;
    if lo <= 2 && 2 < hi {
        count += 1;
        largest = Some(2);
    }
    let base = odd_primes_up_to(isqrt(hi));
    let mut seg = vec![0u8; SEGMENT];
    // First odd number >= max(lo, 3).
    let mut start = lo.max(3) | 1;
    while start < hi {
        let end = hi.min(start + 2 * SEGMENT as u64);
        let len = ((end - start).div_ceil(2)) as usize;
        let seg = &mut seg[..len];
        seg.fill(1);
        for &p in &base {
            if p * p >= end {
                break;
            }
            // First odd multiple of p that is >= max(p*p, start).
            let mut m = (p * p).max(start.div_ceil(p) * p);
            if m % 2 == 0 {
                m += p;
            }
            let first = ((m - start) / 2) as usize;
            let step = p as usize;
            if first >= len {
                continue;
            }
            // Unrolled by four without bounds checks (the chunks are exact): a
            // quarter of the loop back-edges, which is where a sandbox pays for
            // fuel metering and interruption checks.
            let mut chunks = seg[first..].chunks_exact_mut(4 * step);
            for c in &mut chunks {
                c[0] = 0;
                c[step] = 0;
                c[2 * step] = 0;
                c[3 * step] = 0;
            }
            for b in chunks.into_remainder().iter_mut().step_by(step) {
                *b = 0;
            }
        }
        let found = seg.iter().filter(|&&b| b != 0).count() as u64;
        if found > 0 {
            count += found;
            if let Some(i) = seg.iter().rposition(|&b| b != 0) {
                largest = Some(start + 2 * i as u64);
            }
        }
        start = end | 1;
    }
    Ok(PrimeCount {
        lo,
        hi,
        count,
        largest,
    })
}

/// The odd primes `<= n`, by a plain sieve.
fn odd_primes_up_to(n: u64) -> Vec<u64> {
    let n = n as usize;
    let mut composite = vec![false; n + 1];
    let mut primes = Vec::new();
    let mut p = 3;
    while p <= n {
        if !composite[p] {
            primes.push(p as u64);
            let mut m = p * p;
            while m <= n {
                composite[m] = true;
                m += 2 * p;
            }
        }
        p += 2;
    }
    primes
}

/// The integer square root: the largest `r` with `r * r <= n`.
fn isqrt(n: u64) -> u64 {
    let mut r = (n as f64).sqrt() as u64;
    while r * r > n {
        r -= 1;
    }
    while (r + 1) * (r + 1) <= n {
        r += 1;
    }
    r
}
