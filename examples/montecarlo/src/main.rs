//! Chorus task: a seeded Monte Carlo estimate of π.
//!
//! Input (MessagePack): a [`kernel::Job`] `{samples}`. Output (MessagePack): a
//! [`kernel::Estimate`] `{samples, inside, pi}`. The seed is the first 32 bytes
//! of WASI `random_get`, which the node derives from the task's seed.

mod kernel;

fn main() {
    chorus_sdk::guest::run(|job: kernel::Job| -> Result<kernel::Estimate, String> {
        let mut seed = [0u8; 32];
        chorus_sdk::guest::random_bytes(&mut seed).map_err(|e| e.to_string())?;
        kernel::estimate(&job, seed)
    })
}
