//! Chorus task: counts the primes in a range.
//!
//! Input (MessagePack): a [`kernel::Range`] `{lo, hi}`. Output (MessagePack): a
//! [`kernel::PrimeCount`] `{lo, hi, count, largest}`; the client adds the counts.

mod kernel;

fn main() {
    chorus_sdk::guest::run(|range: kernel::Range| kernel::count_primes(&range))
}
