//! The task-limit flags `chorus run` and `chorus submit` share.

use anyhow::{Context, bail};
use chorus_sdk::bundle::Limits;

/// Per-task limit overrides; unset ones keep the bundle manifest's value.
#[derive(Debug, Clone, Default, PartialEq, clap::Args)]
pub struct LimitArgs {
    /// Fuel limit per task (about one unit per wasm instruction).
    #[arg(long, value_name = "N")]
    pub fuel: Option<u64>,
    /// Linear memory limit per task, in MiB.
    #[arg(long, value_name = "N")]
    pub memory_mb: Option<u64>,
    /// Wall-clock limit per task, in seconds (fractions allowed).
    #[arg(long, value_name = "S")]
    pub timeout_s: Option<f64>,
    /// Largest input (stdin) per task, in MiB (default 16).
    #[arg(long, value_name = "N")]
    pub max_input_mb: Option<u64>,
    /// Bytes a task's writes may add to its mounted directories, in MiB
    /// (default 64): past it the task ends with `scratch_limit`.
    #[arg(long, value_name = "N")]
    pub scratch_mb: Option<u64>,
    /// Wasm stack per task, in KiB (default 512; interpreters need more).
    #[arg(long, value_name = "N")]
    pub stack_kb: Option<u32>,
}

impl LimitArgs {
    /// `limits` with these overrides applied.
    pub fn apply(&self, mut limits: Limits) -> anyhow::Result<Limits> {
        if let Some(fuel) = self.fuel {
            limits.fuel = fuel;
        }
        if let Some(mb) = self.memory_mb {
            limits.memory_bytes = mb
                .checked_mul(1 << 20)
                .context("--memory-mb is too large")?;
        }
        if let Some(mb) = self.max_input_mb {
            if mb == 0 {
                bail!("--max-input-mb must be at least 1");
            }
            limits.input_bytes = mb
                .checked_mul(1 << 20)
                .context("--max-input-mb is too large")?;
        }
        if let Some(mb) = self.scratch_mb {
            limits.scratch_bytes = mb
                .checked_mul(1 << 20)
                .context("--scratch-mb is too large")?;
        }
        if let Some(kb) = self.stack_kb {
            if !(4..=(4 << 20)).contains(&kb) {
                bail!("--stack-kb must be 4..=4194304");
            }
            limits.stack_bytes = kb << 10;
        }
        if let Some(s) = self.timeout_s {
            if !(s.is_finite() && s > 0.0 && s < 1e9) {
                bail!("--timeout-s must be a positive number of seconds");
            }
            limits.wall_ms = ((s * 1000.0).ceil() as u64).max(1);
        }
        Ok(limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_apply_and_bad_values_are_refused() {
        let base = Limits::default();
        assert_eq!(LimitArgs::default().apply(base).unwrap(), base);
        let l = LimitArgs {
            fuel: Some(1000),
            memory_mb: Some(64),
            timeout_s: Some(1.5),
            max_input_mb: Some(40),
            scratch_mb: Some(3),
            stack_kb: Some(8192),
        }
        .apply(base)
        .unwrap();
        assert_eq!((l.fuel, l.memory_bytes, l.wall_ms), (1000, 64 << 20, 1500));
        assert_eq!(l.input_bytes, 40 << 20);
        assert_eq!((l.scratch_bytes, l.stack_bytes), (3 << 20, 8 << 20));
        let zero = LimitArgs {
            max_input_mb: Some(0),
            ..LimitArgs::default()
        };
        assert!(zero.apply(base).is_err());
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e10] {
            let a = LimitArgs {
                timeout_s: Some(bad),
                ..LimitArgs::default()
            };
            assert!(a.apply(base).is_err(), "{bad}");
        }
        let huge = LimitArgs {
            memory_mb: Some(u64::MAX),
            ..LimitArgs::default()
        };
        assert!(huge.apply(base).is_err());
    }
}
