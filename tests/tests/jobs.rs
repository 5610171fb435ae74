//! Jobs on a real grid: nodes on 127.0.0.1 over QUIC, real sandboxes, the
//! committed example modules. Each output is checked against the example's
//! kernel compiled natively into this test.
//!
//! Run: `cargo test --release -p chorus-tests --test jobs`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chorus_core::RingPos;
use chorus_core::jobs::{PlacementPolicy, Policy};
use chorus_node::net::NodeConfig;
use chorus_sdk::bundle::Limits;
use chorus_sdk::identity::Identity;
use chorus_sdk::job::{JobId, JobRequest, JobResponse, JobSpec, TaskResult, sign_cancel};
use chorus_sdk::wire::{Request, Response};
use chorus_tests::prime_ranges as ranges;
use chorus_tests::{
    TestNode, ask, primes, start_cluster, status, submit, wait_for_results, wait_until,
};
use chorus_tests::{primes_bundle as bundle, primes_inputs as inputs, primes_job};

/// Every task's accepted output equals the native kernel's.
fn check_outputs(ranges: &[primes::Range], results: &BTreeMap<u32, TaskResult>) {
    assert_eq!(results.len(), ranges.len(), "one result per task");
    for (i, r) in ranges.iter().enumerate() {
        let want = chorus_tests::prime_output(r);
        match results.get(&(i as u32)) {
            Some(TaskResult::Output(got)) => {
                assert_eq!(
                    got.as_ref(),
                    want.as_slice(),
                    "task {i} output differs from native"
                )
            }
            other => panic!("task {i}: {other:?}"),
        }
    }
}

fn addrs(nodes: &[TestNode]) -> Vec<std::net::SocketAddr> {
    nodes.iter().map(|n| n.addr).collect()
}

/// Waits until `job` has at least `n` verified tasks (asking `via`).
/// Batches of one task and one task in flight per worker core: progress
/// comes a task at a time rather than a whole batch at once, so a test that
/// kills nodes "mid-job" finds the job still running after its first results.
fn one_task_at_a_time(_: usize, c: &mut NodeConfig) {
    c.jobs.batch_tasks = 1;
    c.jobs.queue_per_core = 1;
}

fn wait_for_progress(via: std::net::SocketAddr, job: JobId, n: u32) {
    wait_until(Duration::from_secs(60), || {
        let s = status(via, job).map_err(|e| e.to_string())?;
        if s.verified >= n {
            Ok(())
        } else {
            Err(format!("{} verified", s.verified))
        }
    })
    .expect("progress");
}

#[test]
fn eight_nodes_run_a_200_task_job_with_two_replicas() {
    let nodes = start_cluster(8, |_, _| {}).expect("cluster");
    let submitter = Identity::generate().expect("key");
    let work = ranges(200, 2_000);
    let spec = primes_job(&submitter, &work, 2, 1);
    let t0 = Instant::now();
    let job = submit(nodes[3].addr, spec).expect("submitted");
    let (st, results) =
        wait_for_results(&addrs(&nodes), job, Duration::from_secs(120)).expect("results");
    eprintln!(
        "200 tasks x 2 replicas on 8 nodes: {:?}, {} replicas run, coordinator {}",
        t0.elapsed(),
        st.replicas_run,
        st.coordinator.id
    );
    check_outputs(&work, &results);
    assert_eq!((st.verified, st.failed, st.disagreements), (200, 0, 0));
    assert!(
        st.replicas_run >= 400,
        "every task ran twice: {}",
        st.replicas_run
    );
    // The coordinator is the owner of the job id.
    let ids: Vec<RingPos> = nodes.iter().map(|n| n.id).collect();
    assert_eq!(st.coordinator.id, chorus_tests::true_owner(&ids, job.0));
    // Work spread over the grid: several workers took part.
    assert!(
        st.reputation.len() >= 4,
        "workers used: {:?}",
        st.reputation
    );
}

#[test]
fn a_lying_node_is_outvoted_and_loses_reputation() {
    let liar_index = 2;
    let nodes = start_cluster(6, |i, c| {
        // Uniform placement: this test is about voting. Two choices ranks by
        // measured speed, and a liar that measured itself slowest at start
        // could lose every draw of a one-second job and never be caught
        // (seen once in CI).
        c.jobs.placement = PlacementPolicy::Uniform;
        if i == liar_index {
            c.chaos.corrupt_results = true;
        }
    })
    .expect("cluster");
    let liar = nodes[liar_index].id;
    let submitter = Identity::generate().expect("key");
    let work = ranges(120, 1_000);
    let spec = JobSpec::new(
        &bundle(&submitter),
        inputs(&work),
        // The submitter's default: adaptive verification at 1e-4.
        Some(Policy::adaptive(chorus_core::jobs::DEFAULT_MAX_ERROR, None).expect("policy")),
        None,
        2,
    )
    .expect("spec")
    .sign(&submitter)
    .expect("sign");
    let job = submit(nodes[0].addr, spec).expect("submitted");
    let (st, results) =
        wait_for_results(&addrs(&nodes), job, Duration::from_secs(120)).expect("results");
    check_outputs(&work, &results);
    assert!(
        st.disagreements > 0,
        "the liar {liar} was caught at least once: {st:?}"
    );
    assert!(
        st.rejected.iter().all(|r| r.worker == liar),
        "only the liar's results are rejected: {:?}",
        st.rejected
    );
    let score = |w: RingPos| {
        st.reputation
            .iter()
            .find(|r| r.worker == w)
            .map(|r| r.score)
    };
    let liar_score = score(liar).expect("liar has a reputation");
    for r in &st.reputation {
        if r.worker != liar {
            assert!(
                r.score > liar_score,
                "{} {} vs liar {liar_score}",
                r.worker,
                r.score
            );
            assert_eq!(r.disagreed, 0, "an honest node never disagrees");
        }
    }
    eprintln!(
        "liar {liar}: score {liar_score}, {} results rejected; reputation {:?}",
        st.disagreements, st.reputation
    );
}

#[test]
fn killing_two_workers_mid_job_loses_nothing() {
    let mut nodes = start_cluster(7, one_task_at_a_time).expect("cluster");
    let submitter = Identity::generate().expect("key");
    // Heavier tasks so that the job is still running when the workers die.
    let work = ranges(40, 60_000_000);
    // The submitter's default: adaptive verification at 1e-4.
    let policy = Policy::adaptive(chorus_core::jobs::DEFAULT_MAX_ERROR, None).expect("policy");
    let spec = chorus_tests::primes_spec(&submitter, &work, policy, 3);
    let job = submit(nodes[0].addr, spec).expect("submitted");
    let st = status(nodes[0].addr, job).expect("status");
    let coordinator = st.coordinator.id;
    // Wait for some progress, then kill two workers that are not the coordinator.
    wait_for_progress(nodes[0].addr, job, 2);
    let mut killed = Vec::new();
    let mut i = 0;
    while killed.len() < 2 && i < nodes.len() {
        if nodes[i].id != coordinator && i != 0 {
            let n = nodes.remove(i);
            killed.push(n.id);
            n.kill();
        } else {
            i += 1;
        }
    }
    assert_eq!(killed.len(), 2);
    let before = status(nodes[0].addr, job).expect("status");
    assert!(
        !before.done,
        "the job was still running when the workers died"
    );
    let (st, results) =
        wait_for_results(&addrs(&nodes), job, Duration::from_secs(180)).expect("results");
    check_outputs(&work, &results);
    assert_eq!(st.verified, 40);
    eprintln!(
        "killed {killed:?}; job done with {} replicas run, {} failovers",
        st.replicas_run, st.failovers
    );
}

#[test]
fn killing_the_coordinator_hands_the_job_to_the_next_owner() {
    let mut nodes = start_cluster(6, one_task_at_a_time).expect("cluster");
    let submitter = Identity::generate().expect("key");
    let work = ranges(40, 60_000_000);
    let spec = primes_job(&submitter, &work, 2, 4);
    let job = submit(nodes[1].addr, spec).expect("submitted");
    let coordinator = status(nodes[1].addr, job).expect("status").coordinator.id;
    wait_for_progress(nodes[1].addr, job, 2);
    let verified_before = chorus_tests::kill_running_coordinator(&mut nodes, coordinator, job);
    eprintln!("killed coordinator {coordinator} with {verified_before} tasks verified");
    let (st, results) =
        wait_for_results(&addrs(&nodes), job, Duration::from_secs(180)).expect("results");
    check_outputs(&work, &results);
    assert_ne!(
        st.coordinator.id, coordinator,
        "a new coordinator finished the job"
    );
    assert!(st.failovers >= 1, "the job moved: {st:?}");
    let ids: Vec<RingPos> = nodes.iter().map(|n| n.id).collect();
    assert_eq!(st.coordinator.id, chorus_tests::true_owner(&ids, job.0));
}

#[test]
fn a_node_that_joins_in_front_of_the_coordinator_routes_clients_to_it() {
    let mut nodes = start_cluster(3, |_, _| {}).expect("cluster");
    let submitter = Identity::generate().expect("key");
    let work = ranges(40, 60_000_000);
    let spec = primes_job(&submitter, &work, 2, 7);
    let job = submit(nodes[0].addr, spec).expect("submitted");
    let coordinator = status(nodes[0].addr, job).expect("status").coordinator.id;
    // A new node whose position falls between the coordinator's predecessor
    // and the job id: it becomes the owner of the job id.
    let mut ids: Vec<RingPos> = nodes.iter().map(|n| n.id).collect();
    ids.sort();
    let at = ids
        .iter()
        .position(|i| *i == coordinator)
        .expect("coordinator");
    let pred = ids[(at + ids.len() - 1) % ids.len()];
    let mut identity = None;
    // Node keys carry the identity proof of work: each try costs about as
    // much as one node start (the interval is about a third of the ring).
    for _ in 0..200 {
        let id = Identity::generate_member().expect("key");
        if id.ring_pos().in_open_closed(pred, job.0) && id.ring_pos() != job.0 {
            identity = Some(id);
            break;
        }
    }
    let Some(identity) = identity else {
        panic!("no key lands in ({pred}, {job}] in 200 tries");
    };
    let mut config = chorus_node::net::NodeConfig::new((chorus_tests::next_host(), 0).into());
    config.cores = 1;
    config.bootstrap = vec![nodes[0].addr];
    let newcomer = TestNode::start_as(config, Some(identity)).expect("newcomer");
    let newcomer_addr = newcomer.addr;
    nodes.push(newcomer);
    let refs: Vec<&TestNode> = nodes.iter().collect();
    wait_until(Duration::from_secs(60), || {
        chorus_tests::ring_consistent(&refs)
    })
    .expect("ring with the newcomer");
    // Clients asking any node (the newcomer included) still reach the job.
    let (st, results) = wait_for_results(
        &[newcomer_addr, nodes[1].addr],
        job,
        Duration::from_secs(120),
    )
    .expect("results through the new owner");
    check_outputs(&work, &results);
    assert_eq!(st.verified, 40);
}

#[test]
fn a_liar_that_takes_over_a_job_still_finishes_it_right() {
    let liar_index = 3;
    let base = std::env::temp_dir().join(format!("chorus-takeover-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let mut nodes = start_cluster(4, |i, c| {
        c.data_dir = Some(base.join(format!("n{i}")));
        if i == liar_index {
            c.chaos.corrupt_results = true;
        }
    })
    .expect("cluster");
    let liar = nodes[liar_index].id;
    let mut ids: Vec<RingPos> = nodes.iter().map(|n| n.id).collect();
    ids.sort();
    let at = ids.iter().position(|i| *i == liar).expect("liar");
    // The node just before the liar coordinates; the liar is next in line.
    let target = ids[(at + ids.len() - 1) % ids.len()];
    let submitter = Identity::generate().expect("key");
    let b = bundle(&submitter);
    let work = ranges(40, 60_000_000);
    let mut spec = None;
    for nonce in 0..10_000u64 {
        let s = JobSpec::new(
            &b,
            inputs(&work),
            Some(Policy::new(2, None, None).expect("policy")),
            None,
            nonce,
        )
        .expect("spec")
        .sign(&submitter)
        .expect("sign");
        if chorus_tests::true_owner(&ids, s.id().0) == target {
            spec = Some(s);
            break;
        }
    }
    let spec = spec.expect("a nonce whose job the liar's predecessor owns");
    let job = submit(nodes[0].addr, spec).expect("submitted");
    assert_eq!(
        status(nodes[0].addr, job).expect("status").coordinator.id,
        target
    );
    std::thread::sleep(Duration::from_millis(1000));
    let dead = nodes.remove(
        nodes
            .iter()
            .position(|n| n.id == target)
            .expect("coordinator"),
    );
    dead.kill();
    let (st, results) =
        wait_for_results(&addrs(&nodes), job, Duration::from_secs(180)).expect("results");
    eprintln!(
        "after the coordinator died: coordinator {} (liar {liar}), {} failovers, {} rejected",
        st.coordinator.id, st.failovers, st.disagreements
    );
    check_outputs(&work, &results);
    assert_eq!(st.verified, 40);
    let _ = std::fs::remove_dir_all(&base);
}

fn expect_error(r: Result<JobId, chorus_sdk::wire::WireError>, kind: &str) {
    match r {
        Err(e) => {
            assert_eq!(e.kind, kind, "{e}");
            assert!(!e.message.is_empty());
        }
        Ok(job) => panic!("expected a {kind} error, the job {job} was accepted"),
    }
}

#[test]
fn bad_jobs_get_clear_errors_and_the_node_goes_on() {
    let nodes = start_cluster(3, |_, _| {}).expect("cluster");
    let addr = nodes[0].addr;
    let submitter = Identity::generate().expect("key");
    let b = bundle(&submitter);
    let good = || {
        JobSpec::new(
            &b,
            inputs(&ranges(4, 100)),
            Some(Policy::new(2, None, None).expect("policy")),
            None,
            5,
        )
        .expect("spec")
        .sign(&submitter)
        .expect("sign")
    };

    // Limits above what every worker donates (a wall limit of 10 hours
    // against the 10 minutes nodes accept by default): refused at
    // submission with a clear reason, not retried forever.
    let greedy = JobSpec::new(
        &b,
        inputs(&ranges(4, 100)),
        Some(Policy::new(2, None, None).expect("policy")),
        Some(Limits {
            wall_ms: 36_000_000,
            ..Limits::default()
        }),
        5,
    )
    .expect("spec")
    .sign(&submitter)
    .expect("sign");
    match submit(addr, greedy) {
        Err(e) => {
            assert_eq!(e.kind, "not_enough_workers", "{e}");
            assert!(e.message.contains("wall_ms"), "{e}");
        }
        Ok(job) => panic!("a job no worker accepts was taken: {job}"),
    }

    // Unknown job id.
    let unknown = JobId(RingPos(0x1234_5678_9abc_def0));
    assert_eq!(
        status(addr, unknown).expect_err("unknown").kind,
        "unknown_job"
    );

    // A tampered bundle: one byte of the module flipped.
    let mut tampered = good();
    let at = tampered.bundle.len() / 2;
    tampered.bundle[at] ^= 0x01;
    expect_error(submit(addr, tampered), "bad_bundle");

    // An unsigned bundle: the 64-byte signature (the encoding's last field,
    // `c4 40` + 64 bytes) replaced by an empty one.
    let mut unsigned = good();
    let n = unsigned.bundle.len();
    assert_eq!(&unsigned.bundle[n - 66..n - 64], &[0xc4, 0x40]);
    unsigned.bundle.truncate(n - 66);
    unsigned.bundle.extend_from_slice(&[0xc4, 0x00]);
    expect_error(submit(addr, unsigned), "bad_bundle");

    // An input over the cap.
    let mut big = good();
    big.limits = Limits {
        input_bytes: 8,
        ..big.limits
    };
    big.inputs[1] = serde_bytes::ByteBuf::from(vec![0u8; 9]);
    expect_error(submit(addr, big), "input_too_large");

    // Quorum above replicas.
    let mut q = good();
    q.policy = Policy {
        replicas: 2,
        quorum: 3,
        max_replicas: 4,
        ..Policy::default()
    };
    expect_error(submit(addr, q), "bad_policy");

    // More replicas than live nodes.
    let mut many = good();
    many.policy = Policy::new(5, None, None).expect("policy");
    let many = many.sign(&submitter).expect("sign");
    expect_error(submit(addr, many), "not_enough_workers");

    // Adaptive verification at 1e-4 on three new nodes: even all three
    // agreeing would not be credible enough (four are needed while none is
    // trusted), so the job is refused at once, not left to fail.
    let mut small = good();
    small.policy = Policy::adaptive(1e-4, None).expect("policy");
    let small = small.sign(&submitter).expect("sign");
    let e = submit(addr, small).expect_err("refused");
    assert_eq!(e.kind, "not_enough_workers", "{e}");
    assert!(e.message.contains("max_error"), "{}", e.message);

    // A spec changed after its submitter signed it (here its nonce), or
    // signed by a stranger: refused, nothing stored.
    let mut changed = good();
    changed.nonce += 1;
    expect_error(submit(addr, changed.clone()), "forbidden");
    let stranger_key = Identity::generate().expect("key");
    changed.signature = serde_bytes::ByteBuf::from(
        stranger_key
            .sign(
                &[
                    b"chorus job spec v1\0".as_slice(),
                    &changed.id().0.0.to_be_bytes(),
                ]
                .concat(),
            )
            .to_vec(),
    );
    expect_error(submit(addr, changed), "forbidden");

    // No tasks.
    let mut none = good();
    none.inputs.clear();
    expect_error(submit(addr, none), "no_tasks");

    // A job accepted, then cancelled by someone else: refused.
    let job = submit(addr, good()).expect("a good job is accepted");
    let stranger = Identity::generate().expect("key");
    let cancel = |who: &Identity| {
        Request::Job(JobRequest::Cancel {
            job,
            signature: serde_bytes::ByteBuf::from(sign_cancel(job, who)),
            forwarded: false,
        })
    };
    match ask(addr, &cancel(&stranger)) {
        Ok(Response::Error(e)) => assert_eq!(e.kind, "forbidden", "{e}"),
        other => panic!("a stranger's cancel: {other:?}"),
    }

    // The node still serves: the good job completes with right outputs.
    let (st, results) =
        wait_for_results(&addrs(&nodes), job, Duration::from_secs(60)).expect("results");
    check_outputs(&ranges(4, 100), &results);
    assert_eq!(st.verified, 4);

    // And a submitter can cancel its own job.
    let big_work = ranges(40, 2_000_000);
    let long = JobSpec::new(
        &b,
        inputs(&big_work),
        Some(Policy::new(2, None, None).expect("policy")),
        None,
        6,
    )
    .expect("spec")
    .sign(&submitter)
    .expect("sign");
    let long_job = submit(addr, long).expect("accepted");
    let req = Request::Job(JobRequest::Cancel {
        job: long_job,
        signature: serde_bytes::ByteBuf::from(sign_cancel(long_job, &submitter)),
        forwarded: false,
    });
    match ask(addr, &req) {
        Ok(Response::Job(JobResponse::Status(s))) => {
            assert!(s.cancelled && s.done, "{s:?}");
            assert!(s.failed > 0, "unfinished tasks failed as cancelled");
        }
        other => panic!("the submitter's cancel: {other:?}"),
    }
}

/// `Watch` through any node (forwarded to the coordinator): held while the
/// job does not change, answered as soon as it does, at once when the
/// client's version is stale or the job is done; a watch on an unknown job
/// is refused like a status.
#[test]
fn watch_pushes_each_change_and_returns_at_once_when_done() {
    let nodes = start_cluster(4, one_task_at_a_time).expect("cluster");
    let submitter = Identity::generate().expect("key");
    // Heavy enough that tasks are decided one by one over seconds.
    let work = ranges(6, 60_000_000);
    let job = submit(nodes[1].addr, primes_job(&submitter, &work, 2, 11)).expect("submitted");
    let watch = |via: usize, after: u64, wait_ms: u64| {
        let t0 = Instant::now();
        let r = ask(
            nodes[via].addr,
            &Request::Job(JobRequest::Watch {
                job,
                after,
                wait_ms,
                forwarded: false,
            }),
        );
        match r {
            Ok(Response::Job(JobResponse::Status(s))) => (*s, t0.elapsed()),
            other => panic!("watch: {other:?}"),
        }
    };
    let first = status(nodes[2].addr, job).expect("status");
    assert!(!first.done, "the job is still running: {first:?}");
    // A version the coordinator never had: answered at once.
    let (_, took) = watch(3, first.version + 1_000, 8_000);
    assert!(took < Duration::from_secs(4), "stale version held {took:?}");
    // Each watch returns on a change, with a newer version, and the job
    // makes progress between them; bounded in count and time.
    let mut seen = first.version;
    let mut verified = first.verified;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut changes = 0;
    while Instant::now() < deadline && changes < 50 {
        let (s, _) = watch(changes % 4, seen, 10_000);
        if s.version == seen {
            assert!(!s.done, "a done job is answered with its final version");
            continue;
        }
        assert!(
            s.version > seen,
            "versions only grow: {} -> {}",
            seen,
            s.version
        );
        assert!(s.verified >= verified);
        seen = s.version;
        verified = s.verified;
        changes += 1;
        if s.done {
            break;
        }
    }
    assert_eq!(verified, 6, "every task verified after {changes} changes");
    assert!(changes >= 2, "progress came in several pushes, not one");
    // Done: answered at once even with the current version.
    let (s, took) = watch(0, seen, 10_000);
    assert!(s.done);
    assert!(
        took < Duration::from_secs(4),
        "a done job held the watch {took:?}"
    );
    // Unknown job: refused, not held.
    let unknown = JobId(RingPos(0x0bad_0bad_0bad_0bad));
    match ask(
        nodes[0].addr,
        &Request::Job(JobRequest::Watch {
            job: unknown,
            after: 0,
            wait_ms: 10_000,
            forwarded: false,
        }),
    ) {
        Ok(Response::Error(e)) => assert_eq!(e.kind, "unknown_job", "{e}"),
        other => panic!("watch of an unknown job: {other:?}"),
    }
}
