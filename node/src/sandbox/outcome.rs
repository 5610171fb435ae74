//! How a task ended, and the stable bytes that replicas compare.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How a task ended.
///
/// Deterministic outcomes ([`Outcome::is_verdict`]) are the same on every
/// correct node running the same task under the same limits, so they are votes;
/// the others depend on the machine and the coordinator must run the task again
/// elsewhere instead of counting them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The task returned from `_start` (or called `proc_exit(0)`): its stdout is the output.
    Ok,
    /// The task called `proc_exit` with this non-zero code.
    Exit(i32),
    /// The task used all the fuel of its limits.
    FuelExhausted,
    /// The task tried to grow linear memory or a table past its limits, or to
    /// create more instances, memories or tables than allowed.
    MemoryLimit,
    /// The task wrote more than its stdout or stderr cap.
    OutputTooLarge,
    /// The task's input (stdin plus arguments) is over its input cap; it did not run.
    InputTooLarge,
    /// The task trapped with this trap code.
    Trap(TrapCode),
    /// The module is over the size cap, not valid WebAssembly, or not a WASI
    /// command (imports something other than WASI preview 1, or has no `_start`).
    InvalidModule(String),
    /// The wall-clock deadline passed (epoch interruption). No verdict.
    Timeout,
    /// The node failed, not the task (resources, an unexpected host error). No verdict.
    HostError(String),
}

/// A WebAssembly trap, by code. Codes are stable (their byte is part of the
/// outcome digest); the text is for people.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TrapCode {
    /// `unreachable` executed (also Rust panics and C `abort()`).
    Unreachable,
    /// Out-of-bounds linear memory access.
    MemoryOutOfBounds,
    /// Misaligned atomic access.
    HeapMisaligned,
    /// Out-of-bounds table access.
    TableOutOfBounds,
    /// Indirect call to a null table entry.
    IndirectCallToNull,
    /// Indirect call with the wrong signature.
    BadSignature,
    /// Integer overflow (`i32.div_s` of MIN by -1).
    IntegerOverflow,
    /// Integer division by zero.
    IntegerDivisionByZero,
    /// Float to integer conversion out of range or NaN.
    BadConversionToInteger,
    /// Null reference.
    NullReference,
    /// A WASI call got an out-of-bounds or misaligned pointer or a malformed
    /// argument; the WASI specification says such a call traps.
    BadWasiArgument,
    /// The wasm stack limit was hit. The depth at which that happens depends on
    /// the machine and the build, so this one is not a verdict.
    StackOverflow,
}

impl Outcome {
    /// Whether every correct node reproduces this outcome, so that it may be
    /// counted as a vote. `false` means "run it again elsewhere".
    pub fn is_verdict(&self) -> bool {
        !matches!(
            self,
            Outcome::Timeout | Outcome::HostError(_) | Outcome::Trap(TrapCode::StackOverflow)
        )
    }

    /// Whether the task succeeded.
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok)
    }

    /// Stable bytes for a verdict, without the output: a tag byte and its
    /// payload (`Exit`: the code, 4 bytes little-endian; `Trap`: the code byte).
    /// The reason text of `InvalidModule` is left out: it is the engine's
    /// wording, not the task's behaviour. `None` for a non-verdict.
    pub fn encode(&self) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(5);
        match self {
            Outcome::Ok => out.push(0),
            Outcome::Exit(code) => {
                out.push(1);
                out.extend_from_slice(&code.to_le_bytes());
            }
            Outcome::FuelExhausted => out.push(2),
            Outcome::MemoryLimit => out.push(3),
            Outcome::OutputTooLarge => out.push(4),
            Outcome::InputTooLarge => out.push(5),
            Outcome::Trap(code) => {
                if *code == TrapCode::StackOverflow {
                    return None;
                }
                out.push(6);
                out.push(code.byte());
            }
            Outcome::InvalidModule(_) => out.push(7),
            Outcome::Timeout | Outcome::HostError(_) => return None,
        }
        Some(out)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Ok => f.write_str("ok"),
            Outcome::Exit(code) => write!(f, "exit code {code}"),
            Outcome::FuelExhausted => f.write_str("FuelExhausted: the task used all its fuel"),
            Outcome::MemoryLimit => f.write_str("MemoryLimit: the task exceeded its memory limit"),
            Outcome::OutputTooLarge => {
                f.write_str("OutputTooLarge: the task wrote more than its output cap")
            }
            Outcome::InputTooLarge => f.write_str("InputTooLarge: the input is over its cap"),
            Outcome::Trap(code) => write!(f, "Trap: {code}"),
            Outcome::InvalidModule(why) => write!(f, "InvalidModule: {why}"),
            Outcome::Timeout => f.write_str("Timeout: the wall-clock deadline passed"),
            Outcome::HostError(why) => write!(f, "HostError: {why}"),
        }
    }
}

impl TrapCode {
    /// The stable byte of this code in outcome encodings.
    pub fn byte(self) -> u8 {
        match self {
            TrapCode::Unreachable => 1,
            TrapCode::MemoryOutOfBounds => 2,
            TrapCode::HeapMisaligned => 3,
            TrapCode::TableOutOfBounds => 4,
            TrapCode::IndirectCallToNull => 5,
            TrapCode::BadSignature => 6,
            TrapCode::IntegerOverflow => 7,
            TrapCode::IntegerDivisionByZero => 8,
            TrapCode::BadConversionToInteger => 9,
            TrapCode::NullReference => 10,
            TrapCode::StackOverflow => 11,
            TrapCode::BadWasiArgument => 12,
        }
    }

    /// The code of a wasmtime trap, if it is one a task can cause on its own.
    pub(crate) fn from_wasmtime(trap: wasmtime::Trap) -> Option<TrapCode> {
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
}

impl fmt::Display for TrapCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TrapCode::Unreachable => "unreachable executed (a panic or abort in the task)",
            TrapCode::MemoryOutOfBounds => "out of bounds memory access",
            TrapCode::HeapMisaligned => "misaligned atomic access",
            TrapCode::TableOutOfBounds => "out of bounds table access",
            TrapCode::IndirectCallToNull => "indirect call to a null table entry",
            TrapCode::BadSignature => "indirect call type mismatch",
            TrapCode::IntegerOverflow => "integer overflow",
            TrapCode::IntegerDivisionByZero => "integer divide by zero",
            TrapCode::BadConversionToInteger => "invalid conversion to integer",
            TrapCode::NullReference => "null reference",
            TrapCode::StackOverflow => "wasm stack exhausted",
            TrapCode::BadWasiArgument => {
                "a WASI call got an out-of-bounds, misaligned or malformed argument"
            }
        })
    }
}

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
        let encoded = self.outcome.encode()?;
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(b"chorus outcome v1\0");
        ctx.update(&encoded);
        if matches!(self.outcome, Outcome::Ok | Outcome::Exit(_)) {
            ctx.update(&(self.stdout.len() as u64).to_le_bytes());
            ctx.update(&self.stdout);
        }
        let mut d = [0u8; 32];
        d.copy_from_slice(ctx.finish().as_ref());
        Some(OutcomeDigest(d))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_and_non_verdicts() {
        assert!(Outcome::Ok.is_verdict());
        assert!(Outcome::Exit(3).is_verdict());
        assert!(Outcome::FuelExhausted.is_verdict());
        assert!(Outcome::Trap(TrapCode::Unreachable).is_verdict());
        assert!(!Outcome::Trap(TrapCode::StackOverflow).is_verdict());
        assert!(!Outcome::Timeout.is_verdict());
        assert!(!Outcome::HostError("x".into()).is_verdict());
        assert_eq!(Outcome::Timeout.encode(), None);
    }

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
