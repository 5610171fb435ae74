//! The Chord ring at scale, in the deterministic simulator: thousands of real
//! `RingNode`s joined through the real protocol, failed, churned, and checked
//! against the oracle. Every failure message carries the seed that replays it.

use chorus_core::sim::{Report, Sim, SimConfig};

fn config(seed: u64) -> SimConfig {
    SimConfig {
        seed,
        ..SimConfig::default()
    }
}

/// Asserts that the last batch of lookups all found the true owner.
fn assert_lookups_right(sim: &Sim, r: &Report, what: &str) {
    let seed = sim.config().seed;
    assert!(
        r.wrong_owner == 0 && r.failed_lookups == 0,
        "{what} (seed {seed}): {} wrong, {} failed of {}; first problems: {:#?}",
        r.wrong_owner,
        r.failed_lookups,
        r.lookups,
        sim.problems()
    );
}

#[test]
fn two_thousand_nodes_converge_through_real_joins() {
    let seed = 0x5EED_2000;
    let mut sim = Sim::joined_ring(config(seed), 2000, 1000);
    assert_eq!(sim.live().len(), 2000, "seed {seed}: not everyone joined");
    if let Err(v) = sim.check_weak() {
        panic!("seed {seed}: weak invariants broken right after the joins: {v}");
    }
    let rounds = sim
        .converge(200)
        .unwrap_or_else(|v| panic!("seed {seed}: no convergence: {v}"));
    assert!(rounds < 50, "seed {seed}: {rounds} rounds to converge");
    sim.run_lookups(4000);
    let r = sim.report();
    assert_lookups_right(&sim, &r, "lookups on the joined ring");
    // Hops stay near ½·log2 N (5.5 here); fingers were built while growing.
    assert!(
        r.avg_hops < r.half_log2_n + 1.0,
        "seed {seed}: avg hops {} vs ½·log2 N {}",
        r.avg_hops,
        r.half_log2_n
    );
    assert_eq!(r.timeouts, 0.0, "seed {seed}: timeouts on a healthy ring");
}

#[test]
fn a_quarter_fails_at_once_and_the_ring_heals() {
    let seed = 0x5EED_0025;
    let mut sim = Sim::joined_ring(config(seed), 2000, 1000);
    sim.converge(200)
        .unwrap_or_else(|v| panic!("seed {seed}: no convergence: {v}"));
    sim.fail_random(500);
    assert!(
        sim.check_ring().is_err(),
        "seed {seed}: failure went unnoticed"
    );
    let rounds = sim
        .converge(400)
        .unwrap_or_else(|v| panic!("seed {seed}: ring did not heal: {v}"));
    if let Err(v) = sim.check_weak() {
        panic!("seed {seed}: after healing in {rounds} rounds: {v}");
    }
    sim.reset_stats();
    sim.run_lookups(4000);
    let r = sim.report();
    assert_eq!(r.nodes, 1500);
    assert_lookups_right(&sim, &r, "lookups after 25% failed");
}

#[test]
fn churn_keeps_one_ordered_ring_every_round() {
    let seed = 0x5EED_C4A1;
    let mut sim = Sim::joined_ring(config(seed), 1000, 1000);
    sim.converge(200)
        .unwrap_or_else(|v| panic!("seed {seed}: no convergence: {v}"));
    // Each second: 2% join, 1% crash, 1% leave gracefully.
    for round in 0..40 {
        let k = (sim.live().len() / 100).max(1);
        sim.churn(2 * k, k, k, 1000);
        if let Err(v) = sim.check_weak() {
            panic!("seed {seed}: round {round}: {v}");
        }
        // Lookups during churn may take timeouts, but must end.
        if round % 10 == 9 {
            sim.run_lookups(200);
        }
    }
    let rounds = sim
        .converge(400)
        .unwrap_or_else(|v| panic!("seed {seed}: no convergence after churn: {v}"));
    sim.reset_stats();
    sim.run_lookups(2000);
    let r = sim.report();
    assert_lookups_right(&sim, &r, &format!("after churn, healed in {rounds} rounds"));
}

#[test]
fn lookups_route_around_dead_nodes_without_repair() {
    // The Chord paper's Table II setting at its hardest point: 1,000 nodes,
    // 20 successors, half of them fail at once, stabilization stopped.
    let seed = 0x5EED_7AB2;
    let mut cfg = config(seed);
    cfg.ring.successors = 20;
    cfg.ring.verify_owner = true;
    // Only liveness: with stabilization stopped, an owner whose predecessor
    // died cannot claim the keys it inherited (nothing repairs its
    // predecessor), which is what the claim check asks of it.
    cfg.ring.verify_owner_claim = false;
    let mut sim = Sim::oracle_ring(cfg, 1000);
    sim.fail_random(500);
    sim.set_maintenance(false);
    sim.run_lookups(5000);
    let r = sim.report();
    assert_lookups_right(&sim, &r, "lookups with 50% dead and no repair");
    assert!(r.timeouts > 1.0, "seed {seed}: timeouts {}", r.timeouts);
}

#[test]
fn a_seed_replays_the_same_run() {
    let run = |seed| {
        let mut sim = Sim::joined_ring(config(seed), 300, 1000);
        sim.churn(10, 5, 5, 3000);
        sim.run_lookups(300);
        let r = sim.report();
        (
            r.avg_hops,
            r.timeouts,
            r.messages,
            r.virtual_ms,
            sim.live().to_vec(),
        )
    };
    assert_eq!(run(42), run(42));
    assert_ne!(run(42).2, run(43).2);
}

#[test]
fn a_partition_heals_into_one_ring() {
    // Plain Chord leaves two rings behind a partition for good; ring
    // unification (probing the peers dropped during it) makes them one.
    let seed = 0x5EED_5917;
    let mut sim = Sim::joined_ring(config(seed), 1000, 1000);
    sim.converge(200)
        .unwrap_or_else(|v| panic!("seed {seed}: no convergence: {v}"));
    // 30% cut off for 30 stabilize intervals (15 s).
    let p = sim.partition_and_heal(0.3, 30, 400);
    assert_eq!(p.sides, [700, 300], "seed {seed}");
    // Each side repaired into one or more loops of its own (the minority
    // side can break into several: a node whose whole successor list was
    // across the cut falls back to a finger), none of which plain Chord
    // would ever merge.
    assert!(
        p.rings_at_heal.len() >= 2,
        "seed {seed}: the cut did not split the ring: {p:?}"
    );
    assert!(p.healed, "seed {seed}: still split: {p:?}");
    // Well within a minute of virtual time.
    assert!(p.heal_ms < 60_000, "seed {seed}: {p:?}");
    if let Err(v) = sim.check_weak() {
        panic!("seed {seed}: after the heal: {v}");
    }
    sim.reset_stats();
    sim.run_lookups(2000);
    let r = sim.report();
    assert_eq!(r.nodes, 1000);
    assert_lookups_right(&sim, &r, "lookups after the partition healed");
}
