//! Real messages for the seed corpus: signed bundles, signed specs, signed
//! capacity records, attested results, proof files, certificates as the
//! node makes them, and every wire request and response built from them,
//! encoded by the codecs the node uses. `cargo run --example seeds` writes
//! them under `corpus/<target>/`.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use chorus_core::RingPos;
use chorus_core::jobs::{Policy, Reputation};
use chorus_core::ring;
use chorus_sdk::attest::AcceptRule;
use chorus_sdk::bundle::Limits;
use chorus_sdk::capacity::{CapacityRecord, SignedCapacity};
use chorus_sdk::frame;
use chorus_sdk::identity::{Identity, PeerId};
use chorus_sdk::job::{
    Assignment, DecidedTask, JOB_FRAME_CAP, JobCopy, JobId, JobRequest, JobResponse, JobSnapshot,
    JobSpec, JobStatus, JobUpdate, ProvedResult, Rejection, ResultsPage, RunTasks, SignedResults,
    TaskResult, WorkerReputation, WorkerResult, sign_cancel,
};
use chorus_sdk::outcome::{self, Outcome, TrapCode};
use chorus_sdk::proof::Proof;
use chorus_sdk::stored::{self, JobFlags};
use chorus_sdk::wire::{
    ErrorKind, LookupAnswer, Peer, PeerList, Request, Response, RingView, WireError,
};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::{MODULE, NOW_MS, fixed_bundle, fixed_identity, submitter};

/// One seed file: the target's name, the file's name, its bytes.
pub type Seed = (&'static str, String, Vec<u8>);

/// The input of the `attest` target: a result with its proof, and the job
/// header a client checks it against.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AttestCase {
    /// The job.
    pub job: JobId,
    /// Its header (as the client fetched it).
    pub header: chorus_sdk::job::JobHeader,
    /// The result.
    pub result: ProvedResult,
}

/// One step of the `ring` target's script.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum RingStep {
    /// A request from the peer at `from` (authenticated by the transport).
    Request {
        /// The sender's ring position.
        from: u64,
        /// The message.
        msg: ring::Request<SocketAddr>,
    },
    /// The answer to the `nth` request the node sent and has not had
    /// answered (modulo how many there are).
    Response {
        /// Which pending request.
        nth: u8,
        /// The answer.
        msg: ring::Response<SocketAddr>,
    },
    /// The `nth` pending request failed.
    Fail {
        /// Which pending request.
        nth: u8,
    },
    /// Time passes (ms) and the node's timers fire.
    Tick {
        /// How long.
        ms: u16,
    },
    /// The node starts a lookup of `key`.
    Lookup {
        /// The key.
        key: u64,
    },
}

/// A peer at position `n * 2^60` on loopback.
pub fn peer(n: u64) -> Peer {
    ring::Peer {
        id: RingPos(n.wrapping_mul(0x1000_0000_0000_0000)),
        addr: SocketAddr::from(([127, 0, 0, 1], 7000 + n as u16)),
    }
}

/// A job of the fixed bundle with `tasks` inputs, signed by its submitter.
pub fn signed_spec(tasks: usize, nonce: u64) -> JobSpec {
    let inputs = (0..tasks)
        .map(|i| format!("input {i}").into_bytes())
        .collect();
    JobSpec::new(fixed_bundle(), inputs, None, None, nonce)
        .expect("a valid spec")
        .sign(submitter())
        .expect("the submitter signs")
}

fn worker(n: u8) -> Identity {
    fixed_identity(10 + n)
}

/// A capacity record of worker `n`, signed, stamped `age_ms` before [`NOW_MS`].
pub fn capacity(n: u8, age_ms: u64, ceiling: Option<Limits>) -> SignedCapacity {
    let record = CapacityRecord {
        public_key: [0; 32],
        addr: SocketAddr::from(([127, 0, 0, 1], 7100 + u16::from(n))),
        metrics_addr: Some(SocketAddr::from(([127, 0, 0, 1], 9100 + u16::from(n)))),
        cores: 2,
        memory_mb: 4096,
        free_slots: 1,
        fuel_per_sec: 1_300_000_000,
        version: "0.1.0".into(),
        timestamp_ms: NOW_MS - age_ms,
        ceiling,
    };
    SignedCapacity::sign(record, &worker(n)).expect("a record signs")
}

/// Task `task` of `spec` decided with `output`, attested by `signers` workers.
pub fn decided(spec: &JobSpec, task: u32, output: &[u8], signers: u8) -> DecidedTask {
    let header = spec.header();
    let digest = outcome::digest(&Outcome::Ok, output).expect("a verdict");
    let claim = header
        .claim(spec.id(), task, digest)
        .expect("task in range");
    DecidedTask {
        task,
        result: TaskResult::Output(ByteBuf::from(output.to_vec())),
        agreeing: (0..signers).map(|n| worker(n).peer_id()).collect(),
        disagreeing: vec![worker(9).peer_id()],
        votes: u32::from(signers) + 1,
        attestations: (0..signers).map(|n| claim.sign(&worker(n))).collect(),
        rule: AcceptRule::Quorum,
    }
}

fn proved(d: &DecidedTask) -> ProvedResult {
    ProvedResult {
        task: d.task,
        result: d.result.clone(),
        attestations: d.attestations.clone(),
        rule: d.rule,
    }
}

fn status(spec: &JobSpec) -> JobStatus {
    JobStatus {
        job: spec.id(),
        coordinator: peer(1),
        tasks: spec.inputs.len() as u32,
        pending: 1,
        running: 1,
        verified: 1,
        failed: 0,
        replicas_run: 5,
        disagreements: 1,
        rejected: vec![Rejection {
            task: 1,
            worker: worker(9).peer_id(),
        }],
        done: false,
        cancelled: false,
        failovers: 0,
        waiting_for_networks: 0,
        replicas_per_task: 2.5,
        spot_checks: 1,
        reopened: 0,
        reputation: vec![WorkerReputation {
            worker: worker(0).peer_id(),
            score: 3,
            agreed: 3,
            disagreed: 0,
            spot_passed: 1,
            spot_failed: 0,
            streak: 4,
            distrusted: false,
        }],
        version: 7,
    }
}

fn signed_results(spec: &JobSpec, w: u8) -> SignedResults {
    let header = spec.header();
    let job = spec.id();
    let results = (0..2u32)
        .map(|task| {
            let (out, outcome) = if task == 0 {
                (b"42".to_vec(), Outcome::Ok)
            } else {
                (Vec::new(), Outcome::Trap(TrapCode::Unreachable))
            };
            let digest = outcome::digest(&outcome, &out);
            let attestation = digest
                .and_then(|d| header.claim(job, task, d))
                .map(|c| c.sign(&worker(w)).signature);
            WorkerResult {
                task,
                outcome,
                output: ByteBuf::from(out),
                digest,
                fuel_used: 12_345,
                wall_us: 678,
                attestation,
                stderr: if task == 1 {
                    ByteBuf::from(b"panicked at src/main.rs".to_vec())
                } else {
                    ByteBuf::new()
                },
            }
        })
        .collect();
    SignedResults::sign(job, results, &worker(w))
}

/// A message and the name of its seed file.
pub type Named<T> = (String, T);

/// Every request and response a node or client sends, built from real
/// signed parts.
pub fn messages() -> (Vec<Named<Request>>, Vec<Named<Response>>) {
    let spec = signed_spec(3, 1);
    let job = spec.id();
    let big = signed_spec(40, 2);
    let adaptive = {
        let inputs = vec![b"a".to_vec(), b"b".to_vec()];
        JobSpec::new(
            fixed_bundle(),
            inputs,
            Some(Policy::adaptive(1e-4, Some(6)).expect("a policy")),
            None,
            3,
        )
        .expect("a spec")
        .sign(submitter())
        .expect("signed")
    };
    let d0 = decided(&spec, 0, b"out 0", 2);
    let d1 = decided(&spec, 1, b"out 1", 3);
    let mut credible = decided(&adaptive, 0, b"a out", 1);
    credible.rule = AcceptRule::Credibility { error: 5e-5 };
    let caps = vec![
        capacity(0, 1_000, None),
        capacity(1, 2_000, Some(Limits::default())),
    ];
    let mut snapshot = JobSnapshot::new(spec.clone());
    snapshot.decided = BTreeMap::from([(0, d0.clone())]);
    let update = JobUpdate {
        decided: vec![d1.clone()],
        cancel: Some(ByteBuf::from(sign_cancel(job, submitter()))),
        failovers: 1,
    };
    let batch = RunTasks {
        job,
        bundle: fixed_bundle().id(),
        coordinator: peer(1).addr,
        limits: spec.limits,
        policy: spec.policy,
        tasks: (0..3)
            .map(|t| Assignment {
                task: t,
                seed: chorus_sdk::job::task_seed(None, job, t),
                input: spec.inputs[t as usize].clone(),
            })
            .collect(),
    };
    let requests: Vec<(&str, Request)> = vec![
        (
            "ring_notify",
            Request::Ring {
                msg: ring::Request::Notify { peer: peer(3) },
                capacity: caps.clone(),
            },
        ),
        (
            "ring_find_successor",
            Request::Ring {
                msg: ring::Request::FindSuccessor {
                    key: RingPos(0x4321_0000_0000_0000),
                },
                capacity: vec![caps[0].clone()],
            },
        ),
        (
            "ring_get_neighbors",
            Request::Ring {
                msg: ring::Request::GetNeighbors,
                capacity: Vec::new(),
            },
        ),
        (
            "ring_ping",
            Request::Ring {
                msg: ring::Request::Ping,
                capacity: Vec::new(),
            },
        ),
        (
            "ring_leave",
            Request::Ring {
                msg: ring::Request::Leave {
                    peer: peer(5),
                    predecessor: Some(peer(4)),
                    successors: vec![peer(6), peer(7)],
                },
                capacity: Vec::new(),
            },
        ),
        ("peers", Request::Peers),
        ("ring_view", Request::RingView),
        ("lookup", Request::Lookup { key: RingPos(77) }),
        ("prove", Request::Prove { nonce: [7; 32] }),
        (
            "submit",
            Request::Job(JobRequest::Submit {
                spec: Box::new(spec.clone()),
                forwarded: false,
            }),
        ),
        (
            "submit_40_tasks",
            Request::Job(JobRequest::Submit {
                spec: Box::new(big.clone()),
                forwarded: true,
            }),
        ),
        (
            "submit_adaptive",
            Request::Job(JobRequest::Submit {
                spec: Box::new(adaptive.clone()),
                forwarded: false,
            }),
        ),
        (
            "status",
            Request::Job(JobRequest::Status {
                job,
                forwarded: false,
            }),
        ),
        (
            "watch",
            Request::Job(JobRequest::Watch {
                job,
                after: 3,
                wait_ms: 5_000,
                forwarded: true,
            }),
        ),
        (
            "results",
            Request::Job(JobRequest::Results {
                job,
                from: 0,
                forwarded: false,
            }),
        ),
        (
            "cancel",
            Request::Job(JobRequest::Cancel {
                job,
                signature: ByteBuf::from(sign_cancel(job, submitter())),
                forwarded: false,
            }),
        ),
        ("held", Request::Job(JobRequest::Held { job, from: 1 })),
        ("run", Request::Job(JobRequest::Run(Box::new(batch)))),
        ("terms", Request::Job(JobRequest::Terms { job })),
        (
            "fetch_bundle",
            Request::Job(JobRequest::FetchBundle {
                bundle: fixed_bundle().id(),
            }),
        ),
        (
            "replicate_full",
            Request::Job(JobRequest::Replicate {
                coordinator: peer(1),
                job,
                copy: JobCopy::Full(Box::new(snapshot.clone())),
            }),
        ),
        (
            "replicate_update",
            Request::Job(JobRequest::Replicate {
                coordinator: peer(1),
                job,
                copy: JobCopy::Update(update),
            }),
        ),
    ];
    let page = ResultsPage {
        status: status(&spec),
        header: Some(Box::new(spec.header())),
        results: vec![
            proved(&d0),
            proved(&d1),
            ProvedResult {
                task: 2,
                result: TaskResult::Failed {
                    reason: "no quorum".into(),
                },
                attestations: Vec::new(),
                rule: AcceptRule::Quorum,
            },
        ],
        next: None,
    };
    let adaptive_page = ResultsPage {
        status: status(&adaptive),
        header: Some(Box::new(adaptive.header())),
        results: vec![proved(&credible)],
        next: Some(1),
    };
    let responses: Vec<(&str, Response)> = vec![
        (
            "ring_neighbors",
            Response::Ring {
                msg: ring::Response::Neighbors {
                    me: peer(5),
                    predecessor: Some(peer(4)),
                    successors: vec![peer(6), peer(7)],
                },
                capacity: caps.clone(),
            },
        ),
        (
            "ring_find_successor_done",
            Response::Ring {
                msg: ring::Response::FindSuccessor(ring::Step::Done { owner: peer(6) }),
                capacity: Vec::new(),
            },
        ),
        (
            "ring_find_successor_next",
            Response::Ring {
                msg: ring::Response::FindSuccessor(ring::Step::Next {
                    candidates: vec![peer(8), peer(9)],
                }),
                capacity: Vec::new(),
            },
        ),
        (
            "ring_ack",
            Response::Ring {
                msg: ring::Response::Ack,
                capacity: vec![caps[1].clone()],
            },
        ),
        (
            "peers",
            Response::Peers(PeerList {
                records: caps.clone(),
            }),
        ),
        (
            "ring_view",
            Response::RingView(RingView {
                me: peer(4),
                predecessor: Some(peer(3)),
                successors: vec![peer(5), peer(6)],
                fingers: vec![peer(5), peer(8), peer(12)],
            }),
        ),
        (
            "lookup",
            Response::Lookup(LookupAnswer {
                key: RingPos(77),
                owner: peer(1),
                hops: 2,
            }),
        ),
        (
            "proof",
            Response::Proof {
                public_key: worker(0).public_key(),
                signature: ByteBuf::from(
                    worker(0)
                        .sign(&chorus_sdk::attest::member_message(
                            &[7; 32],
                            &worker(0).public_key(),
                        ))
                        .to_vec(),
                ),
            },
        ),
        (
            "error_busy",
            Response::Error(WireError::new(ErrorKind::Busy, "no room")),
        ),
        (
            "error_unknown_kind",
            Response::Error(WireError::new("from_the_future", "a newer node")),
        ),
        (
            "accepted",
            Response::Job(JobResponse::Accepted {
                job,
                coordinator: peer(1),
            }),
        ),
        (
            "status",
            Response::Job(JobResponse::Status(Box::new(status(&spec)))),
        ),
        (
            "results",
            Response::Job(JobResponse::Results(Box::new(page))),
        ),
        (
            "results_adaptive",
            Response::Job(JobResponse::Results(Box::new(adaptive_page))),
        ),
        (
            "ran",
            Response::Job(JobResponse::Ran(Box::new(signed_results(&spec, 0)))),
        ),
        (
            "bundle",
            Response::Job(JobResponse::Bundle(ByteBuf::from(
                fixed_bundle().encode().expect("encodes"),
            ))),
        ),
        ("need_spec", Response::Job(JobResponse::NeedSpec)),
        (
            "terms",
            Response::Job(JobResponse::Terms {
                header: Box::new(spec.header()),
                signature: spec.signature.clone(),
            }),
        ),
        ("ok", Response::Job(JobResponse::Ok)),
    ];
    (
        requests
            .into_iter()
            .map(|(n, r)| (n.to_string(), r))
            .collect(),
        responses
            .into_iter()
            .map(|(n, r)| (n.to_string(), r))
            .collect(),
    )
}

fn named<T: Serialize>(v: &T) -> Vec<u8> {
    rmp_serde::to_vec_named(v).expect("encodes")
}

/// Every seed of every target.
pub fn all() -> Vec<Seed> {
    let mut out: Vec<Seed> = Vec::new();
    let (requests, responses) = messages();
    for (name, r) in &requests {
        out.push(("request", name.clone(), named(r)));
        out.push((
            "frame",
            format!("request_{name}"),
            frame::encode(r, JOB_FRAME_CAP).expect("a frame"),
        ));
    }
    for (name, r) in &responses {
        out.push(("response", name.clone(), named(r)));
        out.push((
            "frame",
            format!("response_{name}"),
            frame::encode(r, JOB_FRAME_CAP).expect("a frame"),
        ));
    }

    // Bundles: the fixed one, one with a seed and no args, a larger module.
    out.push((
        "bundle",
        "fixed".into(),
        fixed_bundle().encode().expect("encodes"),
    ));
    {
        let mut m = chorus_sdk::bundle::Manifest::new("primes", "0.3.1", [0; 32]);
        m.seed = Some(99);
        m.replicas = 5;
        m.quorum = 3;
        let b = chorus_sdk::bundle::Bundle::sign(m, MODULE.to_vec(), &worker(3)).expect("signs");
        out.push(("bundle", "seeded".into(), b.encode().expect("encodes")));
        let mut module = MODULE.to_vec();
        module.extend((0..600u32).map(|i| (i % 251) as u8));
        let mut m = chorus_sdk::bundle::Manifest::new("mandelbrot", "", [0; 32]);
        m.args = vec!["--width".into(), "64".into()];
        m.limits.fuel = 1_000_000;
        let b = chorus_sdk::bundle::Bundle::sign(m, module, submitter()).expect("signs");
        out.push(("bundle", "args_limits".into(), b.encode().expect("encodes")));
    }

    // Job specs.
    let spec = signed_spec(3, 1);
    out.push(("job_spec", "three_tasks".into(), named(&spec)));
    out.push(("job_spec", "forty_tasks".into(), named(&signed_spec(40, 2))));
    out.push((
        "job_spec",
        "unsigned".into(),
        named(&JobSpec {
            signature: ByteBuf::new(),
            ..signed_spec(1, 3)
        }),
    ));

    // Capacity records.
    out.push(("capacity", "fresh".into(), named(&capacity(0, 1_000, None))));
    out.push((
        "capacity",
        "with_ceiling".into(),
        named(&capacity(1, 10, Some(Limits::default()))),
    ));
    out.push((
        "capacity",
        "expired".into(),
        named(&capacity(2, 3_600_000, None)),
    ));

    // Attestations: results as a client checks them.
    let job = spec.id();
    for (name, d) in [
        ("quorum_two", decided(&spec, 0, b"out 0", 2)),
        ("quorum_three", decided(&spec, 2, b"out 2", 3)),
        ("one_signer", decided(&spec, 1, b"out 1", 1)),
    ] {
        let case = AttestCase {
            job,
            header: spec.header(),
            result: proved(&d),
        };
        out.push(("attest", name.into(), named(&case)));
    }

    // Proof files, as `chorus submit` writes them, with their outputs.
    for (name, task, output, signers) in [
        ("task0", 0u32, &b"out 0"[..], 2u8),
        ("task1", 1, &b"out 1"[..], 3),
    ] {
        let d = decided(&spec, task, output, signers);
        let p = Proof::new(
            job,
            &spec.header(),
            task,
            &Outcome::Ok,
            output,
            &d.attestations,
            d.rule,
        )
        .expect("a proof");
        let mut bytes = (output.len() as u16).to_be_bytes().to_vec();
        bytes.extend_from_slice(output);
        bytes.extend_from_slice(&p.to_json());
        out.push(("proof", name.into(), bytes));
    }

    // Certificates as the node makes them (rcgen, self-signed Ed25519).
    for (name, id) in [
        ("client", submitter().clone_identity()),
        ("worker", worker(0)),
    ] {
        let (cert, _) = chorus_sdk::tls::certificate(&id).expect("a certificate");
        out.push(("tls_cert", name.into(), cert.to_vec()));
    }

    // Job-store records: kind byte, then (decided: the 4-byte key) the value.
    let record = |kind: u8, key: Option<u32>, value: Vec<u8>| {
        let mut v = vec![kind];
        if let Some(k) = key {
            v.extend_from_slice(&k.to_be_bytes());
        }
        v.extend_from_slice(&value);
        v
    };
    out.push((
        "store",
        "spec".into(),
        record(0, None, stored::encode_spec(&spec).expect("encodes")),
    ));
    out.push((
        "store",
        "flags_cancelled".into(),
        record(
            1,
            None,
            JobFlags {
                cancel: Some(ByteBuf::from(sign_cancel(job, submitter()))),
                failovers: 2,
            }
            .encode()
            .expect("encodes"),
        ),
    ));
    out.push((
        "store",
        "flags_default".into(),
        record(1, None, JobFlags::default().encode().expect("encodes")),
    ));
    let d = decided(&spec, 1, b"out 1", 2);
    out.push((
        "store",
        "decided".into(),
        record(2, Some(1), stored::encode_task(&d).expect("encodes")),
    ));
    let mut trust = Reputation::<PeerId>::default();
    for n in 0..3 {
        trust.record_agree(&worker(n).peer_id(), NOW_MS);
    }
    trust.record_disagree(&worker(9).peer_id(), NOW_MS);
    trust.record_spot_check(&worker(1).peer_id(), true, NOW_MS + 5);
    out.push((
        "store",
        "trust".into(),
        record(3, None, stored::encode_trust(&trust).expect("encodes")),
    ));

    // The ring: scripts of what a joined node sees.
    let scripts: Vec<(&str, Vec<RingStep>)> = vec![
        (
            "stabilize",
            vec![
                RingStep::Tick { ms: 600 },
                RingStep::Response {
                    nth: 0,
                    msg: ring::Response::Neighbors {
                        me: peer(5),
                        predecessor: Some(peer(4)),
                        successors: vec![peer(6), peer(7), peer(9)],
                    },
                },
                RingStep::Tick { ms: 600 },
                RingStep::Response {
                    nth: 1,
                    msg: ring::Response::Ack,
                },
            ],
        ),
        (
            "lookup",
            vec![
                RingStep::Lookup {
                    key: 0xa000_0000_0000_0000,
                },
                RingStep::Response {
                    nth: 0,
                    msg: ring::Response::FindSuccessor(ring::Step::Next {
                        candidates: vec![peer(9), peer(10)],
                    }),
                },
                RingStep::Response {
                    nth: 0,
                    msg: ring::Response::FindSuccessor(ring::Step::Done { owner: peer(10) }),
                },
                RingStep::Tick { ms: 100 },
            ],
        ),
        (
            "requests",
            vec![
                RingStep::Request {
                    from: peer(2).id.0,
                    msg: ring::Request::Notify { peer: peer(2) },
                },
                RingStep::Request {
                    from: peer(9).id.0,
                    msg: ring::Request::FindSuccessor {
                        key: RingPos(0x5800_0000_0000_0000),
                    },
                },
                RingStep::Request {
                    from: peer(5).id.0,
                    msg: ring::Request::Leave {
                        peer: peer(5),
                        predecessor: Some(peer(4)),
                        successors: vec![peer(6), peer(7)],
                    },
                },
                RingStep::Tick { ms: 1_200 },
                RingStep::Fail { nth: 0 },
                RingStep::Request {
                    from: 1,
                    msg: ring::Request::Ping,
                },
            ],
        ),
    ];
    for (name, steps) in scripts {
        out.push(("ring", name.into(), named(&steps)));
    }
    out
}

/// Cloning an identity through its PKCS#8 document.
trait CloneIdentity {
    fn clone_identity(&self) -> Identity;
}

impl CloneIdentity for Identity {
    fn clone_identity(&self) -> Identity {
        Identity::from_pkcs8(self.pkcs8()).expect("its own key")
    }
}

#[cfg(test)]
mod tests {
    use chorus_sdk::bundle::Bundle;
    use chorus_sdk::wire::{JobResponse, Response};

    use super::*;

    /// The seeds carry valid signatures and proofs, so that the fuzzers
    /// start past the checks and mutate from there.
    #[test]
    fn the_seeds_pass_the_checks() {
        let spec = signed_spec(3, 1);
        assert!(spec.verify().is_ok());
        assert!(
            capacity(0, 1_000, None)
                .verify(NOW_MS, crate::MAX_AGE_MS)
                .is_ok()
        );
        let d = decided(&spec, 1, b"out 1", 2);
        assert_eq!(
            proved(&d).check(spec.id(), &spec.header()).unwrap().len(),
            2
        );
        let b = Bundle::decode(&fixed_bundle().encode().unwrap()).unwrap();
        assert!(b.verify_as(&fixed_bundle().id()).is_ok());
        let (_, responses) = messages();
        let terms = responses.iter().find(|(n, _)| n == "terms").unwrap();
        let Response::Job(JobResponse::Terms { header, signature }) = &terms.1 else {
            panic!("not terms");
        };
        assert!(
            header
                .verify_signed(header.id(), fixed_bundle(), signature)
                .is_ok()
        );
        let signed = signed_results(&spec, 0);
        assert!(signed.verify(&worker(0).peer_id()));
        for (target, name, bytes) in all() {
            if target == "proof" {
                let len = usize::from(u16::from_be_bytes([bytes[0], bytes[1]]));
                let p = Proof::from_json(&bytes[2 + len..]).unwrap();
                assert!(p.check(&bytes[2..2 + len]).is_ok(), "{name}");
            }
            if target == "tls_cert" {
                assert!(chorus_sdk::tls::peer_id_of(&bytes).is_some(), "{name}");
            }
        }
    }
}
