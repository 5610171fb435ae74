//! Unit tests of the job logic.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::*;
use crate::rng::Rng;

fn d(x: u8) -> Digest {
    [x; 32]
}

fn verifier(replicas: u32, quorum: u32, max: u32) -> TaskVerifier<u32> {
    let p = Policy::new(replicas, Some(quorum), Some(max)).unwrap();
    TaskVerifier::new(p, TaskConfig::for_policy(&p))
}

fn cand(id: u32, free: u32, speed: u64, rep: i32) -> Candidate<u32> {
    Candidate {
        id,
        free_slots: free,
        fuel_per_sec: speed,
        reputation: rep,
        network: u128::from(id),
        trust: Trust::default(),
    }
}

#[test]
fn policy_defaults_and_validation() {
    let p = Policy::new(3, None, None).unwrap();
    assert_eq!((p.replicas, p.quorum, p.max_replicas), (3, 2, 6));
    assert_eq!(Policy::new(2, None, None).unwrap().quorum, 2);
    assert_eq!(Policy::new(1, None, None).unwrap().quorum, 1);
    assert_eq!(Policy::new(4, None, None).unwrap().quorum, 3);
    assert_eq!(Policy::default(), Policy::new(2, None, None).unwrap());
    assert_eq!(Policy::new(0, None, None), Err(PolicyError::ZeroReplicas));
    // Replicas cost workers' CPU: bounded.
    assert_eq!(
        Policy::new(12, None, None).unwrap().max_replicas,
        MAX_REPLICAS
    );
    assert_eq!(
        Policy::new(3, None, Some(MAX_REPLICAS + 1)),
        Err(PolicyError::MaxAboveLimit(MAX_REPLICAS + 1))
    );
    assert_eq!(
        Policy::new(MAX_REPLICAS + 1, None, None),
        Err(PolicyError::MaxAboveLimit(MAX_REPLICAS + 1))
    );
    assert_eq!(Policy::new(3, Some(0), None), Err(PolicyError::ZeroQuorum));
    assert_eq!(
        Policy::new(2, Some(3), None),
        Err(PolicyError::QuorumAboveReplicas {
            quorum: 3,
            replicas: 2
        })
    );
    assert_eq!(
        Policy::new(3, None, Some(2)),
        Err(PolicyError::MaxBelowReplicas {
            max_replicas: 2,
            replicas: 3
        })
    );
    assert_eq!(
        p.check_workers(2),
        Err(PolicyError::NotEnoughWorkers {
            replicas: 3,
            live: 2
        })
    );
    assert_eq!(p.check_workers(3), Ok(()));
    // Errors print something a human can act on.
    let msg = PolicyError::QuorumAboveReplicas {
        quorum: 3,
        replicas: 2,
    }
    .to_string();
    assert!(
        msg.contains("quorum 3") && msg.contains("replicas 2"),
        "{msg}"
    );
}

#[test]
fn unanimous_agreement() {
    let mut t = verifier(3, 2, 6);
    assert_eq!(t.wanted_replicas(), 3);
    for w in [1, 2, 3] {
        t.assign(0, w).unwrap();
    }
    assert_eq!(t.wanted_replicas(), 0);
    assert_eq!(t.assign(0, 4), Err(AssignError::NotWanted));
    assert_eq!(t.handle_result(5, &1, d(7)), ResultOutcome::Counted);
    assert!(!t.is_done());
    assert_eq!(t.handle_result(6, &2, d(7)), ResultOutcome::Counted);
    assert_eq!(
        t.verdict(),
        Some(&Verdict::Accepted {
            digest: d(7),
            agreeing: vec![1, 2],
            disagreeing: vec![],
        })
    );
    assert_eq!(t.running(), vec![3]);
    assert_eq!(t.wanted_replicas(), 0);
    assert_eq!(
        t.handle_result(7, &3, d(7)),
        ResultOutcome::AfterVerdict { agrees: true }
    );
    assert_eq!(t.assign(8, 9), Err(AssignError::Decided));
    // Replicas 1, quorum 1: one vote decides.
    let mut one = verifier(1, 1, 2);
    one.assign(0, 1).unwrap();
    one.handle_result(1, &1, d(1));
    assert!(matches!(one.verdict(), Some(Verdict::Accepted { .. })));
}

#[test]
fn one_liar_among_three_is_disagreeing() {
    let mut t = verifier(3, 2, 6);
    for w in [1, 2, 3] {
        t.assign(0, w).unwrap();
    }
    t.handle_result(1, &2, d(66)); // the liar answers first
    t.handle_result(2, &1, d(7));
    assert!(!t.is_done());
    assert_eq!(t.wanted_replicas(), 0, "the third replica is still running");
    t.handle_result(3, &3, d(7));
    assert_eq!(
        t.verdict(),
        Some(&Verdict::Accepted {
            digest: d(7),
            agreeing: vec![1, 3],
            disagreeing: vec![2],
        })
    );
}

#[test]
fn disagreement_with_two_replicas_sends_a_third() {
    let mut t = verifier(2, 2, 4);
    t.assign(0, 1).unwrap();
    t.assign(0, 2).unwrap();
    t.handle_result(1, &1, d(1));
    t.handle_result(1, &2, d(2));
    assert!(!t.is_done());
    assert_eq!(t.wanted_replicas(), 1);
    assert_eq!(t.assign(2, 1), Err(AssignError::AlreadyAssigned));
    t.assign(2, 3).unwrap();
    assert_eq!(t.wanted_replicas(), 0);
    t.handle_result(3, &3, d(2));
    assert_eq!(
        t.verdict(),
        Some(&Verdict::Accepted {
            digest: d(2),
            agreeing: vec![2, 3],
            disagreeing: vec![1],
        })
    );
}

#[test]
fn all_distinct_until_max_replicas_fails() {
    let mut t = verifier(2, 2, 4);
    let mut next = 0;
    while t.wanted_replicas() > 0 {
        next += 1;
        t.assign(next.into(), next).unwrap();
        t.handle_result(next.into(), &next, d(next as u8));
    }
    assert_eq!(next, 4, "exactly max_replicas ran");
    match t.verdict() {
        Some(Verdict::Failed { reason, votes }) => {
            assert_eq!(*reason, FailReason::NoQuorum);
            assert_eq!(votes.len(), 4);
        }
        v => panic!("expected failure, got {v:?}"),
    }
    // A failed task ignores further results and changes no reputation.
    assert_eq!(t.handle_result(9, &1, d(1)), ResultOutcome::Ignored);
    let mut rep = Reputation::default();
    rep.apply(t.verdict().unwrap(), 0);
    assert!(rep.snapshot().is_empty());
}

#[test]
fn hopeless_quorum_fails_early() {
    // replicas 3, quorum 3, max 4: after two distinct votes no digest can
    // reach 3 within 4 votes.
    let mut t = verifier(3, 3, 4);
    for w in [1, 2, 3] {
        t.assign(0, w).unwrap();
    }
    t.handle_result(1, &1, d(1));
    assert!(!t.is_done());
    t.handle_result(1, &2, d(2));
    assert!(!t.is_done(), "1 + 2 remaining can still reach 3");
    t.handle_result(1, &3, d(3));
    assert!(matches!(
        t.verdict(),
        Some(Verdict::Failed {
            reason: FailReason::NoQuorum,
            ..
        })
    ));
}

#[test]
fn lost_worker_is_resent_to_a_different_worker() {
    let mut t = verifier(2, 2, 4);
    let cands: Vec<_> = (1..=5).map(|i| cand(i, 2, 100, 0)).collect();
    let mut rng = Rng::new(11);
    for w in choose_workers(&cands, &t.excluded(), t.wanted_replicas(), &mut rng) {
        t.assign(0, w).unwrap();
    }
    let first = t.running();
    assert_eq!(first.len(), 2);
    assert!(t.handle_lost(10, &first[0]));
    assert!(!t.handle_lost(10, &first[0]), "already lost");
    assert_eq!(t.wanted_replicas(), 1);
    let excluded = t.excluded();
    assert!(excluded.contains(&first[0]));
    let again = choose_worker(&cands, &excluded, &mut rng).unwrap();
    assert!(!first.contains(&again));
    t.assign(11, again).unwrap();
    assert_eq!(t.assign(12, first[0]), Err(AssignError::AlreadyAssigned));
    // A late result from the lost worker is not a vote.
    assert_eq!(t.handle_result(13, &first[0], d(1)), ResultOutcome::Ignored);
    t.handle_result(14, &first[1], d(1));
    t.handle_result(15, &again, d(1));
    assert_eq!(
        t.verdict(),
        Some(&Verdict::Accepted {
            digest: d(1),
            agreeing: vec![first[1], again],
            disagreeing: vec![],
        })
    );
}

#[test]
fn timeouts_mark_replicas_lost() {
    let p = Policy::new(2, None, None).unwrap();
    let cfg = TaskConfig {
        replica_timeout: 100,
        max_attempts: 12,
    };
    let mut t: TaskVerifier<u32> = TaskVerifier::new(p, cfg);
    assert_eq!(t.poll_timeout(), None);
    t.assign(0, 1).unwrap();
    t.assign(50, 2).unwrap();
    assert_eq!(t.poll_timeout(), Some(100));
    assert!(t.handle_timeout(99).is_empty());
    assert_eq!(t.handle_timeout(100), vec![1]);
    assert_eq!(t.poll_timeout(), Some(150));
    assert_eq!(t.wanted_replicas(), 1);
    assert_eq!(t.handle_timeout(200), vec![2]);
    assert_eq!(t.wanted_replicas(), 2);
    assert_eq!(t.poll_timeout(), None);
}

#[test]
fn no_verdict_is_not_a_vote() {
    let mut t = verifier(2, 2, 4);
    t.assign(0, 1).unwrap();
    t.assign(0, 2).unwrap();
    t.handle_result(1, &1, d(9));
    assert!(t.handle_no_verdict(2, &2));
    assert_eq!(t.vote_count(), 1);
    assert!(!t.is_done());
    assert_eq!(t.wanted_replicas(), 1, "re-sent elsewhere");
    assert!(t.votes().iter().all(|(_, v)| !v.contains(&2)));
    t.assign(3, 3).unwrap();
    t.handle_result(4, &3, d(9));
    assert_eq!(
        t.verdict(),
        Some(&Verdict::Accepted {
            digest: d(9),
            agreeing: vec![1, 3],
            disagreeing: vec![],
        })
    );
    assert_eq!(t.replicas()[1].state, ReplicaState::NoVerdict);
}

#[test]
fn busy_refusal_goes_elsewhere_without_costing_an_attempt() {
    let p = Policy::new(1, None, Some(1)).unwrap();
    let cfg = TaskConfig {
        replica_timeout: 10,
        max_attempts: 1,
    };
    let mut t: TaskVerifier<u32> = TaskVerifier::new(p, cfg);
    for w in 1..=3 {
        t.assign(0, w).unwrap();
        assert!(t.handle_busy(1, &w));
        assert!(!t.is_done());
        assert_eq!(t.wanted_replicas(), 1);
    }
    // A busy worker ran nothing: it may be asked again later.
    assert!(!t.excluded().contains(&2));
    t.assign(2, 2).unwrap();
    assert_eq!(t.assign(2, 2), Err(AssignError::AlreadyAssigned));
    assert!(t.handle_busy(2, &2));
    t.assign(2, 4).unwrap();
    assert_eq!(t.handle_result(3, &4, d(4)), ResultOutcome::Counted);
    assert_eq!(
        t.verdict(),
        Some(&Verdict::Accepted {
            digest: d(4),
            agreeing: vec![4],
            disagreeing: vec![],
        })
    );
}

#[test]
fn endless_losses_stop_at_max_attempts() {
    let p = Policy::new(2, None, Some(2)).unwrap();
    let cfg = TaskConfig {
        replica_timeout: 10,
        max_attempts: 5,
    };
    let mut t: TaskVerifier<u32> = TaskVerifier::new(p, cfg);
    let mut w = 0;
    while t.wanted_replicas() > 0 {
        w += 1;
        t.assign(0, w).unwrap();
        t.handle_no_verdict(1, &w);
    }
    assert_eq!(w, 5);
    assert!(matches!(
        t.verdict(),
        Some(Verdict::Failed {
            reason: FailReason::TooManyAttempts,
            ..
        })
    ));
    let mut u = verifier(2, 2, 4);
    u.fail_no_workers();
    assert!(matches!(
        u.verdict(),
        Some(Verdict::Failed {
            reason: FailReason::NoWorkers,
            ..
        })
    ));
}

#[test]
fn reputation_is_bounded_and_losses_cost_more() {
    let mut r: Reputation<u32> = Reputation::new(ReputationConfig {
        initial: 0,
        gain: 1,
        loss: 10,
        min: -20,
        max: 5,
        ..ReputationConfig::default()
    });
    assert_eq!(r.score(&1), 0);
    for _ in 0..100 {
        r.record_agree(&1, 0);
        r.record_disagree(&2, 0);
    }
    assert_eq!(r.score(&1), 5);
    assert_eq!(r.score(&2), -20);
    r.record_agree(&3, 0);
    r.record_disagree(&3, 0);
    assert_eq!(r.score(&3), -9);
    let snap = r.snapshot();
    assert_eq!(
        snap.iter()
            .map(|e| (e.worker, e.record.score))
            .collect::<Vec<_>>(),
        vec![(1, 5), (3, -9), (2, -20)]
    );
    assert_eq!((snap[0].record.agreed, snap[0].record.disagreed), (100, 0));
    r.forget(&2);
    assert_eq!(r.snapshot().len(), 2);
}

/// Many tasks over 6 workers, replicas 3, quorum 2, one liar, placed by
/// power of two choices and answering in random order.
#[test]
fn liar_is_caught_and_ranks_last() {
    for seed in 0..5u64 {
        let mut rng = Rng::new(seed);
        let liar = 4u32;
        let workers: Vec<u32> = (1..=6).collect();
        let mut rep: Reputation<u32> = Reputation::default();
        let policy = Policy::new(3, Some(2), None).unwrap();
        let mut caught = 0;
        for task in 0..300u32 {
            let mut t = TaskVerifier::new(policy, TaskConfig::for_policy(&policy));
            let truth = d((task % 200) as u8);
            let mut steps = 0;
            while !t.is_done() {
                steps += 1;
                assert!(steps < 100, "seed {seed} task {task} stuck");
                let cands: Vec<_> = workers
                    .iter()
                    .map(|&w| cand(w, 1 + rng.below(3) as u32, 1000, rep.score(&w)))
                    .collect();
                let chosen = choose_workers(&cands, &t.excluded(), t.wanted_replicas(), &mut rng);
                for w in chosen {
                    t.assign(task.into(), w).unwrap();
                }
                let running = t.running();
                let w = running[rng.below(running.len() as u64) as usize];
                let mut answer = truth;
                if w == liar {
                    answer[0] ^= 0xff;
                }
                t.handle_result(task.into(), &w, answer);
            }
            let v = t.verdict().unwrap();
            match v {
                Verdict::Accepted {
                    digest,
                    agreeing,
                    disagreeing,
                } => {
                    assert_eq!(*digest, truth, "seed {seed} task {task}");
                    assert!(!agreeing.contains(&liar));
                    assert!(disagreeing.iter().all(|&w| w == liar));
                    if disagreeing.contains(&liar) {
                        caught += 1;
                    }
                    let mut all: Vec<u32> = agreeing.iter().chain(disagreeing).copied().collect();
                    all.sort();
                    all.dedup();
                    assert_eq!(all.len(), agreeing.len() + disagreeing.len());
                }
                Verdict::Failed { .. } => panic!("seed {seed} task {task} failed"),
            }
            rep.apply(v, 0);
        }
        assert!(caught > 10, "seed {seed}: liar caught only {caught} times");
        let liar_score = rep.score(&liar);
        for w in workers.iter().filter(|&&w| w != liar) {
            assert!(
                rep.score(w) > liar_score,
                "seed {seed}: {w} {} vs liar {liar_score}",
                rep.score(w)
            );
        }
        assert_eq!(rep.snapshot().last().map(|e| e.worker), Some(liar));
    }
}

#[test]
fn power_of_two_never_picks_excluded_or_busy() {
    let mut rng = Rng::new(3);
    let cands = vec![
        cand(1, 0, 9999, 100), // busy
        cand(2, 4, 10, 0),
        cand(3, 8, 10, 0), // excluded
        cand(4, 1, 10, 0),
        cand(5, 0, 9999, 100), // busy
    ];
    let exclude: HashSet<u32> = [3].into();
    for _ in 0..2000 {
        let w = choose_worker(&cands, &exclude, &mut rng).unwrap();
        assert!(w == 2 || w == 4, "picked {w}");
    }
    // Nobody eligible.
    let all: HashSet<u32> = [2, 3, 4].into();
    assert_eq!(choose_worker(&cands, &all, &mut rng), None);
    assert_eq!(choose_worker::<u32>(&[], &HashSet::new(), &mut rng), None);
    // A single eligible candidate is always chosen.
    let only: HashSet<u32> = [2, 3].into();
    assert_eq!(choose_worker(&cands, &only, &mut rng), Some(4));
    // choose_workers gives distinct workers and stops when they run out.
    let many = choose_workers(&cands, &HashSet::new(), 10, &mut rng);
    let mut sorted = many.clone();
    sorted.sort();
    assert_eq!(sorted, vec![2, 3, 4]);
}

#[test]
fn power_of_two_prefers_free_slots_then_speed_then_reputation() {
    let mut rng = Rng::new(42);
    // 10 candidates with free slots 1..=10: two choices pick the better of
    // two, so high-slot workers dominate.
    let cands: Vec<_> = (1..=10).map(|i| cand(i, i, 100, 0)).collect();
    let mut hits = [0u32; 11];
    let n = 20_000;
    for _ in 0..n {
        let w = choose_worker(&cands, &HashSet::new(), &mut rng).unwrap();
        hits[w as usize] += 1;
    }
    // Expected share of rank k (1-based) among 10: (2k - 2) / 90.
    assert_eq!(hits[1], 0, "the worst can never win a pair");
    assert!(hits[10] > hits[5] && hits[5] > hits[2]);
    let top_half: u32 = hits[6..].iter().sum();
    assert!(top_half > n * 6 / 10, "top half got {top_half} of {n}");
    // Two eligible candidates: the better one always wins.
    let pair = vec![cand(1, 1, 1_000_000, 99), cand(2, 2, 1, -5)];
    for _ in 0..100 {
        assert_eq!(choose_worker(&pair, &HashSet::new(), &mut rng), Some(2));
    }
    // Equal slots: speed decides; equal speed: reputation decides.
    let speed = vec![cand(1, 3, 10, 50), cand(2, 3, 20, -50)];
    let rep = vec![cand(1, 3, 10, 5), cand(2, 3, 10, 6)];
    for _ in 0..100 {
        assert_eq!(choose_worker(&speed, &HashSet::new(), &mut rng), Some(2));
        assert_eq!(choose_worker(&rep, &HashSet::new(), &mut rng), Some(2));
    }
    // Same seed, same choices.
    let a: Vec<_> = {
        let mut r = Rng::new(9);
        (0..50)
            .map(|_| choose_worker(&cands, &HashSet::new(), &mut r))
            .collect()
    };
    let b: Vec<_> = {
        let mut r = Rng::new(9);
        (0..50)
            .map(|_| choose_worker(&cands, &HashSet::new(), &mut r))
            .collect()
    };
    assert_eq!(a, b);
}

#[test]
fn verifier_state_serializes() {
    // The coordinator persists task state; serde must cover it.
    fn assert_serde<T: Serialize + for<'de> Deserialize<'de>>() {}
    assert_serde::<TaskVerifier<u32>>();
    assert_serde::<Reputation<u32>>();
    assert_serde::<Verdict<crate::RingPos>>();
}

#[test]
fn trust_records_end_at_a_lie_persist_and_stay_bounded() {
    let mut r: Reputation<u32> = Reputation::new(ReputationConfig {
        distrust_ms: 1_000,
        max_entries: 3,
        ..ReputationConfig::default()
    });
    // A result accepted on one word checks nobody; two agreeing do.
    let single = Verdict::Accepted {
        digest: d(1),
        agreeing: vec![1],
        disagreeing: vec![],
    };
    r.apply(&single, 0);
    assert_eq!(r.trust(&1, 0).checks, 0);
    let pair = Verdict::Accepted {
        digest: d(1),
        agreeing: vec![1, 2],
        disagreeing: vec![3],
    };
    r.apply(&pair, 10);
    r.record_spot_check(&1, true, 20);
    assert_eq!(
        r.trust(&1, 20),
        Trust {
            checks: 2,
            distrusted: false
        }
    );
    // The liar is distrusted for the period, its streak gone; after it, it
    // starts again from nothing.
    assert_eq!(
        r.trust(&3, 500),
        Trust {
            checks: 0,
            distrusted: true
        }
    );
    assert!(!r.trust(&3, 1_010).distrusted);
    r.record_spot_check(&2, false, 30);
    let rec = r.record(&2).expect("known");
    assert_eq!(
        (rec.spot_failed, rec.streak),
        (1, 1),
        "the lie comes with the verdict"
    );
    // Survives a round trip through bytes (the node's store).
    let bytes = rmp_serde::to_vec_named(&r).expect("encodes");
    let back: Reputation<u32> = rmp_serde::from_slice(&bytes).expect("decodes");
    assert_eq!(back.trust(&3, 500), r.trust(&3, 500));
    assert_eq!(back.snapshot(), r.snapshot());
    // Bounded: a fourth worker evicts the one seen longest ago (1, 2 and 3
    // were last seen at 20, 30 and 10).
    r.record_agree(&4, 40);
    assert_eq!(r.len(), 3);
    assert!(r.record(&3).is_none());
    assert!(r.record(&4).is_some());
}
