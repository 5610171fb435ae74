//! Uniform placement.

use super::{Candidate, Placement, draw};
use crate::rng::Rng;

/// Any eligible candidate with equal probability, whatever it claims. This is
/// the placement the closed-form error rates assume (a saboteur is picked
/// with probability equal to its share of the workers), so the job simulator
/// uses it to check them.
#[derive(Clone, Copy, Debug, Default)]
pub struct Uniform;

impl<W> Placement<W> for Uniform {
    fn choose(
        &mut self,
        candidates: &[Candidate<W>],
        pool: &[usize],
        excluded: &dyn Fn(&W) -> bool,
        rng: &mut Rng,
    ) -> Option<usize> {
        draw(candidates, pool, excluded, None, rng)
    }
}
