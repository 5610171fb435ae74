//! Credibility (Sarmenta, "Sabotage-tolerance mechanisms for volunteer
//! computing systems", FGCS 18(4), 2002): how likely a worker's result, and a
//! group of agreeing results, is right, from each worker's record.
//!
//! # The worker's credibility
//!
//! A worker's *streak* `k` is the number of checks it passed since its last
//! proven lie: votes that agreed with an accepted result that had at least
//! one other voter, late votes that agreed, and spot checks passed (a result
//! accepted on its own word proves nothing and does not count). A proven lie
//! (a vote against a result accepted by this rule, or a failed spot check)
//! distrusts the worker at once, for the coordinator's distrust period, and
//! resets its streak.
//!
//! With `f` the assumed largest fraction of saboteurs among workers, the
//! probability that a result of a worker with streak `k` is wrong is at most
//!
//! ```text
//!   e(0) = f
//!   e(k) = min(f, f / ((1 − f) · k · ℯ))        k ≥ 1
//! ```
//!
//! Sarmenta's bound for spot-checking with blacklisting and backtracking:
//! a saboteur that lies with probability `s` survives `k` checks with
//! probability `(1 − s)^k`, and `s (1 − s)^k ≤ 1 / (k ℯ)` whatever `s` it
//! picks. Backtracking is ours too: when a worker is proven a liar, every
//! result of the job that it helped accept is judged again without it and
//! re-run if it no longer meets the target ([`super::JobMachine`]).
//!
//! # A result's credibility
//!
//! Votes fall into groups by digest. With `c = 1 − e` per voter, a group `G`
//! is all right with `P_T(G) = Π c` and all wrong with `P_F(G) = Π e`; at most
//! one group is right. The probability that group `a` is the right one:
//!
//! ```text
//!   Cr(a) = P_T(a) Π_{j≠a} P_F(j) / (Σ_i P_T(i) Π_{j≠i} P_F(j) + Π_j P_F(j))
//! ```
//!
//! An adaptive task is accepted when `1 − Cr(leader) ≤ max_error`. Votes of
//! distrusted workers are discarded, not counted against anyone.

use serde::{Deserialize, Serialize};

/// What acceptance and placement need of a worker's trust record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Trust {
    /// Checks passed since the last proven lie (the streak `k`).
    pub checks: u64,
    /// Proven a liar within the distrust period: its votes are discarded
    /// and it gets no work while others can take it.
    pub distrusted: bool,
}

/// The largest probability that a result of a worker with this record is
/// wrong (see the [module docs](self)), for assumed saboteur fraction `f`.
/// A distrusted worker's is 1.
pub fn worker_error(trust: Trust, f: f64) -> f64 {
    if trust.distrusted {
        return 1.0;
    }
    let f = f.clamp(0.0, 0.999);
    if trust.checks == 0 {
        return f;
    }
    let bound = f / ((1.0 - f) * std::f64::consts::E * trust.checks as f64);
    bound.min(f)
}

/// The streak a worker needs before one of its results alone meets
/// `max_error` (for assumed saboteur fraction `f`).
pub fn checks_for_single(max_error: f64, f: f64) -> u64 {
    if f <= max_error {
        return 0;
    }
    let f = f.clamp(0.0, 0.999);
    (f / ((1.0 - f) * std::f64::consts::E * max_error)).ceil() as u64
}

/// The probability that group `leader` of `groups` is *not* the right one,
/// each group given as its voters' error bounds ([`worker_error`]). An empty
/// leader group has error 1.
pub fn group_error(groups: &[Vec<f64>], leader: usize) -> f64 {
    let Some(lead) = groups.get(leader) else {
        return 1.0;
    };
    if lead.is_empty() {
        return 1.0;
    }
    let p_true = |g: &[f64]| g.iter().map(|e| 1.0 - e).product::<f64>();
    let p_false = |g: &[f64]| g.iter().product::<f64>();
    let falses: Vec<f64> = groups.iter().map(|g| p_false(g)).collect();
    let all_false: f64 = falses.iter().product();
    // Σ over groups i of P_T(i) Π_{j≠i} P_F(j), computed without dividing
    // by a P_F that may be 0.
    let only_right = |i: usize| {
        let others: f64 = falses
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, p)| *p)
            .product();
        p_true(&groups[i]) * others
    };
    let mine = only_right(leader);
    let rest: f64 = (0..groups.len())
        .filter(|&i| i != leader)
        .map(only_right)
        .sum::<f64>()
        + all_false;
    let total = mine + rest;
    if total <= 0.0 { 1.0 } else { rest / total }
}

/// How many of the workers with error bounds `errors` must agree for a
/// result to meet `max_error`, taking the most credible first; `None` when
/// all of them together do not.
pub fn votes_needed(errors: &[f64], max_error: f64) -> Option<usize> {
    let mut sorted = errors.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut group = Vec::with_capacity(sorted.len());
    for e in sorted {
        group.push(e);
        if group_error(std::slice::from_ref(&group), 0) <= max_error {
            return Some(group.len());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_error_falls_with_checks_and_a_lie_ends_it() {
        let f = 0.05;
        let fresh = worker_error(Trust::default(), f);
        assert_eq!(fresh, f);
        let mut last = fresh;
        for k in [1, 10, 100, 1000] {
            let e = worker_error(
                Trust {
                    checks: k,
                    distrusted: false,
                },
                f,
            );
            assert!(e < last, "k {k}: {e} vs {last}");
            last = e;
        }
        let liar = Trust {
            checks: 1000,
            distrusted: true,
        };
        assert_eq!(worker_error(liar, f), 1.0);
        // The streak for one result alone at 1e-4, f = 0.05: ⌈0.0526 / (ℯ·1e-4)⌉.
        let k = checks_for_single(1e-4, f);
        assert_eq!(k, 194);
        let at = |checks| {
            worker_error(
                Trust {
                    checks,
                    distrusted: false,
                },
                f,
            )
        };
        assert!(at(k) <= 1e-4 && at(k - 1) > 1e-4);
    }

    #[test]
    fn group_error_is_bayes_over_the_groups() {
        // One voter: its own error.
        assert!((group_error(&[vec![0.05]], 0) - 0.05).abs() < 1e-12);
        // Two agreeing fresh voters at f = 0.05: 0.0025 / (0.9025 + 0.0025).
        let two = group_error(&[vec![0.05, 0.05]], 0);
        assert!((two - 0.0025 / 0.905).abs() < 1e-12, "{two}");
        // A dissent makes the leader less credible, and is itself unlikely.
        let disputed = group_error(&[vec![0.05, 0.05], vec![0.05]], 0);
        assert!(disputed > two, "{disputed} vs {two}");
        assert!(group_error(&[vec![0.05, 0.05], vec![0.05]], 1) > 0.9);
        // A voter with error 0 (never wrong) is certain; an empty group is not.
        assert_eq!(group_error(&[vec![0.0]], 0), 0.0);
        assert_eq!(group_error(&[vec![]], 0), 1.0);
        assert_eq!(group_error(&[], 0), 1.0);
    }

    #[test]
    fn votes_needed_takes_the_most_credible_first() {
        // Fresh workers at f = 0.05 and 1e-4: four.
        assert_eq!(votes_needed(&[0.05; 6], 1e-4), Some(4));
        assert_eq!(votes_needed(&[0.05; 3], 1e-4), None);
        // One trusted worker is enough on its own.
        assert_eq!(votes_needed(&[0.05, 0.05, 5e-5], 1e-4), Some(1));
    }
}
