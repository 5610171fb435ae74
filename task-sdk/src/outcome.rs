//! How a task ended, and the stable bytes that replicas compare.
//!
//! Shared by nodes (which produce outcomes and vote with their digests) and
//! clients (which receive the accepted ones).

use std::fmt;

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
    /// The task's writes to its mounted directories passed its scratch limit
    /// ([`crate::bundle::Limits::scratch_bytes`]).
    ScratchLimit,
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
            Outcome::ScratchLimit => out.push(8),
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
            Outcome::ScratchLimit => {
                f.write_str("ScratchLimit: the task wrote more than its scratch limit")
            }
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

/// Domain separation of outcome digests.
const DIGEST_CONTEXT: &[u8] = b"chorus outcome v1\0";

/// The digest replicas vote with: SHA-256 over a deterministic outcome and,
/// for `Ok` and `Exit`, the output. `None` when the outcome is no verdict.
///
/// Layout hashed: `"chorus outcome v1\0"`, the outcome encoding
/// ([`Outcome::encode`]), then for `Ok` and `Exit` the output length as
/// 8 bytes little-endian and the output bytes. Fuel, time and stderr are not
/// part of it.
pub fn digest(outcome: &Outcome, output: &[u8]) -> Option<[u8; 32]> {
    let encoded = outcome.encode()?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(DIGEST_CONTEXT);
    ctx.update(&encoded);
    if matches!(outcome, Outcome::Ok | Outcome::Exit(_)) {
        ctx.update(&(output.len() as u64).to_le_bytes());
        ctx.update(output);
    }
    let mut d = [0u8; 32];
    d.copy_from_slice(ctx.finish().as_ref());
    Some(d)
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
        let a = digest(&Outcome::Ok, b"42");
        assert!(a.is_some());
        assert_ne!(a, digest(&Outcome::Ok, b"43"));
        assert_ne!(a, digest(&Outcome::Exit(0x2a), b"42"));
        // Errors carry no output: what they printed is not compared.
        assert_eq!(
            digest(&Outcome::FuelExhausted, b"x"),
            digest(&Outcome::FuelExhausted, b"y")
        );
        assert_eq!(digest(&Outcome::Timeout, b""), None);
        assert_eq!(
            digest(&Outcome::InvalidModule("a".into()), b""),
            digest(&Outcome::InvalidModule("b".into()), b"")
        );
    }
}
