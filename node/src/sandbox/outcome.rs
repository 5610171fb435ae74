//! What a task did on this node: its outcome (shared with clients, in
//! [`chorus_sdk::outcome`]), output and costs.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use chorus_sdk::outcome::{Outcome, TrapCode};

/// What a task did: its outcome, its output, and what it cost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskReport {
    /// How the task ended.
    pub outcome: Outcome,
    /// What the task wrote to stdout (up to the cap): its output.
    pub stdout: Vec<u8>,
    /// What the task wrote to stderr (up to the cap): diagnostics only, not compared.
    pub stderr: Vec<u8>,
    /// Fuel used (deterministic; 0 when the engine does not meter fuel).
    /// Exact for every verdict. After a [`Outcome::Timeout`] it counts only up
    /// to the task's last call or return: wasmtime keeps the fuel counter in a
    /// register and does not write it back when an epoch interrupt traps.
    pub fuel_used: u64,
    /// Wall-clock time of instantiation and run on this node.
    pub wall: Duration,
}

/// SHA-256 over a deterministic outcome and, for `Ok` and `Exit`, the output:
/// what replicas compare.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OutcomeDigest(pub [u8; 32]);

impl fmt::Display for OutcomeDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for OutcomeDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OutcomeDigest({})", hex::encode(self.0))
    }
}

impl TaskReport {
    /// The digest replicas vote with, or `None` when this run is no verdict.
    ///
    /// Layout hashed: `"chorus outcome v1\0"`, the outcome encoding
    /// ([`Outcome::encode`]), then for `Ok` and `Exit` the stdout length as
    /// 8 bytes little-endian and the stdout bytes. Fuel, time and stderr are
    /// not part of it.
    pub fn digest(&self) -> Option<OutcomeDigest> {
        chorus_sdk::outcome::digest(&self.outcome, &self.stdout).map(OutcomeDigest)
    }

    /// A report for a task that never ran.
    pub(crate) fn without_run(outcome: Outcome) -> Self {
        TaskReport {
            outcome,
            stdout: Vec::new(),
            stderr: Vec::new(),
            fuel_used: 0,
            wall: Duration::ZERO,
        }
    }
}

/// The code of a wasmtime trap, if it is one a task can cause on its own.
pub(crate) fn trap_code(trap: wasmtime::Trap) -> Option<TrapCode> {
    use wasmtime::Trap as T;
    Some(match trap {
        T::UnreachableCodeReached => TrapCode::Unreachable,
        T::MemoryOutOfBounds => TrapCode::MemoryOutOfBounds,
        T::HeapMisaligned => TrapCode::HeapMisaligned,
        T::TableOutOfBounds => TrapCode::TableOutOfBounds,
        T::IndirectCallToNull => TrapCode::IndirectCallToNull,
        T::BadSignature => TrapCode::BadSignature,
        T::IntegerOverflow => TrapCode::IntegerOverflow,
        T::IntegerDivisionByZero => TrapCode::IntegerDivisionByZero,
        T::BadConversionToInteger => TrapCode::BadConversionToInteger,
        T::NullReference => TrapCode::NullReference,
        T::StackOverflow => TrapCode::StackOverflow,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_covers_output_and_outcome() {
        let mut a = TaskReport::without_run(Outcome::Ok);
        a.stdout = b"42".to_vec();
        let mut b = a.clone();
        b.stderr = b"noise".to_vec();
        b.fuel_used = 99;
        assert_eq!(a.digest(), b.digest());
        b.stdout = b"43".to_vec();
        assert_ne!(a.digest(), b.digest());
        let mut c = a.clone();
        c.outcome = Outcome::Exit(0x2a);
        assert_ne!(a.digest(), c.digest());
        let t = TaskReport::without_run(Outcome::Timeout);
        assert_eq!(t.digest(), None);
        let i1 = TaskReport::without_run(Outcome::InvalidModule("a".into()));
        let i2 = TaskReport::without_run(Outcome::InvalidModule("b".into()));
        assert_eq!(i1.digest(), i2.digest());
    }
}
