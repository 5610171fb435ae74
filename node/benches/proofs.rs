//! What result proofs cost: the size of a proof per task (on the wire and as
//! a `.proof` file), the CPU of signing and of checking one attestation, and
//! how long `chorus verify` takes for a directory of 10,000 outputs; and
//! what a node's identity proof of work costs.
//!
//! Run: `cargo bench -p chorus-node --bench proofs`. Set `CHORUS_BENCH_OUTPUTS`
//! to change the number of outputs (default 10000).

use std::fs;
use std::time::{Duration, Instant};

use chorus_core::RingPos;
use chorus_core::jobs::Policy;
use chorus_node::cli::verify::verify_dir;
use chorus_sdk::attest::{Attestation, Claim, check_attestations, terms_digest};
use chorus_sdk::bundle::{BundleId, Limits};
use chorus_sdk::identity::Identity;
use chorus_sdk::job::{JobHeader, JobId, sha256};
use chorus_sdk::outcome::{self, Outcome};
use chorus_sdk::proof::Proof;
use serde_bytes::ByteBuf;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n: usize = std::env::var("CHORUS_BENCH_OUTPUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let workers: Vec<Identity> = (0..3).map(|_| Identity::generate().expect("key")).collect();
    let policy = Policy::new(3, Some(2), None).expect("policy");
    let job = JobId(RingPos(0x0123_4567_89ab_cdef));
    let outputs: Vec<Vec<u8>> = (0..n)
        .map(|i| format!("{{\"task\":{i},\"count\":{}}}", i * 7919).into_bytes())
        .collect();
    let mut inputs = Vec::with_capacity(n * 32);
    for i in 0..n {
        inputs.extend_from_slice(&sha256(&(i as u64).to_le_bytes()));
    }
    let header = JobHeader {
        bundle: BundleId([7; 32]),
        policy,
        limits: Limits::default(),
        nonce: 1,
        inputs: ByteBuf::from(inputs),
    };
    let claim = |i: usize| {
        let digest = outcome::digest(&Outcome::Ok, &outputs[i]).expect("verdict");
        header.claim(job, i as u32, digest).expect("claim")
    };

    // Signing and checking one attestation, as workers and checkers do.
    let c0: Claim = claim(0);
    let rounds = 2_000u32;
    let t = Instant::now();
    let mut last = None;
    for _ in 0..rounds {
        last = Some(c0.sign(&workers[0]));
    }
    let sign = t.elapsed() / rounds;
    let a0 = last.expect("signed");
    let t = Instant::now();
    for _ in 0..rounds {
        assert!(c0.verify(&a0));
    }
    let verify = t.elapsed() / rounds;
    let _ = terms_digest(&header.limits, &header.policy);

    // A task's proof with a quorum of 2 attestations.
    let atts: Vec<Vec<Attestation>> = (0..n)
        .map(|i| {
            let c = claim(i);
            workers[..2].iter().map(|w| c.sign(w)).collect()
        })
        .collect();
    assert!(check_attestations(&c0, &atts[0], 2).is_ok());
    let wire = rmp_serde::to_vec(&atts[0]).expect("encode").len();
    let proof0 = Proof::new(
        job,
        &header,
        0,
        &Outcome::Ok,
        &outputs[0],
        &atts[0],
        Default::default(),
    )
    .expect("proof")
    .to_json();

    // `chorus verify` over n outputs.
    let dir = std::env::temp_dir().join(format!("chorus-bench-proofs-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("dir");
    for i in 0..n {
        let name = format!("out-{i:05}");
        fs::write(dir.join(&name), &outputs[i]).expect("write");
        let p = Proof::new(
            job,
            &header,
            i as u32,
            &Outcome::Ok,
            &outputs[i],
            &atts[i],
            Default::default(),
        )
        .expect("proof");
        fs::write(dir.join(format!("{name}.proof")), p.to_json()).expect("write");
    }
    let mut runs = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let report = verify_dir(&dir).expect("verify");
        runs.push(t.elapsed());
        assert_eq!(report.ok, n, "{:?}", report.failed.first());
    }
    let _ = fs::remove_dir_all(&dir);
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());

    // The identity proof of work: what a node pays once, at its first start
    // (and an attacker per identity). Geometric: the spread is wide.
    let ids = 20;
    let mut pow: Vec<Duration> = (0..ids)
        .map(|_| {
            let t = Instant::now();
            let id = Identity::generate_member().expect("member key");
            assert!(id.peer_id().has_work());
            t.elapsed()
        })
        .collect();
    pow.sort();
    let pow_mean = pow.iter().sum::<Duration>() / ids;
    let key_rounds = 2_000u32;
    let t = Instant::now();
    for _ in 0..key_rounds {
        let _ = Identity::generate().expect("key");
    }
    let keygen = t.elapsed() / key_rounds;

    println!("Chorus proof benchmark: quorum 2, {cores} cores");
    println!();
    println!("| what | value |");
    println!("| --- | --- |");
    println!("| attestations of one task on the wire (quorum 2) | {wire} bytes |");
    println!("| one `.proof` file (quorum 2) | {} bytes |", proof0.len());
    println!(
        "| sign one attestation | {:.1} µs |",
        sign.as_secs_f64() * 1e6
    );
    println!(
        "| check one attestation | {:.1} µs |",
        verify.as_secs_f64() * 1e6
    );
    println!(
        "| check one task (quorum 2: 2 signatures + digest) | {:.1} µs |",
        2.0 * verify.as_secs_f64() * 1e6
    );
    println!(
        "| one plain key (generate) | {:.1} µs |",
        keygen.as_secs_f64() * 1e6
    );
    println!(
        "| a member key: {} bits of identity work ({ids} keys) | mean {:.2} s, median {:.2} s, max {:.2} s |",
        chorus_sdk::identity::ID_WORK_BITS,
        pow_mean.as_secs_f64(),
        pow[pow.len() / 2].as_secs_f64(),
        pow[pow.len() - 1].as_secs_f64()
    );
    let m = median(runs);
    println!(
        "| `chorus verify` of {n} outputs (median of 3) | {:.3} s ({:.1} µs per output) |",
        m.as_secs_f64(),
        m.as_secs_f64() * 1e6 / n as f64
    );
}
