//! Power of two choices, as in the Sparrow scheduler.

use super::{Candidate, Placement, draw};
use crate::rng::Rng;

/// Samples two distinct eligible candidates at random and keeps the better by
/// free slots, then speed, then reputation (the first sampled on a full tie).
/// Load spreads like the best of all choices at the cost of two looks.
#[derive(Clone, Copy, Debug, Default)]
pub struct TwoChoices;

impl<W> Placement<W> for TwoChoices {
    fn choose(
        &mut self,
        candidates: &[Candidate<W>],
        pool: &[usize],
        excluded: &dyn Fn(&W) -> bool,
        rng: &mut Rng,
    ) -> Option<usize> {
        let first = draw(candidates, pool, excluded, None, rng)?;
        let Some(second) = draw(candidates, pool, excluded, Some(first), rng) else {
            return Some(first);
        };
        let rank = |p: usize| candidates[pool[p]].rank();
        Some(if rank(second) > rank(first) {
            second
        } else {
            first
        })
    }
}
