//! Adversaries anyone can run: `chorus node --chaos MODE` (repeatable).
//!
//! Testing and demonstration aids, off by default, announced with a warning
//! when a node starts with one: they are how the tests, the demo and any
//! operator show that the defences hold against a node that speaks the
//! protocol and lies. Never turn one on in a grid you share.
//!
//! - `corrupt-results`: as a worker, flip bytes in every result it returns
//!   (and turn every task error into a made-up success). Outvoted by the
//!   quorum.
//! - `forge-results`: when answering a client (as the entry node, a
//!   forwarder or the coordinator), replace every output with other bytes
//!   and attach made-up attestations signed with fresh keys. Refused by the
//!   client (the signers are not ring members, or the signatures do not
//!   hold), which fetches those tasks from the job's other holders.
//! - `forge-copies`: for every job id it learns of (as a worker, forwarder
//!   or backup), send forged copies to that job's successors (made-up
//!   decided tasks, a made-up cancel, itself named as coordinator) and ask
//!   them to take the job over. Refused by the backups (not the job's
//!   owner, no valid quorum of attestations, no submitter signature) and
//!   counted in `chorus_job_copies_refused_total`.
//! - `collude`: as a worker, return for every task the same wrong output
//!   every other `collude` node returns for it (derived from the job and the
//!   task), so colluders agree with each other. Outvoted when replica
//!   diversity keeps colluders on one network to one replica per task.
//! - `inflate-capacity`: announce 1,024 cores, maximal speed and every slot
//!   free, to win every placement. Capped by the coordinator's view of what
//!   it delivers; with replica diversity it still gets at most one replica
//!   of a task per network.
//! - `flood-capacity`: every second, send each ring neighbour ring pings
//!   carrying [`FLOOD_RECORDS`] forged capacity records (fresh keys without
//!   the identity work, huge machines, stamped in the future). Refused and
//!   counted in `chorus_capacity_records_refused_total`.
//! - `corrupt-chunks`: as a server of blob chunks, flip a byte in the first
//!   serving of every chunk whose index is 1 mod 3 (played by
//!   `crate::blobs`). Refused by the fetcher (the chunk's hash), counted in
//!   `chorus_blob_chunks_refused_total` and fetched again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chorus_core::RingPos;
use chorus_sdk::attest::Claim;
use chorus_sdk::bundle::BundleId;
use chorus_sdk::identity::Identity;
use chorus_sdk::job::{
    DecidedTask, JOB_FRAME_CAP, JobCopy, JobId, JobRequest, JobSnapshot, JobSpec, JobUpdate,
    ResultsPage, TaskResult,
};
use chorus_sdk::outcome::{self, Outcome};
use chorus_sdk::wire::{Peer, Request, Response};
use serde_bytes::ByteBuf;
use tracing::{debug, warn};

use super::Shared;

/// Rounds of forged copies sent per job learned (one a second).
const FORGE_ROUNDS: u32 = 30;
/// Made-up decided tasks per forged copy.
const FORGED_TASKS: u32 = 4;
/// Most jobs a `forge-copies` node attacks at once.
const MAX_ATTACKED: usize = 64;

/// The misbehaviours a node is set to, each off by default (see the
/// [module docs](self)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Chaos {
    /// `corrupt-results`: lie in the open as a worker.
    pub corrupt_results: bool,
    /// `forge-results`: hand clients forged outputs with made-up attestations.
    pub forge_results: bool,
    /// `forge-copies`: send forged job copies and takeover requests to backups.
    pub forge_copies: bool,
    /// `collude`: return the wrong output every other colluder returns.
    pub collude: bool,
    /// `inflate-capacity`: announce 1,024 cores, maximal speed, all slots free.
    pub inflate_capacity: bool,
    /// `flood-capacity`: send neighbours thousands of forged capacity records.
    pub flood_capacity: bool,
    /// `corrupt-chunks`: serve blob chunks with a byte flipped.
    pub corrupt_chunks: bool,
}

impl Chaos {
    /// Every mode off.
    pub const OFF: Chaos = Chaos {
        corrupt_results: false,
        forge_results: false,
        forge_copies: false,
        collude: false,
        inflate_capacity: false,
        flood_capacity: false,
        corrupt_chunks: false,
    };

    /// Whether every mode is off.
    pub fn is_off(&self) -> bool {
        *self == Chaos::OFF
    }

    /// The names of the modes that are on, as `--chaos` spells them.
    pub fn names(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.corrupt_results {
            out.push("corrupt-results");
        }
        if self.forge_results {
            out.push("forge-results");
        }
        if self.forge_copies {
            out.push("forge-copies");
        }
        if self.collude {
            out.push("collude");
        }
        if self.inflate_capacity {
            out.push("inflate-capacity");
        }
        if self.flood_capacity {
            out.push("flood-capacity");
        }
        if self.corrupt_chunks {
            out.push("corrupt-chunks");
        }
        out
    }
}

/// Cores an `inflate-capacity` node announces.
pub const INFLATED_CORES: u32 = 1024;
/// Forged records a `flood-capacity` node sends each neighbour per second.
pub const FLOOD_RECORDS: usize = 1000;

/// `collude`: the output every colluder gives for `task` of `job`: the same
/// bytes on every colluding node, different from any honest output.
pub fn colluded_output(job: JobId, task: u32) -> Vec<u8> {
    let seed = [
        b"chorus colluders agree\0".as_slice(),
        &job.0.0.to_be_bytes(),
        &task.to_be_bytes(),
    ]
    .concat();
    let mut out = b"colluded ".to_vec();
    out.extend_from_slice(&chorus_sdk::job::sha256(&seed)[..8]);
    out
}

/// `flood-capacity`: forged records (fresh plain keys, u32::MAX cores,
/// stamped 29 s ahead), `n` of them.
pub fn forged_records(n: usize) -> Vec<chorus_sdk::capacity::SignedCapacity> {
    use chorus_sdk::capacity::{CapacityRecord, SignedCapacity};
    let now = crate::capacity::now_ms();
    (0..n)
        .filter_map(|i| {
            let key = Identity::generate().ok()?;
            let r = CapacityRecord {
                public_key: key.public_key(),
                addr: std::net::SocketAddr::from((
                    [10, 99, (i / 250) as u8, (i % 250) as u8 + 1],
                    7000,
                )),
                metrics_addr: Some(std::net::SocketAddr::from(([10, 99, 0, 1], 9100))),
                cores: u32::MAX,
                memory_mb: u64::MAX / 2,
                free_slots: u32::MAX,
                fuel_per_sec: u64::MAX,
                version: "flood".into(),
                timestamp_ms: now + 29_000,
                ceiling: None,
            };
            SignedCapacity::sign(r, &key).ok()
        })
        .collect()
}

/// `flood-capacity`: once a second, sends each ring neighbour the forged
/// records in ring pings ([`MAX_GOSSIP`](chorus_sdk::wire::MAX_GOSSIP) a
/// ping, [`FLOOD_RECORDS`] in all). Runs until the node stops.
pub async fn flood_capacity(
    transport: chorus_sdk::transport::Transport,
    ring: crate::ring_actor::RingHandle,
) {
    use chorus_sdk::frame::RING_FRAME_CAP;
    use chorus_sdk::wire::MAX_GOSSIP;
    warn!("chaos flood-capacity: flooding ring neighbours with forged capacity records");
    // Signing a thousand records takes a while: make them once, re-stamp
    // nothing (they stay 29 s ahead for a while, then expire on arrival).
    let records = forged_records(FLOOD_RECORDS);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Ok(view) = ring.view().await else {
            return;
        };
        let mut targets: Vec<Peer> = view.successors.clone();
        targets.extend(view.predecessor.clone());
        targets.dedup_by_key(|p| p.id);
        for t in targets {
            for chunk in records.chunks(MAX_GOSSIP) {
                let req = Request::Ring {
                    msg: chorus_core::ring::Request::Ping,
                    capacity: chunk.to_vec(),
                };
                let _ = transport
                    .call::<_, Response>(
                        t.addr,
                        Some(t.id),
                        &req,
                        RING_FRAME_CAP,
                        Duration::from_secs(2),
                    )
                    .await;
            }
        }
    }
}

/// Replaces every output of `page` (of `job`) with other bytes, signed by
/// `quorum` fresh keys over the claim the real header would give.
fn forge_page(me: RingPos, job: JobId, page: &mut ResultsPage) {
    let quorum = page.header.as_ref().map_or(2, |h| h.policy.quorum).max(1);
    let keys: Vec<Identity> = (0..quorum)
        .filter_map(|_| Identity::generate().ok())
        .collect();
    for r in &mut page.results {
        let forged = format!("FORGED by {me} for task {}", r.task).into_bytes();
        let outcome = match &mut r.result {
            TaskResult::Output(b) => {
                *b = ByteBuf::from(forged.clone());
                Outcome::Ok
            }
            TaskResult::Error {
                outcome, output, ..
            } => {
                *output = ByteBuf::from(forged.clone());
                outcome.clone()
            }
            TaskResult::Failed { .. } => continue,
        };
        let Some(digest) = outcome::digest(&outcome, &forged) else {
            continue;
        };
        let claim = page
            .header
            .as_ref()
            .and_then(|h| h.claim(job, r.task, digest))
            .unwrap_or(Claim {
                job,
                task: r.task,
                input: [0; 32],
                bundle: BundleId([0; 32]),
                terms: [0; 32],
                outcome: digest,
            });
        r.attestations = keys.iter().map(|k| claim.sign(k)).collect();
    }
}

/// Made-up decided tasks with attestations by fresh keys.
fn forged_tasks(job: JobId, tasks: u32) -> Vec<DecidedTask> {
    let keys: Vec<Identity> = (0..2).filter_map(|_| Identity::generate().ok()).collect();
    (0..tasks.min(FORGED_TASKS))
        .map(|task| {
            let output = b"FORGED".to_vec();
            let digest = outcome::digest(&Outcome::Ok, &output).unwrap_or_default();
            let claim = Claim {
                job,
                task,
                input: [0; 32],
                bundle: BundleId([0; 32]),
                terms: [0; 32],
                outcome: digest,
            };
            DecidedTask {
                task,
                result: TaskResult::Output(ByteBuf::from(output)),
                agreeing: keys.iter().map(|k| k.peer_id()).collect(),
                disagreeing: Vec::new(),
                votes: 2,
                attestations: keys.iter().map(|k| claim.sign(k)).collect(),
                rule: Default::default(),
            }
        })
        .collect()
}

impl Shared {
    /// Applies `forge-results` to an answer for a client.
    pub(super) fn forge_answer(&self, job: JobId, resp: &mut Response) {
        if let Response::Job(chorus_sdk::job::JobResponse::Results(page)) = resp {
            forge_page(self.me.id, job, page);
        }
    }

    /// `forge-copies`: starts attacking `job` unless already at it.
    pub(super) fn learn_job(self: &Arc<Self>, job: JobId, spec: Option<&JobSpec>) {
        if !self.chaos.forge_copies || self.attacked.len() >= MAX_ATTACKED {
            return;
        }
        if self.attacked.insert(job, ()).is_some() {
            return;
        }
        let me = self.clone();
        let spec = spec.cloned();
        tokio::spawn(async move { me.forge_copies(job, spec).await });
    }

    /// Sends forged copies of `job` to its owner's successors, then asks
    /// them to take it over; once a second, [`FORGE_ROUNDS`] times.
    async fn forge_copies(self: Arc<Self>, job: JobId, spec: Option<JobSpec>) {
        warn!(%job, "chaos forge-copies: sending forged copies of this job");
        for _ in 0..FORGE_ROUNDS {
            for target in self.successors_of_owner(job).await {
                let tasks = spec
                    .as_ref()
                    .map_or(FORGED_TASKS, |s| s.inputs.len() as u32);
                let decided = forged_tasks(job, tasks);
                let cancel = Some(ByteBuf::from(vec![0x5a; 64]));
                let copy = match &spec {
                    Some(s) => JobCopy::Full(Box::new(JobSnapshot {
                        spec: s.clone(),
                        decided: decided
                            .iter()
                            .map(|d| (d.task, d.clone()))
                            .collect::<BTreeMap<_, _>>(),
                        cancel,
                        failovers: 0,
                    })),
                    None => JobCopy::Update(JobUpdate {
                        decided,
                        cancel,
                        failovers: 0,
                    }),
                };
                let forged = Request::Job(JobRequest::Replicate {
                    coordinator: self.me.clone(),
                    job,
                    copy,
                });
                let takeover = Request::Job(JobRequest::Results {
                    job,
                    from: 0,
                    forwarded: true,
                });
                for req in [forged, takeover] {
                    let r = self
                        .transport
                        .call::<_, Response>(
                            target.addr,
                            Some(target.id),
                            &req,
                            JOB_FRAME_CAP,
                            self.config.fetch_timeout,
                        )
                        .await;
                    debug!(%job, target = %target.id, answer = ?r.as_ref().map(|_| ()), "forged copy sent");
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// The job's owner's first successors (not this node), found by lookups.
    async fn successors_of_owner(&self, job: JobId) -> Vec<Peer> {
        let mut out: Vec<Peer> = Vec::new();
        let Ok(owner) = self.ring.lookup(job.0).await else {
            return out;
        };
        let mut at = owner.owner;
        for _ in 0..self.config.replicate_to.max(1) {
            let Ok(next) = self.ring.lookup(RingPos(at.id.0.wrapping_add(1))).await else {
                break;
            };
            at = next.owner;
            if at.id != self.me.id && !out.iter().any(|p| p.id == at.id) {
                out.push(at.clone());
            }
        }
        out
    }
}
