//! Adaptive verification on real nodes: a ring with a lying node and a
//! colluding pair, trust earned and lost, and trust records that survive a
//! restart of the coordinator.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use chorus_core::jobs::{PlacementPolicy, Policy};
use chorus_node::cli::Cli;
use chorus_node::net::NodeConfig;
use chorus_sdk::identity::Identity;
use chorus_sdk::job::TaskResult;
use chorus_tests::{
    TempDir, TestNode, next_host, ring_consistent, start_cluster, status, wait_for_results,
    wait_until,
};
use clap::Parser;

fn chorus(args: &[&str]) -> ExitCode {
    let cli = Cli::try_parse_from(std::iter::once("chorus").chain(args.iter().copied()))
        .expect("arguments parse");
    chorus_node::cli::run(cli)
}

#[test]
fn liars_lose_their_trust_and_a_restarted_coordinator_remembers_it() {
    // 4 honest nodes on their own networks, one `corrupt-results` node, and
    // a `collude` pair sharing one address. Uniform placement, so that the
    // liars get work.
    let dirs = TempDir::new("trust", "ring");
    let corrupt = 4;
    let shared = IpAddr::V4(Ipv4Addr::new(127, 0, 252, 1));
    let data = |i: usize| dirs.0.join(format!("node{i}"));
    let mut nodes = start_cluster(7, |i, c| {
        c.jobs.placement = PlacementPolicy::Uniform;
        c.data_dir = Some(data(i));
        if i == corrupt {
            c.chaos.corrupt_results = true;
        }
        if i >= 5 {
            c.listen = (shared, 0).into();
            c.chaos.collude = true;
        }
    })
    .expect("cluster");
    let liars: Vec<_> = nodes.iter().skip(corrupt).map(|n| n.id).collect();
    let honest: Vec<_> = nodes.iter().take(corrupt).map(|n| n.id).collect();

    // One adaptive job of 300 tasks. Its error target is 1e-3: at the
    // default 1e-4 a worker needs 194 checks before one of its results
    // stands alone, more than 300 tasks on 4 honest workers give (see
    // node/core/README.md).
    let submitter = Identity::generate().expect("key");
    let work = chorus_tests::prime_ranges(300, 1_000);
    let policy = Policy::adaptive(1e-3, None).expect("policy");
    let spec = chorus_tests::primes_spec(&submitter, &work, policy, 11);
    let job = chorus_tests::submit(nodes[0].addr, spec).expect("submitted");
    let via: Vec<SocketAddr> = nodes.iter().take(corrupt).map(|n| n.addr).collect();
    let (st, results) = wait_for_results(&via, job, Duration::from_secs(300)).expect("results");
    eprintln!(
        "300 tasks, adaptive 1e-3: {:.2} replicas per task, {} spot checks, {} re-judged, {} disagreements; coordinator {}",
        st.replicas_per_task, st.spot_checks, st.reopened, st.disagreements, st.coordinator.id
    );
    assert_eq!(st.verified, 300, "{st:?}");
    for (i, r) in work.iter().enumerate() {
        match results.get(&(i as u32)) {
            Some(TaskResult::Output(b)) => assert_eq!(
                b.as_ref(),
                chorus_tests::prime_output(r).as_slice(),
                "task {i}"
            ),
            other => panic!("task {i}: {other:?}"),
        }
    }
    assert!(st.replicas_per_task < 2.0, "{st:?}");
    assert!(st.disagreements > 0, "the liars were caught: {st:?}");
    let record = |id| st.reputation.iter().find(|r| r.worker == id);
    let corrupt_id = nodes[corrupt].id;
    assert!(
        record(corrupt_id).is_some_and(|r| r.distrusted && r.disagreed > 0),
        "the corrupt node lost its trust: {:?}",
        st.reputation
    );
    assert!(
        liars[1..]
            .iter()
            .any(|id| record(*id).is_some_and(|r| r.distrusted)),
        "a colluder lost its trust: {:?}",
        st.reputation
    );
    for id in &honest {
        let r = record(*id).expect("every honest node ran tasks");
        assert!(!r.distrusted && r.disagreed == 0 && r.streak > 0, "{r:?}");
    }

    // The outputs, fetched and checked by the client, hold their proofs,
    // and some were accepted on the credibility rule.
    let out = dirs.0.join("out");
    let (node, job_hex) = (nodes[0].addr.to_string(), job.to_string());
    let code = chorus(&[
        "results",
        "--node",
        &node,
        &job_hex,
        "--out",
        out.to_str().expect("utf-8 path"),
        "--json",
    ]);
    assert_eq!(code, ExitCode::SUCCESS);
    let report = chorus_node::cli::verify::verify_dir(&out).expect("verify");
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(report.ok, 300);
    assert!(report.by_credibility > 0, "{report:?}");

    // The coordinator leaves and comes back from its data dir: its trust
    // records are where they were, the liars still distrusted.
    let at = nodes
        .iter()
        .position(|n| n.id == st.coordinator.id)
        .expect("the coordinator is one of ours");
    // Records are stored every half second while they change.
    std::thread::sleep(Duration::from_secs(2));
    let was_liar = at >= corrupt;
    let old = nodes.remove(at);
    old.leave();
    let mut c = NodeConfig::new((next_host(), 0).into());
    c.cores = 1;
    c.data_dir = Some(data(at));
    c.bootstrap = vec![nodes[0].addr];
    c.jobs.placement = PlacementPolicy::Uniform;
    let back = TestNode::start_with(c).expect("restart");
    assert_eq!(back.id, st.coordinator.id, "same key, same place");
    nodes.push(back);
    let refs: Vec<&TestNode> = nodes.iter().collect();
    wait_until(Duration::from_secs(60), || ring_consistent(&refs)).expect("ring");
    let after = status(nodes[0].addr, job).expect("status after the restart");
    assert_eq!(after.coordinator.id, st.coordinator.id);
    let again = |id| after.reputation.iter().find(|r| r.worker == id);
    assert!(
        again(corrupt_id).is_some_and(|r| r.distrusted),
        "a proven liar stays distrusted: {:?}",
        after.reputation
    );
    for id in honest.iter().filter(|id| **id != st.coordinator.id) {
        let before = record(*id).expect("known");
        let now = again(*id).expect("still known");
        assert!(
            now.streak >= before.streak && !now.distrusted,
            "{before:?} -> {now:?}"
        );
    }
    eprintln!("coordinator restarted (a liar: {was_liar}); trust records kept");
}
