//! The messages nodes and clients exchange, one request and one response per stream.
//!
//! This module holds the two dispatch enums, [`Request`] (with its [`Response`])
//! and the job sub-protocol inside it, [`JobRequest`] (with its [`JobResponse`]),
//! which carries client, worker and backup traffic. The payloads live in one
//! file per concern and are re-exported here; none of those files imports this
//! one, so the module graph runs one way (see the crate's "Layout").

use std::net::SocketAddr;

use chorus_core::RingPos;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::blob::BlobId;
use crate::bundle::BundleId;
use crate::capacity::SignedCapacity;
use crate::job::{JobHeader, JobId, JobSpec};

mod error;
mod jobs;
mod replica;
mod ring;
mod work;

pub use self::error::{ErrorKind, WireError};
pub use self::jobs::{
    JobStatus, MAX_WATCH_MS, ProvedResult, Rejection, ResultProofError, ResultsPage, TaskResult,
    TaskState, WorkerReputation,
};
pub use self::replica::{DecidedTask, JobCopy, JobSnapshot, JobUpdate};
pub use self::ring::{LookupAnswer, MAX_GOSSIP, Peer, PeerList, RingView};
pub use self::work::{
    Assignment, MAX_BATCH_TASKS, RunTasks, STDERR_SHIPPED, SignedResults, WorkerResult,
};

/// A request on one bidirectional stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Ring maintenance and lookup steps between nodes, with capacity records
    /// riding along (the sender's own first).
    Ring {
        /// The ring message.
        msg: chorus_core::ring::Request<SocketAddr>,
        /// Signed capacity records (at most [`MAX_GOSSIP`]).
        capacity: Vec<SignedCapacity>,
    },
    /// The capacity records this node knows (for `chorus peers`).
    Peers,
    /// Jobs: submission, progress, results, work and replication.
    Job(JobRequest),
    /// This node's view of the ring (for `chorus ring`).
    RingView,
    /// Resolve the owner of a key with an iterative lookup started at this node.
    Lookup {
        /// The ring position to resolve.
        key: RingPos,
    },
    /// Prove you hold your key: sign this nonce
    /// ([`crate::attest::member_message`]). Clients and backups ask it of
    /// a worker whose attestation they have not seen before, at the address a
    /// lookup of the worker's ring position returned.
    Prove {
        /// The challenger's random nonce.
        #[serde(with = "serde_bytes")]
        nonce: [u8; 32],
    },
}

/// The answer to a [`Request`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// Answer to [`Request::Ring`], with capacity records riding along (the
    /// responder's own first).
    Ring {
        /// The ring message.
        msg: chorus_core::ring::Response<SocketAddr>,
        /// Signed capacity records (at most [`MAX_GOSSIP`]).
        capacity: Vec<SignedCapacity>,
    },
    /// Answer to [`Request::Peers`].
    Peers(PeerList),
    /// Answer to [`Request::Job`].
    Job(JobResponse),
    /// Answer to [`Request::RingView`].
    RingView(RingView),
    /// Answer to [`Request::Lookup`].
    Lookup(LookupAnswer),
    /// Answer to [`Request::Prove`].
    Proof {
        /// The node's Ed25519 public key.
        #[serde(with = "serde_bytes")]
        public_key: [u8; 32],
        /// Its signature over [`crate::attest::member_message`].
        signature: ByteBuf,
    },
    /// The request was refused or failed; nothing changed on the node.
    Error(WireError),
}

/// Job traffic: client requests (forwarded to the coordinator) and node-to-node work.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum JobRequest {
    /// Submit a job. Answered with [`JobResponse::Accepted`] once the
    /// coordinator stored it.
    Submit {
        /// The job.
        spec: Box<JobSpec>,
        /// Set by the node that forwards it to the coordinator, which then
        /// takes it without forwarding again.
        forwarded: bool,
    },
    /// A job's progress.
    Status {
        /// The job.
        job: JobId,
        /// As in `Submit`.
        forwarded: bool,
    },
    /// A job's progress once it has changed: answered with
    /// [`JobResponse::Status`] as soon as the job's `version` differs from
    /// `after` (at once when it already does, or the job is done), or after
    /// `wait_ms` (at most [`MAX_WATCH_MS`]) with the status as it is.
    /// Progress is pushed, not polled.
    Watch {
        /// The job.
        job: JobId,
        /// The last version the client saw.
        after: u64,
        /// How long to wait for a change, in ms.
        wait_ms: u64,
        /// As in `Submit`.
        forwarded: bool,
    },
    /// Final results of tasks `from..` (as many as fit in a page).
    Results {
        /// The job.
        job: JobId,
        /// First task index wanted.
        from: u32,
        /// As in `Submit`.
        forwarded: bool,
    },
    /// Cancel a job; signed by its submitter ([`sign_cancel`](crate::job::sign_cancel)).
    Cancel {
        /// The job.
        job: JobId,
        /// The submitter's signature.
        signature: ByteBuf,
        /// As in `Submit`.
        forwarded: bool,
    },
    /// Final results of tasks `from..` as this node holds them, as the job's
    /// coordinator or as one of its backups, with their attestations; never
    /// forwarded. How a client gets its results past a coordinator or a
    /// forwarder that lies: every result carries its own proof, so any
    /// holder may serve it. Answered with [`JobResponse::Results`] or
    /// `unknown_job`.
    Held {
        /// The job.
        job: JobId,
        /// First task index wanted.
        from: u32,
    },
    /// Coordinator to worker: run these tasks. A worker runs a batch only
    /// for a job whose signed terms it holds (it asks the sender with
    /// [`JobRequest::Terms`] first), only tasks that match them, and at most
    /// [`MAX_BATCH_TASKS`] at once.
    Run(Box<RunTasks>),
    /// Worker to the sender of a batch: the signed terms of `job`. Answered
    /// by the job's coordinator or a backup holding it with
    /// [`JobResponse::Terms`], else `unknown_job`; never forwarded.
    Terms {
        /// The job.
        job: JobId,
    },
    /// Worker to coordinator: the bundle of a job it was given.
    FetchBundle {
        /// The bundle.
        bundle: BundleId,
    },
    /// Coordinator to its successors: keep a copy of this job.
    Replicate {
        /// The coordinator sending the copy (asked whether it is alive before
        /// a backup takes the job over).
        coordinator: Peer,
        /// The job.
        job: JobId,
        /// The whole job, or what changed.
        copy: JobCopy,
    },
    /// The index of a blob this node holds ([`crate::blob`]): answered with
    /// [`JobResponse::BlobIndex`] or `unknown_blob`; never forwarded. The
    /// asker checks that it hashes to `blob`.
    BlobIndex {
        /// The blob.
        blob: BlobId,
    },
    /// One chunk of a blob this node holds: answered with
    /// [`JobResponse::Chunk`] or `unknown_blob`; never forwarded. The asker
    /// checks it against the blob's index.
    Chunk {
        /// The blob.
        blob: BlobId,
        /// The chunk's index.
        index: u32,
    },
    /// Client to its entry node: I will upload this blob. `index` is the
    /// blob's canonical [`BlobIndex`](crate::blob::BlobIndex) encoding. The
    /// node reserves room for it (or answers `blob_store_full`) and answers
    /// [`JobResponse::Missing`] with the chunks it still lacks.
    PutBlob {
        /// The canonical index encoding.
        index: ByteBuf,
    },
    /// Client to its entry node: one chunk of a blob announced with
    /// [`JobRequest::PutBlob`], checked against its index before it is
    /// stored. Answered with [`JobResponse::Missing`].
    PutChunk {
        /// The blob.
        blob: BlobId,
        /// The chunk's index.
        index: u32,
        /// Its bytes.
        bytes: ByteBuf,
    },
}

/// Answers to [`JobRequest`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum JobResponse {
    /// The coordinator stored the job.
    Accepted {
        /// The job's id.
        job: JobId,
        /// The coordinator.
        coordinator: Peer,
    },
    /// A job's progress.
    Status(Box<JobStatus>),
    /// A page of results.
    Results(Box<ResultsPage>),
    /// The worker ran the batch. (A worker with no room answers
    /// [`crate::wire::ErrorKind::Busy`].)
    Ran(Box<SignedResults>),
    /// The bundle asked for, in its canonical encoding.
    Bundle(ByteBuf),
    /// The backup needs the full spec before it can take the update.
    NeedSpec,
    /// Answer to [`JobRequest::Terms`]: the job's header (its hash is the
    /// job id) and the submitter's signature over the job id
    /// ([`JobSpec::signature`]), checked by the worker with
    /// [`JobHeader::verify_signed`].
    Terms {
        /// The job's header.
        header: Box<JobHeader>,
        /// The submitter's signature over the job id.
        signature: ByteBuf,
    },
    /// Done.
    Ok,
    /// Answer to [`JobRequest::BlobIndex`]: the canonical index encoding.
    BlobIndex(ByteBuf),
    /// Answer to [`JobRequest::Chunk`]: the chunk's bytes.
    Chunk(ByteBuf),
    /// Answer to [`JobRequest::PutBlob`] and [`JobRequest::PutChunk`]: the
    /// chunks of `blob` the node still lacks (empty: it holds the blob whole).
    Missing {
        /// The blob.
        blob: BlobId,
        /// How many chunks are still missing.
        count: u32,
        /// The first of them (at most [`MAX_MISSING_LISTED`]), in order.
        first: Vec<u32>,
    },
}

/// The most missing chunk indices one [`JobResponse::Missing`] lists.
pub const MAX_MISSING_LISTED: usize = 1024;

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chorus_core::jobs::Policy;
    use chorus_core::ring;
    use serde_bytes::ByteBuf;

    use super::*;
    use crate::attest::Attestation;
    use crate::bundle::{BundleId, Limits};
    use crate::capacity::CapacityRecord;
    use crate::identity::PeerId;
    use crate::job::{
        Assignment, DecidedTask, JobCopy, JobId, JobSnapshot, JobSpec, JobStatus, JobUpdate,
        Rejection, ResultsPage, RunTasks, SignedResults, TaskResult, WorkerReputation,
        WorkerResult,
    };
    use crate::outcome::{Outcome, TrapCode};

    fn peer(n: u64) -> Peer {
        Peer {
            id: RingPos(n),
            addr: ([10, 0, 0, n as u8], 7000 + n as u16).into(),
        }
    }

    fn bytes(b: &[u8]) -> ByteBuf {
        ByteBuf::from(b.to_vec())
    }

    fn spec() -> JobSpec {
        JobSpec {
            bundle: bytes(b"bundle"),
            inputs: vec![bytes(b"in0"), bytes(b"in1")],
            policy: Policy {
                replicas: 3,
                quorum: 2,
                max_replicas: 6,
                verify: chorus_core::jobs::Verify::Adaptive,
                max_error: 1e-4,
            },
            limits: Limits::default(),
            nonce: 42,
            signature: bytes(&[15; 64]),
        }
    }

    fn status() -> JobStatus {
        JobStatus {
            job: JobId(RingPos(9)),
            coordinator: peer(1),
            tasks: 4,
            pending: 1,
            running: 1,
            verified: 1,
            failed: 1,
            replicas_run: 7,
            disagreements: 1,
            rejected: vec![Rejection {
                task: 2,
                worker: PeerId([3; 32]),
            }],
            done: false,
            cancelled: false,
            failovers: 1,
            waiting_for_networks: 0,
            replicas_per_task: 0.0,
            spot_checks: 0,
            reopened: 0,
            reputation: vec![WorkerReputation {
                worker: PeerId([4; 32]),
                score: -9,
                agreed: 1,
                disagreed: 1,
                spot_passed: 0,
                spot_failed: 0,
                streak: 0,
                distrusted: true,
            }],
            version: 5,
        }
    }

    fn decided() -> DecidedTask {
        DecidedTask {
            task: 1,
            result: TaskResult::Error {
                outcome: Outcome::Trap(TrapCode::Unreachable),
                output: ByteBuf::new(),
                stderr: ByteBuf::from(b"cannot decode".to_vec()),
            },
            agreeing: vec![PeerId([5; 32])],
            disagreeing: vec![PeerId([6; 32])],
            votes: 3,
            attestations: vec![Attestation {
                worker: [16; 32],
                signature: bytes(&[17; 64]),
            }],
            rule: crate::attest::AcceptRule::Credibility { error: 5e-5 },
        }
    }

    /// One of every top-level message and of every job message inside them.
    fn messages() -> (Vec<Request>, Vec<Response>) {
        let job = JobId(RingPos(9));
        let capacity = vec![SignedCapacity {
            record: CapacityRecord {
                public_key: [7; 32],
                addr: peer(2).addr,
                metrics_addr: Some(([127, 0, 0, 1], 9100).into()),
                cores: 4,
                memory_mb: 2048,
                free_slots: 3,
                fuel_per_sec: 1_000_000,
                version: "0.1.0".into(),
                timestamp_ms: 1_700_000_000_000,
                ceiling: None,
            },
            signature: vec![8; 64],
        }];
        let job_requests = vec![
            JobRequest::Submit {
                spec: Box::new(spec()),
                forwarded: true,
            },
            JobRequest::Status {
                job,
                forwarded: false,
            },
            JobRequest::Watch {
                job,
                after: 3,
                wait_ms: 250,
                forwarded: true,
            },
            JobRequest::Results {
                job,
                from: 2,
                forwarded: false,
            },
            JobRequest::Cancel {
                job,
                signature: bytes(&[9; 64]),
                forwarded: false,
            },
            JobRequest::Run(Box::new(RunTasks {
                job,
                bundle: BundleId([10; 32]),
                coordinator: peer(1).addr,
                limits: Limits::default(),
                policy: spec().policy,
                tasks: vec![Assignment {
                    task: 0,
                    seed: 11,
                    input: bytes(b"in0"),
                }],
            })),
            JobRequest::FetchBundle {
                bundle: BundleId([10; 32]),
            },
            JobRequest::Held { job, from: 3 },
            JobRequest::Terms { job },
            JobRequest::Replicate {
                coordinator: peer(1),
                job,
                copy: JobCopy::Full(Box::new(JobSnapshot {
                    spec: spec(),
                    decided: BTreeMap::from([(1, decided())]),
                    cancel: None,
                    failovers: 2,
                })),
            },
            JobRequest::Replicate {
                coordinator: peer(1),
                job,
                copy: JobCopy::Update(JobUpdate {
                    decided: vec![decided()],
                    cancel: Some(bytes(&[18; 64])),
                    failovers: 2,
                }),
            },
            JobRequest::BlobIndex {
                blob: BlobId([24; 32]),
            },
            JobRequest::Chunk {
                blob: BlobId([24; 32]),
                index: 7,
            },
            JobRequest::PutBlob {
                index: bytes(b"CBI1index"),
            },
            JobRequest::PutChunk {
                blob: BlobId([24; 32]),
                index: 7,
                bytes: bytes(b"chunk"),
            },
        ];
        let job_responses = vec![
            JobResponse::Accepted {
                job,
                coordinator: peer(1),
            },
            JobResponse::Status(Box::new(status())),
            JobResponse::Results(Box::new(ResultsPage {
                status: status(),
                header: Some(Box::new(spec().header())),
                results: vec![
                    ProvedResult {
                        task: 0,
                        result: TaskResult::Output(bytes(b"out")),
                        attestations: decided().attestations,
                        rule: crate::attest::AcceptRule::Credibility { error: 5e-5 },
                    },
                    ProvedResult {
                        task: 1,
                        result: TaskResult::Failed {
                            reason: "no quorum".into(),
                        },
                        attestations: Vec::new(),
                        rule: crate::attest::AcceptRule::Quorum,
                    },
                ],
                next: Some(2),
            })),
            JobResponse::Ran(Box::new(SignedResults {
                worker: [12; 32],
                job,
                results: vec![WorkerResult {
                    task: 0,
                    outcome: Outcome::Exit(3),
                    output: bytes(b"out"),
                    digest: Some([13; 32]),
                    fuel_used: 100,
                    wall_us: 50,
                    attestation: Some(bytes(&[19; 64])),
                    stderr: bytes(b"err"),
                }],
                signature: bytes(&[14; 64]),
            })),
            JobResponse::Bundle(bytes(b"bundle")),
            JobResponse::NeedSpec,
            JobResponse::Ok,
            JobResponse::Terms {
                header: Box::new(spec().header()),
                signature: bytes(&[23; 64]),
            },
            JobResponse::BlobIndex(bytes(b"CBI1index")),
            JobResponse::Chunk(bytes(b"chunk")),
            JobResponse::Missing {
                blob: BlobId([24; 32]),
                count: 2,
                first: vec![3, 7],
            },
        ];
        let mut requests = vec![
            Request::Ring {
                msg: ring::Request::Notify { peer: peer(3) },
                capacity: capacity.clone(),
            },
            Request::Ring {
                msg: ring::Request::Merge {
                    peers: vec![peer(4), peer(5)],
                },
                capacity: capacity.clone(),
            },
            Request::Peers,
            Request::RingView,
            Request::Lookup { key: RingPos(77) },
            Request::Prove { nonce: [20; 32] },
        ];
        requests.extend(job_requests.into_iter().map(Request::Job));
        let mut responses = vec![
            Response::Ring {
                msg: ring::Response::Neighbors {
                    me: peer(1),
                    predecessor: Some(peer(0)),
                    successors: vec![peer(2), peer(3)],
                },
                capacity: capacity.clone(),
            },
            Response::Peers(PeerList { records: capacity }),
            Response::RingView(RingView {
                me: peer(1),
                predecessor: None,
                successors: vec![peer(2)],
                fingers: vec![peer(2), peer(3)],
            }),
            Response::Lookup(LookupAnswer {
                key: RingPos(77),
                owner: peer(3),
                hops: 2,
            }),
            Response::Proof {
                public_key: [21; 32],
                signature: bytes(&[22; 64]),
            },
            Response::Error(WireError::new(ErrorKind::Busy, "full")),
            Response::Error(WireError::new("rate_limited", "later")),
        ];
        responses.extend(job_responses.into_iter().map(Response::Job));
        (requests, responses)
    }

    /// SHA-256 of each message as the frame codec encodes it (named fields).
    /// Recorded again when attestations, signed specs, `Held` and `Prove`
    /// changed the protocol on purpose (`Terms` added two, the rest kept; the
    /// ring's `Merge` added one, second, the rest kept; blobs added four
    /// job requests and three job responses, the rest kept); moving types between modules must
    /// not change a byte on the wire.
    const GOLDEN: &[&str] = &[
        "47963f838bd33d0f63bf180089d804e5d2226fb28a897bc778c6219a936c4749",
        "6cf3eaa12cb3dcf973f11badef143753454b321e219356a8cfd37678446e09ec",
        "56cd301c5eaf490ea69dc9e5e7eeefa56171f4e9fda7f749a089fc2c6df25be0",
        "12f52dcd2f80a53596e19daa1454224db244fb611457aa6a845515af3caa4adc",
        "06e7f1781b5f2573de5a6c30cefcc44b979e6322c2b8b3a262459965a3f4183e",
        "7a21653b69f3180d8b6a3720e541d423f61af1ccf878a550bcae7debe957994f",
        "39eb72b8516bc291a0205ac372ea304674d5b358fa926ffeb2799634047cd638",
        "37f2c0116a9db5b800c68eb2f27f4f6445c1c2f8b54b82208ee2881acc7e2d37",
        "963b620282de26b2a98f3b17e7dcbfa60e805fe6b8921ee734aba00303e50756",
        "383c20706935bb51b422b0360e03e482dbde86272f7b8ba9c11a7c9fbfcd7700",
        "efba8a0ecdb75c9b4d77ca0602a3a36177dc8310fa610576032e9427927094ef",
        "94fc1bb0c6ef397aa2228b2f13539801fb8911b856d5d752419573746e4b6269",
        "c20c8385c8155430adde52b3c9185cf08dda3b754e0be52853836832d28b9fb2",
        "029e30f561dddc8e3fd457d44026969051d87f4ffe30d52b59636eb5077eb5ba",
        "d4064838f3a77e406a9c99a70314680ff4a7002770fac6f8feb0215bcbc104c8",
        "4d5cb447bd55e1b88326de10b6d50250ad819aedb72968b334afa44153e6bef6",
        "b3bf4f0299af955ea121dc6a6ad7f1d49716bd636af67dcc02f7ddb74e4bc3cf",
        "bf091430f683c4766710e3814515bcb7a6050ad8f84231f78d5fb903c2df8135",
        "61cebd9c520201a3323655f446b0fd09f2565f725b54abbe05a9673e8dcac380",
        "14907964c75b9acec689e26efbfe9e3c2b3b5f2ff95e3ab1304a30d683c8b159",
        "9cb61f140a9aaca308a53d267706e4ab68548dbc98fe3a3195a10b77163b4a04",
        "d6894140a99cf66875fbd7c1f7f1f60e2e69c1be057574fd16389070126c7942",
        "64703eab4cc78927375fbd9849bb59e6ad6706d48d68e9e6e74f965ca0da8195",
        "cb3a44b104fd281d2072710353f5afa55bfd6db3dc7c177df56602c3478fb3fd",
        "b9a19745fd806e59ab8f6937d5fd038ce75582581187d3dbdfbc74ca41e8e70a",
        "0ae1f8fcd45064e41eae63148f26d9f29f231d8961fa0d03732458226951560a",
        "0a90b738af7784d0d6234db77cf41854f721af159f4983686aa172800b822fcc",
        "18e3e52ffa8702b0ffd75a24ca4785b6dd42a6a539ff7e0fd3858fc5dd19ba27",
        "97037debd6a98cc1c28c1b4f97a5bc10645c624ff89166f7ec66d8a8fdf1dfa8",
        "484fc6fea91cdb76937101b3326e8c1ce8843130ceb88c19599971f755e42b92",
        "33d2d8f27fdd63d9b3604ec3bff1eab4ff66fd247673a1c750cb5935fd33e5a7",
        "0de506fd4e8263a0f75c7b83d99ecd58946df04203968e4f8e3326ead3abc958",
        "03f75a551c09853c5b95385bc0a025132dc788c78a56fc640b759763b5c664cc",
        "6599577241c02a3686d6785207a990c2593186f902d483cb0c9ea8e34a06f276",
        "cbada10028532b4c0488fa786d99161d2a6de1bb59ddf3158519b77f7deece82",
        "ec1c77a2e2f5415b410de7587756212ecf82ae23596ef150f2d887a3c7a03525",
        "bd4e6f4e1f8bede09fe231f913c1339e383d4f4e2103efde5de75f6d11ab00be",
        "f73c39054b10315e6d42db0eb339f4ef42156a6f193ca138ac1307977ae3abc2",
        "c80774606ce43b0061b66e1f3caa239510a775cd2c0ed92bd94be7e0c4a069c2",
    ];

    #[test]
    fn the_wire_format_does_not_change() {
        let (requests, responses) = messages();
        let mut got = Vec::new();
        for r in &requests {
            let bytes = rmp_serde::to_vec_named(r).unwrap();
            assert_eq!(&rmp_serde::from_slice::<Request>(&bytes).unwrap(), r);
            got.push(hex::encode(crate::job::sha256(&bytes)));
        }
        for r in &responses {
            let bytes = rmp_serde::to_vec_named(r).unwrap();
            assert_eq!(&rmp_serde::from_slice::<Response>(&bytes).unwrap(), r);
            got.push(hex::encode(crate::job::sha256(&bytes)));
        }
        assert_eq!(got, GOLDEN, "the wire format changed");
    }
}
