//! Placement: which worker gets the next replica of a task.
//!
//! A policy is one type implementing [`Placement`] (one file each:
//! [`TwoChoices`], [`Uniform`]); [`PlacementPolicy`] names them for
//! configuration and the command line. The job machine hands a policy the
//! candidates with a free slot (the *pool*) and a predicate for the workers
//! the task must not get (they already ran it); the policy returns one pool
//! entry. Policies never see the clock or the network: randomness is the
//! caller's seeded [`Rng`].

mod two_choices;
mod uniform;

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::WorkerId;
use crate::rng::Rng;
pub use two_choices::TwoChoices;
pub use uniform::Uniform;

/// A worker the coordinator could send a replica to, from its capacity record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate<W> {
    /// The worker.
    pub id: W,
    /// Free task slots it announced; 0 means busy (ineligible).
    pub free_slots: u32,
    /// Its measured speed, wasm fuel per second.
    pub fuel_per_sec: u64,
    /// Its reputation score ([`super::Reputation::score`]).
    pub reputation: i32,
    /// The network it stands in (for the node: the IPv4 /24 or IPv6 /48 of
    /// the address the coordinator reaches it at). No two replicas of one
    /// task that could vote together share a network
    /// ([`super::MachineConfig::diverse`]).
    #[serde(default)]
    pub network: u128,
    /// Its trust record, for adaptive verification
    /// ([`super::Reputation::trust`]).
    #[serde(default)]
    pub trust: super::trust::Trust,
}

impl<W> Candidate<W> {
    /// The order policies rank by: free slots, then speed, then reputation.
    pub fn rank(&self) -> (u32, u64, i32) {
        (self.free_slots, self.fuel_per_sec, self.reputation)
    }
}

/// A placement policy: picks one worker for one replica.
pub trait Placement<W> {
    /// Picks an entry of `pool` (indices into `candidates`, each with a free
    /// slot) whose worker is not `excluded`, and returns its position in
    /// `pool`; `None` when every pool entry is excluded.
    fn choose(
        &mut self,
        candidates: &[Candidate<W>],
        pool: &[usize],
        excluded: &dyn Fn(&W) -> bool,
        rng: &mut Rng,
    ) -> Option<usize>;
}

/// The placement policies there are, by name (`two-choices`, `uniform`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PlacementPolicy {
    /// Power of two choices by free slots, speed and reputation (Sparrow).
    /// The node's default.
    #[default]
    TwoChoices,
    /// Uniformly at random among eligible workers: the model of the closed
    /// forms for collusion.
    Uniform,
}

impl PlacementPolicy {
    /// The stable name (`two-choices`, `uniform`).
    pub fn as_str(self) -> &'static str {
        match self {
            PlacementPolicy::TwoChoices => "two-choices",
            PlacementPolicy::Uniform => "uniform",
        }
    }
}

impl std::str::FromStr for PlacementPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "two-choices" => Ok(PlacementPolicy::TwoChoices),
            "uniform" => Ok(PlacementPolicy::Uniform),
            other => Err(format!(
                "unknown placement {other:?} (expected two-choices or uniform)"
            )),
        }
    }
}

impl<W> Placement<W> for PlacementPolicy {
    fn choose(
        &mut self,
        candidates: &[Candidate<W>],
        pool: &[usize],
        excluded: &dyn Fn(&W) -> bool,
        rng: &mut Rng,
    ) -> Option<usize> {
        match self {
            PlacementPolicy::TwoChoices => TwoChoices.choose(candidates, pool, excluded, rng),
            PlacementPolicy::Uniform => Uniform.choose(candidates, pool, excluded, rng),
        }
    }
}

/// Draws a pool position uniformly among those not excluded and not `skip`.
///
/// A few random draws first (the excluded set is a task's few past workers,
/// so they almost always succeed in O(1) whatever the pool's size), then a
/// scan of the pool, so the answer is exact when the pool is small or nearly
/// all excluded.
pub(crate) fn draw<W>(
    candidates: &[Candidate<W>],
    pool: &[usize],
    excluded: &dyn Fn(&W) -> bool,
    skip: Option<usize>,
    rng: &mut Rng,
) -> Option<usize> {
    let ok = |p: usize| Some(p) != skip && !excluded(&candidates[pool[p]].id);
    let n = pool.len() as u64;
    for _ in 0..8 {
        let p = usize::try_from(rng.below(n)).ok()?;
        if p < pool.len() && ok(p) {
            return Some(p);
        }
    }
    let eligible: Vec<usize> = (0..pool.len()).filter(|&p| ok(p)).collect();
    let i = usize::try_from(rng.below(eligible.len() as u64)).ok()?;
    eligible.get(i).copied()
}

/// Power of two choices (as in Sparrow) over every candidate with a free slot
/// that is not in `exclude`: the better of two distinct random ones by free
/// slots, then speed, then reputation. `None` when nobody is eligible.
pub fn choose_worker<W: WorkerId>(
    candidates: &[Candidate<W>],
    exclude: &HashSet<W>,
    rng: &mut Rng,
) -> Option<W> {
    let pool: Vec<usize> = (0..candidates.len())
        .filter(|&i| candidates[i].free_slots > 0)
        .collect();
    let p = TwoChoices.choose(candidates, &pool, &|w| exclude.contains(w), rng)?;
    Some(candidates[pool[p]].id.clone())
}

/// Up to `count` distinct workers by repeated [`choose_worker`], none in
/// `exclude`. Fewer when the eligible candidates run out.
pub fn choose_workers<W: WorkerId>(
    candidates: &[Candidate<W>],
    exclude: &HashSet<W>,
    count: usize,
    rng: &mut Rng,
) -> Vec<W> {
    let mut exclude = exclude.clone();
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let Some(w) = choose_worker(candidates, &exclude, rng) else {
            break;
        };
        exclude.insert(w.clone());
        out.push(w);
    }
    out
}
