//! The messages nodes and clients exchange, one request and one response per stream.

use std::net::SocketAddr;

use chorus_core::RingPos;
use chorus_core::ring;
use serde::{Deserialize, Serialize};

use crate::capacity::SignedCapacity;
use crate::job::{JobRequest, JobResponse, PeerList};

/// Most capacity records carried by one ring message.
pub const MAX_GOSSIP: usize = 8;

/// A peer as the wire names it: ring position and address.
pub type Peer = ring::Peer<SocketAddr>;

/// A request on one bidirectional stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Ring maintenance and lookup steps between nodes, with capacity records
    /// riding along (the sender's own first).
    Ring {
        /// The ring message.
        msg: ring::Request<SocketAddr>,
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
}

/// The answer to a [`Request`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// Answer to [`Request::Ring`], with capacity records riding along (the
    /// responder's own first).
    Ring {
        /// The ring message.
        msg: ring::Response<SocketAddr>,
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
    /// The request was refused or failed; nothing changed on the node.
    Error(WireError),
}

/// A node's view of the ring.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RingView {
    /// The node itself.
    pub me: Peer,
    /// Its predecessor, if known.
    pub predecessor: Option<Peer>,
    /// Its successor list, nearest first.
    pub successors: Vec<Peer>,
    /// Distinct finger entries in finger order.
    pub fingers: Vec<Peer>,
}

/// The result of a lookup.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LookupAnswer {
    /// The key looked up.
    pub key: RingPos,
    /// The live node that owns it.
    pub owner: Peer,
    /// Remote lookup steps taken.
    pub hops: u32,
}

/// An error reported to the peer on the stream that caused it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct WireError {
    /// What went wrong, as a typed kind with a stable string form.
    pub kind: ErrorKind,
    /// Human-readable detail.
    pub message: String,
}

impl WireError {
    /// A new error of `kind`.
    pub fn new(kind: impl Into<ErrorKind>, message: impl Into<String>) -> Self {
        WireError {
            kind: kind.into(),
            message: message.into(),
        }
    }
}

/// The kinds of [`WireError`]. On the wire (and in metrics labels) each is
/// its stable snake_case name ([`ErrorKind::as_str`]); a name this version
/// does not know decodes as [`ErrorKind::Other`], so newer peers can add
/// kinds without breaking older ones.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum ErrorKind {
    /// A frame whose body does not decode.
    Malformed,
    /// A frame over its size cap.
    Oversized,
    /// A stream that ended inside a frame.
    Truncated,
    /// A stream error.
    Stream,
    /// A request not delivered whole in time.
    ReadTimeout,
    /// The one "busy" answer: no room for this request or batch now (memory,
    /// task slots, or limits this worker will not run); ask again or elsewhere.
    Busy,
    /// A message could not be encoded.
    Encode,
    /// The sender may not do this (a stranger's cancel, a copy from a node
    /// that does not coordinate the job).
    Forbidden,
    /// No such job here or at its coordinator.
    UnknownJob,
    /// No such bundle here.
    UnknownBundle,
    /// A job copy that does not match its id.
    BadJob,
    /// A bundle that is malformed, tampered or unsigned.
    BadBundle,
    /// A policy that cannot be met on its own terms.
    BadPolicy,
    /// A job with no tasks.
    NoTasks,
    /// A job over the task cap.
    TooManyTasks,
    /// A task input over the job's input cap.
    InputTooLarge,
    /// A module over the job's module cap.
    ModuleTooLarge,
    /// More replicas than live workers.
    NotEnoughWorkers,
    /// The coordinator (or the owner of a key) could not be reached.
    Unavailable,
    /// A lookup failed.
    Lookup,
    /// A call to another node failed.
    Transport,
    /// A bundle could not be fetched.
    Bundle,
    /// The sandbox failed (not the task).
    Sandbox,
    /// The node could not store the job.
    Store,
    /// The node is stopping.
    Stopped,
    /// A bug on the node.
    Internal,
    /// A kind this version does not know (its name as sent).
    Other(String),
}

impl ErrorKind {
    const NAMED: [(ErrorKind, &'static str); 26] = [
        (ErrorKind::Malformed, "malformed"),
        (ErrorKind::Oversized, "oversized"),
        (ErrorKind::Truncated, "truncated"),
        (ErrorKind::Stream, "stream"),
        (ErrorKind::ReadTimeout, "read_timeout"),
        (ErrorKind::Busy, "busy"),
        (ErrorKind::Encode, "encode"),
        (ErrorKind::Forbidden, "forbidden"),
        (ErrorKind::UnknownJob, "unknown_job"),
        (ErrorKind::UnknownBundle, "unknown_bundle"),
        (ErrorKind::BadJob, "bad_job"),
        (ErrorKind::BadBundle, "bad_bundle"),
        (ErrorKind::BadPolicy, "bad_policy"),
        (ErrorKind::NoTasks, "no_tasks"),
        (ErrorKind::TooManyTasks, "too_many_tasks"),
        (ErrorKind::InputTooLarge, "input_too_large"),
        (ErrorKind::ModuleTooLarge, "module_too_large"),
        (ErrorKind::NotEnoughWorkers, "not_enough_workers"),
        (ErrorKind::Unavailable, "unavailable"),
        (ErrorKind::Lookup, "lookup"),
        (ErrorKind::Transport, "transport"),
        (ErrorKind::Bundle, "bundle"),
        (ErrorKind::Sandbox, "sandbox"),
        (ErrorKind::Store, "store"),
        (ErrorKind::Stopped, "stopped"),
        (ErrorKind::Internal, "internal"),
    ];

    /// The stable name, as sent on the wire and used in metrics labels.
    pub fn as_str(&self) -> &str {
        if let ErrorKind::Other(s) = self {
            return s;
        }
        Self::NAMED
            .iter()
            .find(|(k, _)| k == self)
            .map_or("other", |(_, n)| n)
    }

    /// Whether asking again (here or at another node) may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ErrorKind::Busy | ErrorKind::Unavailable)
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for ErrorKind {
    fn from(s: &str) -> Self {
        Self::NAMED
            .iter()
            .find(|(_, n)| *n == s)
            .map_or_else(|| ErrorKind::Other(s.to_string()), |(k, _)| k.clone())
    }
}

impl From<String> for ErrorKind {
    fn from(s: String) -> Self {
        ErrorKind::from(s.as_str())
    }
}

impl From<ErrorKind> for String {
    fn from(k: ErrorKind) -> String {
        k.as_str().to_string()
    }
}

impl PartialEq<str> for ErrorKind {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ErrorKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chorus_core::jobs::Policy;
    use serde_bytes::ByteBuf;

    use super::*;
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
            },
            limits: Limits::default(),
            nonce: 42,
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
            reputation: vec![WorkerReputation {
                worker: PeerId([4; 32]),
                score: -9,
                agreed: 1,
                disagreed: 1,
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
            },
            agreeing: vec![PeerId([5; 32])],
            disagreeing: vec![PeerId([6; 32])],
            votes: 3,
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
                tasks: vec![Assignment {
                    task: 0,
                    seed: 11,
                    input: bytes(b"in0"),
                }],
            })),
            JobRequest::FetchBundle {
                bundle: BundleId([10; 32]),
            },
            JobRequest::Replicate {
                coordinator: peer(1),
                job,
                copy: JobCopy::Full(Box::new(JobSnapshot {
                    spec: spec(),
                    decided: BTreeMap::from([(1, decided())]),
                    cancelled: false,
                    failovers: 2,
                })),
            },
            JobRequest::Replicate {
                coordinator: peer(1),
                job,
                copy: JobCopy::Update(JobUpdate {
                    decided: vec![decided()],
                    cancelled: true,
                    failovers: 2,
                }),
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
                results: vec![
                    (0, TaskResult::Output(bytes(b"out"))),
                    (
                        1,
                        TaskResult::Failed {
                            reason: "no quorum".into(),
                        },
                    ),
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
                }],
                signature: bytes(&[14; 64]),
            })),
            JobResponse::Bundle(bytes(b"bundle")),
            JobResponse::NeedSpec,
            JobResponse::Ok,
        ];
        let mut requests = vec![
            Request::Ring {
                msg: ring::Request::Notify { peer: peer(3) },
                capacity: capacity.clone(),
            },
            Request::Peers,
            Request::RingView,
            Request::Lookup { key: RingPos(77) },
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
            Response::Error(WireError::new(ErrorKind::Busy, "full")),
            Response::Error(WireError::new("rate_limited", "later")),
        ];
        responses.extend(job_responses.into_iter().map(Response::Job));
        (requests, responses)
    }

    /// SHA-256 of each message as the frame codec encodes it (named fields),
    /// recorded before the wire module was split in files: moving types
    /// between modules must not change a byte on the wire.
    const GOLDEN: &[&str] = &[
        "7daf8cd3064075c6df93fda4a28048744373fa6bc002a66df434c964c5ec143a",
        "56cd301c5eaf490ea69dc9e5e7eeefa56171f4e9fda7f749a089fc2c6df25be0",
        "12f52dcd2f80a53596e19daa1454224db244fb611457aa6a845515af3caa4adc",
        "06e7f1781b5f2573de5a6c30cefcc44b979e6322c2b8b3a262459965a3f4183e",
        "d25e7856694d92fd8e22a67efd5026e6ba2578590d1f3383729244ee1baf659b",
        "37f2c0116a9db5b800c68eb2f27f4f6445c1c2f8b54b82208ee2881acc7e2d37",
        "963b620282de26b2a98f3b17e7dcbfa60e805fe6b8921ee734aba00303e50756",
        "383c20706935bb51b422b0360e03e482dbde86272f7b8ba9c11a7c9fbfcd7700",
        "efba8a0ecdb75c9b4d77ca0602a3a36177dc8310fa610576032e9427927094ef",
        "c7156e689aa345ff15b364ba130d2d269feac139c873f85d0ab6180675983cc7",
        "c20c8385c8155430adde52b3c9185cf08dda3b754e0be52853836832d28b9fb2",
        "be881bb73da0beb329464311e4ef0860d55b8b8f8b6869618e55a2af38361fa3",
        "e716a4780bec729e7a74089c702b7a602aa4eb31ae2031d95562943be6e12630",
        "d96c7c5c92e5d8799a2b3d83c130b520088e726c2a1d9dc187065f0752b76ca4",
        "559475b5b56641e9360d118e8c6e62cce6b6eba1b38cbb203abeb97ffbf123c8",
        "cb3a44b104fd281d2072710353f5afa55bfd6db3dc7c177df56602c3478fb3fd",
        "b9a19745fd806e59ab8f6937d5fd038ce75582581187d3dbdfbc74ca41e8e70a",
        "0a90b738af7784d0d6234db77cf41854f721af159f4983686aa172800b822fcc",
        "18e3e52ffa8702b0ffd75a24ca4785b6dd42a6a539ff7e0fd3858fc5dd19ba27",
        "97037debd6a98cc1c28c1b4f97a5bc10645c624ff89166f7ec66d8a8fdf1dfa8",
        "2f30d61b567c261fff67c3c884fd12f33ea8ab1024999227dda705a93506cfd8",
        "4f2eadf9441d01721243e5c8c8fb66f00653b6584554d4301732ecbe464399a3",
        "860e1b20a7dcd059d60a676e032b6961e1d5bab9feaebee51c6a68f8bbd1dfbf",
        "03f75a551c09853c5b95385bc0a025132dc788c78a56fc640b759763b5c664cc",
        "6599577241c02a3686d6785207a990c2593186f902d483cb0c9ea8e34a06f276",
        "cbada10028532b4c0488fa786d99161d2a6de1bb59ddf3158519b77f7deece82",
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

    #[test]
    fn error_kinds_round_trip_by_their_stable_names() {
        for (kind, name) in ErrorKind::NAMED {
            assert_eq!(kind.as_str(), name);
            assert_eq!(ErrorKind::from(name), kind);
            let bytes = rmp_serde::to_vec(&kind).unwrap();
            assert_eq!(rmp_serde::from_slice::<String>(&bytes).unwrap(), name);
            assert_eq!(rmp_serde::from_slice::<ErrorKind>(&bytes).unwrap(), kind);
        }
        let future = ErrorKind::from("rate_limited");
        assert_eq!(future, ErrorKind::Other("rate_limited".into()));
        assert_eq!(future.as_str(), "rate_limited");
        assert!(ErrorKind::Busy.is_retryable() && !ErrorKind::Forbidden.is_retryable());
    }
}
