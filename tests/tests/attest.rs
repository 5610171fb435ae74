//! Results a client can check, against adversaries that speak the protocol
//! with keys of their own: a node that forges the results it hands clients
//! (`--chaos forge-results`), a node that forges copies of jobs and asks
//! backups to take them over (`--chaos forge-copies`), and proof files that
//! were tampered with after the fact. Real QUIC on 127.0.0.1, real sandboxes,
//! the committed primes module; outputs are checked against its kernel
//! compiled natively into this test.
//!
//! Run: `cargo test --release -p chorus-tests --test attest`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use chorus_core::RingPos;
use chorus_core::jobs::Policy;
use chorus_node::cli::Cli;
use chorus_node::cli::verify::verify_dir;
use chorus_node::net::NodeConfig;
use chorus_sdk::client::Client;
use chorus_sdk::identity::Identity;
use chorus_sdk::job::{JobSpec, TaskResult};
use chorus_sdk::proof::Proof;
use chorus_tests::{TestNode, primes, start_cluster, status, submit, wait_for_results, wait_until};
use chorus_tests::{prime_input as input, prime_output as want, prime_ranges as ranges};
use clap::Parser;

use chorus_tests::PRIMES;

fn spec(submitter: &Identity, work: &[primes::Range], replicas: u32, nonce: u64) -> JobSpec {
    let policy = Policy::new(replicas, None, None).expect("policy");
    chorus_tests::primes_spec(submitter, work, policy, nonce)
}

/// A fresh directory under the system's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("chorus-attest-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Runs the `chorus` command line in this process.
fn chorus(args: &[&str]) -> ExitCode {
    let cli = Cli::try_parse_from(std::iter::once("chorus").chain(args.iter().copied()))
        .expect("arguments parse");
    chorus_node::cli::run(cli)
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for e in fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
}

/// The reasons `chorus verify` gives, by file.
fn failures(dir: &Path) -> BTreeMap<String, String> {
    verify_dir(dir)
        .expect("verify")
        .failed
        .into_iter()
        .map(|f| (f.file, f.reason))
        .collect()
}

#[test]
fn a_client_through_a_forging_node_gets_every_output_right_and_names_it() {
    let nodes = start_cluster(5, |i, c: &mut NodeConfig| {
        if i == 1 {
            c.chaos.forge_results = true;
        }
    })
    .expect("cluster");
    let forger = nodes[1].addr;
    let work = ranges(12, 2_000);

    // Through the SDK: every output it returns is right, every one carries a
    // proof that holds, and the forger is named for each result it served.
    let submitter = Identity::generate().expect("key");
    let spec = spec(&submitter, &work, 2, 1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let client = Client::connect(forger).await.expect("connect");
        let job = client.submit(&spec).await.expect("submit");
        let results = client.wait(job).await.expect("results");
        for (i, r) in work.iter().enumerate() {
            let i = i as u32;
            let got = results.output(i).expect("an accepted output");
            assert_eq!(got, want(r).as_slice(), "task {i}");
            let proof = results.proof(i).expect("a proof");
            assert!(proof.check(got).expect("the proof holds") >= 2);
        }
        assert!(
            !results.refused().is_empty(),
            "the forged results were noticed"
        );
        for r in results.refused() {
            assert_eq!(r.node, forger, "refusal {r:?} names the forger");
        }
        client.close();
    });

    // Through the CLI: exit 0, no forged byte written, a proof beside every
    // output, and `chorus verify` agrees.
    let tmp = TempDir::new("cli");
    let (inputs, out, keys) = (tmp.0.join("in"), tmp.0.join("out"), tmp.0.join("keys"));
    fs::create_dir_all(&inputs).expect("mkdir");
    for (i, r) in work.iter().enumerate() {
        fs::write(inputs.join(format!("range-{i:02}")), input(r)).expect("write input");
    }
    let module = tmp.0.join("primes.wasm");
    fs::write(&module, PRIMES).expect("write module");
    let code = chorus(&[
        "submit",
        "--node",
        &forger.to_string(),
        "--inputs",
        inputs.to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
        "--key-dir",
        keys.to_str().expect("utf-8"),
        "--replicas",
        "2",
        module.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, ExitCode::SUCCESS, "chorus submit exits 0");
    for (i, r) in work.iter().enumerate() {
        let name = format!("range-{i:02}");
        let got = fs::read(out.join(&name)).expect("output written");
        assert_eq!(got, want(r), "{name}");
        let proof = fs::read(out.join(format!("{name}.proof"))).expect("proof written");
        assert!(
            Proof::from_json(&proof)
                .expect("proof parses")
                .check(&got)
                .is_ok()
        );
    }
    for e in fs::read_dir(&out).expect("out") {
        let bytes = fs::read(e.expect("entry").path()).expect("read");
        assert!(
            !bytes.windows(6).any(|w| w == b"FORGED"),
            "a forged byte was written"
        );
    }

    // `chorus verify`: fresh outputs hold...
    let report = verify_dir(&out).expect("verify");
    assert_eq!((report.checked, report.ok), (work.len(), work.len()));
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(
        chorus(&["verify", out.to_str().expect("utf-8")]),
        ExitCode::SUCCESS
    );

    // ...and each tampering is named with its reason.
    let case = |name: &str, tamper: &dyn Fn(&Path)| -> BTreeMap<String, String> {
        let dir = tmp.0.join(name);
        copy_dir(&out, &dir);
        tamper(&dir);
        assert_eq!(
            chorus(&["verify", dir.to_str().expect("utf-8")]),
            ExitCode::from(1),
            "{name}: chorus verify exits 1"
        );
        failures(&dir)
    };
    let flip = |path: PathBuf, at: usize| {
        let mut b = fs::read(&path).expect("read");
        let at = at.min(b.len() - 1);
        b[at] ^= 0x01;
        fs::write(&path, b).expect("write");
    };
    let got = case("output-byte", &|d| flip(d.join("range-03"), 0));
    assert_eq!(
        got,
        BTreeMap::from([("range-03".to_string(), "output_changed".to_string())])
    );
    let got = case("proof-byte", &|d| {
        // One hex digit of the first signature, changed to another hex digit.
        let p = d.join("range-05.proof");
        let text = fs::read_to_string(&p).expect("read");
        let at = text.find("\"signature\": \"").expect("a signature") + 14;
        let mut b = text.into_bytes();
        b[at] = if b[at] == b'0' { b'1' } else { b'0' };
        fs::write(&p, b).expect("write");
    });
    assert_eq!(
        got,
        BTreeMap::from([("range-05".to_string(), "signature_invalid".to_string())])
    );
    let got = case("proof-gone", &|d| {
        fs::remove_file(d.join("range-07.proof")).expect("rm")
    });
    assert_eq!(
        got,
        BTreeMap::from([("range-07".to_string(), "proof_missing".to_string())])
    );
    let got = case("too-few", &|d| {
        let p = d.join("range-09.proof");
        let mut proof = Proof::from_json(&fs::read(&p).expect("read")).expect("parse");
        proof.attestations.truncate(1);
        fs::write(&p, proof.to_json()).expect("write");
    });
    assert_eq!(
        got,
        BTreeMap::from([("range-09".to_string(), "too_few_signers".to_string())])
    );
}

#[test]
fn forged_copies_change_nothing_and_the_real_next_owner_finishes_the_job() {
    let forger_index = 5;
    let mut nodes = start_cluster(6, |i, c: &mut NodeConfig| {
        // One task at a time, so the job is still running when its
        // coordinator dies.
        c.jobs.batch_tasks = 1;
        c.jobs.queue_per_core = 1;
        if i == forger_index {
            c.chaos.forge_copies = true;
        }
    })
    .expect("cluster");
    let forger = nodes[forger_index].id;
    let ids: Vec<RingPos> = nodes.iter().map(|n| n.id).collect();
    let submitter = Identity::generate().expect("key");
    let work = ranges(40, 60_000_000);
    // A job whose coordinator and next owner are honest: a forger that
    // owns the job rightly coordinates it (and its own forged copies are
    // then refused for their attestations), which is not what this tests.
    let spec = (0..1000u64)
        .map(|nonce| spec(&submitter, &work, 2, nonce))
        .find(|s| {
            let owner = chorus_tests::true_owner(&ids, s.id().0);
            let rest: Vec<RingPos> = ids.iter().copied().filter(|i| *i != owner).collect();
            owner != forger && chorus_tests::true_owner(&rest, s.id().0) != forger
        })
        .expect("a job owned by honest nodes");
    let job = submit(nodes[0].addr, spec).expect("submitted");
    let coordinator = status(nodes[0].addr, job).expect("status").coordinator.id;
    // Progress, and time for the forger (a worker of the job) to learn of it
    // and send its first rounds of forged copies.
    wait_until(Duration::from_secs(60), || {
        let s = status(nodes[0].addr, job).map_err(|e| e.to_string())?;
        let refused: u64 = nodes
            .iter()
            .map(|n| n.node().metrics().job_copies_refused.get())
            .sum();
        if s.verified >= 2 && refused > 0 {
            Ok(())
        } else {
            Err(format!("{} verified, {refused} copies refused", s.verified))
        }
    })
    .expect("progress and forged copies refused");
    chorus_tests::kill_running_coordinator(&mut nodes, coordinator, job);
    let live: Vec<std::net::SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    let (st, results) = wait_for_results(&live, job, Duration::from_secs(240)).expect("results");
    assert!(!st.cancelled, "a forged cancel was taken: {st:?}");
    for (i, r) in work.iter().enumerate() {
        match results.get(&(i as u32)) {
            Some(TaskResult::Output(got)) => {
                assert_eq!(got.as_ref(), want(r).as_slice(), "task {i}")
            }
            other => panic!("task {i}: {other:?}"),
        }
    }
    let live_ids: Vec<RingPos> = nodes.iter().map(|n| n.id).collect();
    assert_eq!(
        st.coordinator.id,
        chorus_tests::true_owner(&live_ids, job.0),
        "the real next owner finished the job"
    );
    assert_ne!(st.coordinator.id, forger, "the forger did not take the job");
    let refused: u64 = nodes
        .iter()
        .map(|n| n.node().metrics().job_copies_refused.get())
        .sum();
    assert!(refused > 0, "forged copies are counted as refused");
    let _keep: Vec<TestNode> = nodes;
}

/// Two copies of one fresh key: one for a node, one for the test to speak
/// with it.
fn twin_keys(dir: &Path) -> (Identity, Identity) {
    let a = Identity::load_or_create_member(dir).expect("key");
    let b = Identity::load_or_create_member(dir).expect("same key");
    assert_eq!(a.public_key(), b.public_key());
    (a, b)
}

#[test]
fn a_copy_with_one_forged_task_is_refused_whole() {
    let tmp = TempDir::new("twins");
    let (mut node_keys, mut test_keys) = (Vec::new(), Vec::new());
    for i in 0..3 {
        let (a, b) = twin_keys(&tmp.0.join(format!("k{i}")));
        node_keys.push(Some(a));
        test_keys.push(b);
    }
    // Copies of unfinished jobs whose coordinator goes silent expire: soon
    // here, so that the end of this test can see it.
    let nodes = chorus_tests::start_cluster_as(node_keys, |_, c| {
        c.jobs.keep_unfinished = Duration::from_secs(4);
    })
    .expect("cluster");
    let ids: Vec<RingPos> = nodes.iter().map(|n| n.id).collect();
    // A signed job that node 0 owns; the test speaks as node 0 (its
    // coordinator) to node 1, with node 0's own key.
    let submitter = Identity::generate().expect("key");
    let work = ranges(4, 1_000);
    let spec = (0..1000u64)
        .map(|nonce| spec(&submitter, &work, 2, nonce))
        .find(|s| chorus_tests::true_owner(&ids, s.id().0) == nodes[0].id)
        .expect("a job node 0 owns");
    let job = spec.id();
    let header = spec.header();
    let task = |i: u32, signers: &[&Identity]| {
        let out = want(&work[i as usize]);
        let digest =
            chorus_sdk::outcome::digest(&chorus_sdk::outcome::Outcome::Ok, &out).expect("verdict");
        let claim = header.claim(job, i, digest).expect("claim");
        chorus_sdk::job::DecidedTask {
            task: i,
            result: TaskResult::Output(serde_bytes::ByteBuf::from(out)),
            agreeing: signers.iter().map(|k| k.peer_id()).collect(),
            disagreeing: Vec::new(),
            votes: 2,
            attestations: signers.iter().map(|k| claim.sign(k)).collect(),
            rule: Default::default(),
        }
    };
    let members = [&test_keys[0], &test_keys[1], &test_keys[2]];
    let stranger = Identity::generate().expect("key");
    let honest: BTreeMap<u32, _> = (0..3)
        .map(|i| {
            (
                i,
                task(
                    i,
                    &[members[(i as usize) % 3], members[(i as usize + 1) % 3]],
                ),
            )
        })
        .collect();
    // One forged task among honest ones: a member and a stranger sign it.
    let mut forged = honest.clone();
    forged.insert(3, task(3, &[members[0], &stranger]));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let as_node0 = rt
        .block_on(async {
            chorus_sdk::transport::Transport::client(&test_keys[0], ([127, 0, 0, 1], 0).into())
        })
        .expect("transport");
    let send =
        |decided: BTreeMap<u32, chorus_sdk::job::DecidedTask>| -> chorus_sdk::wire::Response {
            let req = chorus_sdk::wire::Request::Job(chorus_sdk::job::JobRequest::Replicate {
                coordinator: chorus_sdk::wire::Peer {
                    id: nodes[0].id,
                    addr: nodes[0].addr,
                },
                job,
                copy: chorus_sdk::job::JobCopy::Full(Box::new(chorus_sdk::job::JobSnapshot {
                    spec: spec.clone(),
                    decided,
                    cancel: None,
                    failovers: 0,
                })),
            });
            rt.block_on(as_node0.call(
                nodes[1].addr,
                Some(nodes[1].id),
                &req,
                chorus_sdk::job::JOB_FRAME_CAP,
                Duration::from_secs(30),
            ))
            .expect("an answer")
        };
    let held = || {
        chorus_tests::ask(
            nodes[1].addr,
            &chorus_sdk::wire::Request::Job(chorus_sdk::job::JobRequest::Held { job, from: 0 }),
        )
        .expect("an answer")
    };
    let refused = || nodes[1].node().metrics().job_copies_refused.get();

    let before = refused();
    match send(forged) {
        chorus_sdk::wire::Response::Error(e) => assert_eq!(e.kind, "forbidden", "{e}"),
        other => panic!("a copy with a forged task was taken: {other:?}"),
    }
    assert_eq!(refused(), before + 1, "the refusal is counted");
    match held() {
        chorus_sdk::wire::Response::Error(e) => assert_eq!(e.kind, "unknown_job", "{e}"),
        other => panic!("nothing of the refused copy is kept: {other:?}"),
    }
    // The same copy without the forged task is taken: the refusal was for it.
    match send(honest) {
        chorus_sdk::wire::Response::Job(chorus_sdk::job::JobResponse::Ok) => {}
        other => panic!("the honest copy was refused: {other:?}"),
    }
    match held() {
        chorus_sdk::wire::Response::Job(chorus_sdk::job::JobResponse::Results(page)) => {
            assert_eq!(page.results.len(), 3);
            assert!(page.header.is_some_and(|h| h.matches(job)));
        }
        other => panic!("the copy is held: {other:?}"),
    }
    // Its coordinator never sends again and node 1 does not own the job:
    // the unfinished copy is dropped after `keep_unfinished`, not kept forever.
    let gone = wait_until(Duration::from_secs(20), || match held() {
        chorus_sdk::wire::Response::Error(e) if e.kind == "unknown_job" => Ok(()),
        _ => Err("the unfinished copy is still held".to_string()),
    });
    assert!(
        gone.as_ref().is_ok_and(|t| *t >= Duration::from_secs(3)),
        "{gone:?}"
    );
    as_node0.close();
}

#[test]
fn failed_tasks_reach_the_client_with_their_reason_and_are_not_refused() {
    let nodes = start_cluster(3, |_, c: &mut NodeConfig| {
        c.jobs.batch_tasks = 1;
        c.jobs.queue_per_core = 1;
    })
    .expect("cluster");
    let submitter = Identity::generate().expect("key");
    let work = ranges(40, 60_000_000);
    let spec = spec(&submitter, &work, 2, 7);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let client = Client::connect(nodes[0].addr).await.expect("connect");
        let job = client.submit(&spec).await.expect("submit");
        client.cancel(job, &submitter).await.expect("cancel");
        let results = client.wait(job).await.expect("results");
        assert!(results.status.cancelled);
        assert!(
            results.refused().is_empty(),
            "an honest coordinator's results were refused: {:?}",
            results.refused().first()
        );
        let mut cancelled = 0;
        for (task, r) in results.iter() {
            match r {
                Some(TaskResult::Failed { reason }) => {
                    assert!(reason.contains("cancelled"), "task {task}: {reason}");
                    cancelled += 1;
                }
                Some(TaskResult::Output(out)) => {
                    assert_eq!(out.as_ref(), want(&work[task as usize]).as_slice())
                }
                other => panic!("task {task}: {other:?}"),
            }
        }
        assert!(cancelled > 0, "the cancel came before every task was done");
        client.close();
    });
}

#[test]
fn prove_and_held_from_a_fresh_key_change_nothing_and_a_proof_binds_its_nonce() {
    use chorus_sdk::attest::member_message;
    use chorus_sdk::job::{JobRequest, JobResponse};
    use chorus_sdk::wire::{Request, Response};

    let nodes = start_cluster(3, |_, _| {}).expect("cluster");
    let node = &nodes[1];
    let key_of = |r: Response| match r {
        Response::Proof {
            public_key,
            signature,
        } => (public_key, signature),
        other => panic!("not a proof: {other:?}"),
    };
    // A stranger's challenge is answered with the node's own key, over that
    // nonce only: the answer does not prove anything for another nonce.
    let (key, sig) =
        key_of(chorus_tests::ask(node.addr, &Request::Prove { nonce: [7; 32] }).expect("answer"));
    assert_eq!(
        chorus_sdk::identity::PeerId::from_public_key(&key).ring_pos(),
        node.id
    );
    assert!(chorus_sdk::identity::verify(
        &key,
        &member_message(&[7; 32], &key),
        &sig
    ));
    assert!(!chorus_sdk::identity::verify(
        &key,
        &member_message(&[8; 32], &key),
        &sig
    ));
    // Held for a job nobody holds, asked twice (a replay): unknown, nothing made.
    let job = chorus_sdk::job::JobId(RingPos(0x0bad_cafe_0000_0001));
    for _ in 0..2 {
        match chorus_tests::ask(node.addr, &Request::Job(JobRequest::Held { job, from: 0 }))
            .expect("answer")
        {
            Response::Error(e) => assert_eq!(e.kind, "unknown_job", "{e}"),
            other => panic!("held of an unknown job: {other:?}"),
        }
    }
    assert!(node.node().jobs().coordinated().is_empty());
    assert!(node.node().jobs().backed_up().is_empty());
    // Held past the end of a real job's tasks: an empty page, not an error.
    let submitter = Identity::generate().expect("key");
    let work = ranges(2, 1_000);
    let job = submit(nodes[0].addr, spec(&submitter, &work, 2, 3)).expect("submitted");
    let (_, results) =
        wait_for_results(&[nodes[0].addr], job, Duration::from_secs(60)).expect("results");
    assert_eq!(results.len(), 2);
    let holder = nodes
        .iter()
        .find(|n| n.node().jobs().coordinated().contains(&job))
        .expect("a coordinator");
    match chorus_tests::ask(
        holder.addr,
        &Request::Job(JobRequest::Held {
            job,
            from: u32::MAX,
        }),
    )
    .expect("answer")
    {
        Response::Job(JobResponse::Results(page)) => {
            assert!(page.results.is_empty() && page.next.is_none() && page.header.is_none())
        }
        other => panic!("held past the end: {other:?}"),
    }
}
