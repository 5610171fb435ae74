//! Bounded and fair work at a worker, on a real grid (QUIC on 127.0.0.1,
//! real sandboxes, the committed primes module): batches only for jobs
//! whose signed terms the worker holds, only tasks that match them, of a
//! bounded size; and a small job beside a heavy one from another submitter
//! finishes in about its own time.
//!
//! Run: `cargo test --release -p chorus-tests --test bounds -- --nocapture`
//! (the fair-share test prints its times).

use std::time::{Duration, Instant};

use chorus_node::metrics::TASK_OUTCOMES;
use chorus_sdk::identity::Identity;
use chorus_sdk::job::{Assignment, JOB_FRAME_CAP, JobId, JobRequest, JobSpec, RunTasks};
use chorus_sdk::transport::Transport;
use chorus_sdk::wire::{Request, Response};
use chorus_tests::{
    TestNode, prime_input, prime_ranges, primes_job, start_cluster, status, submit,
    wait_for_results,
};
use serde_bytes::ByteBuf;

/// Tasks the node ran as a worker, over every outcome.
fn executed(n: &TestNode) -> u64 {
    let m = n.node().metrics();
    TASK_OUTCOMES
        .iter()
        .map(|o| m.tasks_executed.with_label_values(&[o]).get())
        .sum()
}

/// Batches the node refused as a worker for `reason`.
fn refused(n: &TestNode, reason: &str) -> u64 {
    n.node()
        .metrics()
        .worker_refused
        .with_label_values(&[reason])
        .get()
}

/// A batch of `spec`'s job with the given (task, input) pairs, as its
/// coordinator would send it.
fn batch(spec: &JobSpec, tasks: &[(u32, Vec<u8>)]) -> RunTasks {
    let header = spec.header();
    RunTasks {
        job: spec.id(),
        bundle: header.bundle,
        coordinator: ([127, 0, 0, 1], 9).into(),
        limits: spec.limits,
        policy: spec.policy,
        tasks: tasks
            .iter()
            .map(|(task, input)| Assignment {
                task: *task,
                seed: 1,
                input: ByteBuf::from(input.clone()),
            })
            .collect(),
    }
}

/// Sends `run` to `to` from a fresh key of our own (a stranger to the ring,
/// though one that paid the identity work: a plain key is refused before
/// any of this, see `sybil.rs`).
fn send_as_stranger(to: &TestNode, run: RunTasks) -> Response {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let stranger = Identity::generate_member().expect("key");
    rt.block_on(async {
        let t = Transport::client(&stranger, ([127, 0, 0, 1], 0).into()).expect("transport");
        let r = t
            .call(
                to.addr,
                Some(to.id),
                &Request::Job(JobRequest::Run(Box::new(run))),
                JOB_FRAME_CAP,
                Duration::from_secs(30),
            )
            .await
            .expect("an answer");
        t.close();
        r
    })
}

fn expect_refused(r: Response, kind: &str) {
    match r {
        Response::Error(e) => assert_eq!(e.kind, kind, "{e}"),
        other => panic!("the batch was not refused with {kind}: {other:?}"),
    }
}

#[test]
fn batches_must_be_signed_match_their_terms_and_fit() {
    // Three workers of one core; a terms fetch from a stranger (who serves
    // nothing) gives up after 2 s.
    let nodes =
        start_cluster(3, |_, c| c.jobs.fetch_timeout = Duration::from_secs(2)).expect("cluster");
    let addrs: Vec<_> = nodes.iter().map(|n| n.addr).collect();
    let submitter = Identity::generate().expect("key");
    let work = prime_ranges(2, 1000);
    // A real job, run by every node (three replicas on three nodes): each
    // holds its signed terms afterwards.
    let spec = primes_job(&submitter, &work, 3, 1);
    let job = submit(addrs[0], spec.clone()).expect("submit");
    let (done, _) = wait_for_results(&addrs, job, Duration::from_secs(60)).expect("results");
    assert_eq!(done.verified, 2);
    // The third replica of each task may come back after the quorum: wait
    // for all six, so that nothing of the job runs during the checks.
    chorus_tests::wait_until(Duration::from_secs(30), || {
        let s = status(addrs[0], job).map_err(|e| e.to_string())?;
        if s.replicas_run >= 6 {
            Ok(())
        } else {
            Err(format!("{} replicas back", s.replicas_run))
        }
    })
    .expect("every replica back");
    let worker = &nodes[1];

    // 1. A job nobody submitted: the stranger cannot show signed terms.
    let unsubmitted = primes_job(&submitter, &work, 3, 2);
    let before = executed(worker);
    let count = refused(worker, "unsigned_job");
    let r = send_as_stranger(worker, batch(&unsubmitted, &[(0, prime_input(&work[0]))]));
    expect_refused(r, "unsigned_job");
    assert_eq!(refused(worker, "unsigned_job"), count + 1, "counted");
    assert_eq!(executed(worker), before, "nothing ran");

    // 2. The real job, with an input that is not the one the submitter
    // signed (task 0 with task 1's input), or other limits.
    let count = refused(worker, "terms_mismatch");
    let r = send_as_stranger(worker, batch(&spec, &[(0, prime_input(&work[1]))]));
    expect_refused(r, "terms_mismatch");
    let mut run = batch(&spec, &[(0, prime_input(&work[0]))]);
    run.limits.fuel /= 2;
    expect_refused(send_as_stranger(worker, run), "terms_mismatch");
    let run = batch(&spec, &[(7, prime_input(&work[0]))]);
    expect_refused(send_as_stranger(worker, run), "terms_mismatch");
    assert_eq!(refused(worker, "terms_mismatch"), count + 3, "counted");
    assert_eq!(executed(worker), before, "nothing ran");
    // The same batch with the signed input runs: the refusals were for the
    // mismatches.
    match send_as_stranger(worker, batch(&spec, &[(0, prime_input(&work[0]))])) {
        Response::Job(chorus_sdk::job::JobResponse::Ran(r)) => assert_eq!(r.results.len(), 1),
        other => panic!("a batch that matches its terms was refused: {other:?}"),
    }
    assert_eq!(executed(worker), before + 1);

    // 3. Over the bound (one core, 32 tasks per core: a queue of 128, half
    // of it per batch), on an idle worker: too large, not busy.
    let count = refused(worker, "batch_too_large");
    let big: Vec<(u32, Vec<u8>)> = (0..65).map(|i| (i % 2, prime_input(&work[0]))).collect();
    expect_refused(
        send_as_stranger(worker, batch(&spec, &big)),
        "batch_too_large",
    );
    assert_eq!(refused(worker, "batch_too_large"), count + 1, "counted");
    assert_eq!(executed(worker), before + 1, "nothing more ran");
}

/// Waits until `job` is done (polling `via`); the time since `since`.
fn time_to_done(via: &[std::net::SocketAddr], job: JobId, since: Instant) -> Duration {
    let (s, _) = wait_for_results(via, job, Duration::from_secs(120)).expect("small job done");
    assert_eq!(s.verified, s.tasks, "every task verified");
    since.elapsed()
}

/// A primes job of `submitter` over `work` whose coordinator is `owner`
/// (the nonce is searched), so that jobs share a coordinator.
fn job_at(
    submitter: &Identity,
    work: &[chorus_tests::primes::Range],
    ids: &[chorus_core::RingPos],
    owner: chorus_core::RingPos,
    nonces: std::ops::Range<u64>,
) -> JobSpec {
    for nonce in nonces {
        let spec = primes_job(submitter, work, 2, nonce);
        if chorus_tests::true_owner(ids, spec.id().0) == owner {
            return spec;
        }
    }
    panic!("no nonce puts the job at {owner}");
}

#[test]
fn a_small_job_beside_a_heavy_one_finishes_in_about_its_own_time() {
    let nodes = start_cluster(3, |_, _| {}).expect("cluster");
    let addrs: Vec<_> = nodes.iter().map(|n| n.addr).collect();
    let ids: Vec<_> = nodes.iter().map(|n| n.id).collect();
    let heavy_submitter = Identity::generate().expect("key");
    let light_submitter = Identity::generate().expect("key");
    // Tasks of some tens of ms each: 3,000 of them, two replicas each, keep
    // 3 one-core workers busy for a minute or more.
    let width = 20_000_000;
    let heavy_spec = primes_job(&heavy_submitter, &prime_ranges(3000, width), 2, 1);
    // Both jobs at the heavy job's coordinator: they share its allowance at
    // every worker as well as the workers' slots.
    let coordinator = chorus_tests::true_owner(&ids, heavy_spec.id().0);
    // The small job's tasks are cheap: what it waits for is the heavy job.
    let small = prime_ranges(10, 1_000_000);

    // The small job alone.
    let spec = job_at(&light_submitter, &small, &ids, coordinator, 0..1000);
    let t0 = Instant::now();
    let job = submit(addrs[1], spec).expect("submit");
    let alone = time_to_done(&addrs, job, t0);

    // The heavy job, running with every queue full before the small job comes.
    let t_heavy = Instant::now();
    let heavy = submit(addrs[0], heavy_spec).expect("submit");
    let mut seen = 0;
    for _ in 0..300 {
        let s = status(addrs[0], heavy).expect("status");
        assert!(
            !s.done,
            "the heavy job must still run when the small one comes"
        );
        seen = s.verified;
        if s.verified >= 30 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(seen >= 30, "the heavy job made progress ({seen} verified)");

    let spec = job_at(&light_submitter, &small, &ids, coordinator, 1000..2000);
    let t1 = Instant::now();
    let job = submit(addrs[2], spec).expect("submit");
    let beside = time_to_done(&addrs, job, t1);
    let heavy_status = status(addrs[0], heavy).expect("status");
    let heavy_so_far = t_heavy.elapsed();
    eprintln!(
        "fair share: small job (10 tasks x 2 replicas) alone {:.2} s, beside the 3,000-task job \
         {:.2} s; the heavy job had {} of {} tasks verified after {:.1} s",
        alone.as_secs_f64(),
        beside.as_secs_f64(),
        heavy_status.verified,
        heavy_status.tasks,
        heavy_so_far.as_secs_f64()
    );
    assert!(
        !heavy_status.done,
        "the small job finished while the heavy one still ran"
    );
    // About its own time plus a bounded wait: one heavy task per slot
    // between two of its own (tens of ms each), not the heavy job's queue at
    // every worker (32 or more tasks each, seconds). Generous for a busy
    // 2-core machine.
    assert!(
        beside <= alone * 2 + Duration::from_secs(1),
        "the small job took {beside:?} beside the heavy one, {alone:?} alone"
    );
    // Stop the heavy job: its submitter cancels it.
    let cancel = chorus_sdk::job::sign_cancel(heavy, &heavy_submitter);
    let _ = chorus_tests::ask(
        addrs[0],
        &Request::Job(JobRequest::Cancel {
            job: heavy,
            signature: ByteBuf::from(cancel),
            forwarded: false,
        }),
    );
}
