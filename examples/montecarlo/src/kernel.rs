//! Monte Carlo estimate of π: the pure computation, shared by the guest task
//! and the native reference. The 32-byte seed comes from WASI `random_get`,
//! which a Chorus node seeds from the task: every replica draws the same points.

use serde::{Deserialize, Serialize};

/// The largest number of samples accepted in one task.
pub const MAX_SAMPLES: u64 = 1 << 40;

/// How many points to throw.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Points thrown into the unit square.
    pub samples: u64,
}

/// What the points showed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// Points thrown.
    pub samples: u64,
    /// Points inside the quarter circle.
    pub inside: u64,
    /// `4 * inside / samples`.
    pub pi: f64,
}

/// Throws `job.samples` points drawn from xoshiro256** seeded with `seed`.
pub fn estimate(job: &Job, seed: [u8; 32]) -> Result<Estimate, String> {
    if job.samples == 0 || job.samples > MAX_SAMPLES {
        return Err(format!("samples must be 1..={MAX_SAMPLES}"));
    }
    let mut rng = Xoshiro256::new(seed);
    let mut inside = 0u64;
    for _ in 0..job.samples {
        let x = rng.unit();
        let y = rng.unit();
        if x * x + y * y < 1.0 {
            inside += 1;
        }
    }
    Ok(Estimate {
        samples: job.samples,
        inside,
        pi: 4.0 * inside as f64 / job.samples as f64,
    })
}

/// xoshiro256** (Blackman and Vigna): small, fast, and ours, so it never changes under us.
struct Xoshiro256 {
    s: [u64; 4],
}

impl Xoshiro256 {
    fn new(seed: [u8; 32]) -> Self {
        let mut s = [0u64; 4];
        for (i, w) in s.iter_mut().enumerate() {
            let mut b = [0u8; 8];
            b.copy_from_slice(&seed[i * 8..i * 8 + 8]);
            *w = u64::from_le_bytes(b);
        }
        if s == [0; 4] {
            s[0] = 0x9E37_79B9_7F4A_7C15;
        }
        Xoshiro256 { s }
    }

    fn next(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// A uniform `f64` in `[0, 1)` from the top 53 bits.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}
