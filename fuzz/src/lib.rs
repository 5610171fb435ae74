//! Shared by the fuzz targets and the seed generator: fixed keys, the checks a
//! node or a client makes after it decoded a message, and round trips.
//!
//! Every check here calls the SDK's own decode-and-validate functions, the
//! ones the node (`chorus-node`) and the client call. Where the node strings
//! several of them together in code that lives in `chorus-node` (which this
//! crate does not depend on: it would pull wasmtime into every instrumented
//! build), the order is copied from the named node function.

use std::net::SocketAddr;
use std::sync::OnceLock;

use chorus_core::RingPos;
use chorus_core::ring::{self, Config, RingNode};
use chorus_sdk::attest::{Attestation, check_proof, member_message};
use chorus_sdk::blob::BlobIndex;
use chorus_sdk::bundle::{Bundle, Manifest, VerifiedBundle};
use chorus_sdk::capacity::SignedCapacity;
use chorus_sdk::identity::{self, Identity, PeerId};
use chorus_sdk::job::{
    DecidedTask, JobCopy, JobHeader, JobId, JobRequest, JobResponse, JobSnapshot, JobSpec,
    MAX_BATCH_TASKS, RunTasks, SignedResults, verify_cancel,
};
use chorus_sdk::outcome;
use chorus_sdk::runtime::RuntimeBundle;
use chorus_sdk::wire::{Request, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_bytes::ByteBuf;

pub mod seeds;
pub mod targets;

/// "Now" for every check that reads a clock (capacity records' age): the
/// seeds are stamped a little before it.
pub const NOW_MS: u64 = 1_800_000_000_000;
/// The age limit of capacity records in the checks (the node's default is
/// in the same range).
pub const MAX_AGE_MS: u64 = 60_000;

/// The PKCS#8 v1 prefix of an Ed25519 key; the 32-byte seed follows.
const PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// A fixed identity from a one-byte seed, so the seeds and the targets
/// agree on keys run after run.
pub fn fixed_identity(seed: u8) -> Identity {
    let mut pkcs8 = PKCS8_PREFIX.to_vec();
    pkcs8.extend_from_slice(&[seed; 32]);
    Identity::from_pkcs8(&pkcs8).expect("a valid fixed key")
}

/// The submitter of the fixed bundle and of the seeds' jobs.
pub fn submitter() -> &'static Identity {
    static ID: OnceLock<Identity> = OnceLock::new();
    ID.get_or_init(|| fixed_identity(1))
}

/// A small WebAssembly module (empty, valid header).
pub const MODULE: &[u8] = b"\0asm\x01\0\0\0";

/// The bundle the seeds' jobs run, signed by [`submitter`]: what a worker
/// holds when it checks a job's signed terms.
pub fn fixed_bundle() -> &'static VerifiedBundle {
    static B: OnceLock<VerifiedBundle> = OnceLock::new();
    B.get_or_init(|| {
        let mut m = Manifest::new("fuzz", "1.0.0", [0; 32]);
        m.args = vec!["--fast".into()];
        Bundle::sign(m, MODULE.to_vec(), submitter()).expect("the fixed bundle signs")
    })
}

/// Encodes `value` as the frame codec does (named fields), decodes it back
/// and encodes again: the two encodings must be equal. Comparing bytes, not
/// values, keeps a NaN in a policy from failing the check.
pub fn round_trip<T: Serialize + DeserializeOwned>(value: &T) {
    let first = rmp_serde::to_vec_named(value).expect("a decoded value encodes");
    let back: T = rmp_serde::from_slice(&first).expect("an encoded value decodes");
    let second = rmp_serde::to_vec_named(&back).expect("a decoded value encodes");
    assert_eq!(first, second, "decode(encode(x)) encodes differently");
}

/// A node's check of a submitted spec (`routing.rs`, `replication.rs`:
/// [`JobSpec::verify`]); when it holds, the header a client gets must
/// describe the same job.
pub fn check_spec(spec: &JobSpec) {
    let id = spec.id();
    if let Ok(bundle) = spec.verify() {
        let header = spec.header();
        assert!(
            header.matches(id),
            "a verified spec's header names another job"
        );
        assert_eq!(header.tasks(), spec.inputs.len());
        assert_eq!(header.bundle, bundle.id());
        assert!(spec.is_signed());
        assert!(
            header.verify_signed(id, &bundle, &spec.signature).is_ok(),
            "a verified spec's terms do not verify"
        );
    }
}

/// A capacity record as the node's gossip takes it (`capacity.rs`:
/// [`SignedCapacity::verify`]).
pub fn check_capacity(record: &SignedCapacity) {
    if let Ok(r) = record.verify(NOW_MS, MAX_AGE_MS) {
        let _ = r.peer_id().ring_pos();
        if let Some(ceiling) = &r.ceiling {
            let _ = chorus_sdk::bundle::Limits::default().first_above(ceiling);
        }
    }
}

/// A backup's check of a job copy (`replication.rs`, `check_copy`): the
/// cancel is the submitter's, every accepted task's attestations prove it.
pub fn check_copy<'a>(
    job: JobId,
    submitter: Option<[u8; 32]>,
    header: &JobHeader,
    decided: impl Iterator<Item = &'a DecidedTask>,
    cancel: Option<&ByteBuf>,
) -> bool {
    if let Some(signature) = cancel {
        let Some(key) = submitter else {
            return false;
        };
        if !verify_cancel(job, &key, signature) {
            return false;
        }
    }
    for d in decided {
        if !d.result.is_verified() {
            continue;
        }
        let Some(digest) = d.result.outcome_digest() else {
            return false;
        };
        let Some(claim) = header.claim(job, d.task, digest) else {
            return false;
        };
        if d.rule.signers_needed(&header.policy).is_err() {
            return false;
        }
        if check_proof(&claim, &d.attestations, &header.policy, &d.rule).is_err() {
            return false;
        }
    }
    true
}

/// A worker's checks of a batch before it runs it (`worker.rs`): the size
/// bound, the terms the batch claims against the signed header the worker
/// fetched, and the seed of every task.
pub fn check_batch(batch: &RunTasks) {
    if batch.tasks.len() > MAX_BATCH_TASKS {
        return;
    }
    let _ = batch.policy.validate();
    let _ = batch
        .limits
        .first_above(&chorus_sdk::bundle::Limits::default());
    let terms = chorus_sdk::attest::terms_digest(&batch.limits, &batch.policy);
    for a in &batch.tasks {
        let _ = chorus_sdk::job::task_seed(fixed_bundle().manifest().seed, batch.job, a.task);
        let _ = (terms, chorus_sdk::job::sha256(&a.input));
    }
}

/// A coordinator's check of a worker's signed results (`coordinator.rs`,
/// the `BatchOutcome::Ran` arm): the signature, then each vote's
/// attestation against the job's header.
pub fn check_ran(signed: &SignedResults, header: Option<&JobHeader>) {
    let worker = PeerId::from_public_key(&signed.worker);
    if !signed.verify(&worker) {
        return;
    }
    for r in &signed.results {
        let Some(digest) = outcome::digest(&r.outcome, &r.output) else {
            continue;
        };
        let attestation = r.attestation.clone().map(|signature| Attestation {
            worker: signed.worker,
            signature,
        });
        if let (Some(h), Some(a)) = (header, attestation)
            && let Some(c) = h.claim(signed.job, r.task, digest)
        {
            let _ = c.verify(&a);
        }
    }
}

/// A fresh ring node at a fixed position with a few neighbours, as a node
/// that has joined.
pub fn ring_node() -> RingNode<SocketAddr> {
    let peer = |n: u64| ring::Peer {
        id: RingPos(n.wrapping_mul(0x1000_0000_0000_0000)),
        addr: SocketAddr::from(([127, 0, 0, 1], 7000 + n as u16)),
    };
    RingNode::with_state(
        peer(4),
        Config::default(),
        7,
        Some(peer(3)),
        vec![peer(5), peer(6), peer(7)],
        vec![(60, peer(5)), (62, peer(8)), (63, peer(12))],
    )
}

/// What a node does with a decoded request before it answers (the
/// dispatch in `rpc/dispatch.rs` and the services behind it), as far as it
/// is pure: capacity records, the ring state machine, job specs, cancels,
/// batches, copies, challenges.
pub fn check_request(req: &Request, from: RingPos) {
    match req {
        Request::Ring { msg, capacity } => {
            for c in capacity {
                check_capacity(c);
            }
            let mut node = ring_node();
            let _ = node.handle_request_from(NOW_MS, from, msg.clone());
            while node.poll_transmit().is_some() {}
            while node.poll_event().is_some() {}
        }
        Request::Peers | Request::RingView | Request::Lookup { .. } => {}
        Request::Prove { nonce } => {
            let me = submitter();
            let _ = me.sign(&member_message(nonce, &me.public_key()));
        }
        Request::Job(j) => match j {
            JobRequest::Submit { spec, .. } => check_spec(spec),
            JobRequest::Cancel { job, signature, .. } => {
                let _ = verify_cancel(*job, &submitter().public_key(), signature);
            }
            JobRequest::Run(batch) => check_batch(batch),
            JobRequest::Replicate { job, copy, .. } => match copy {
                JobCopy::Full(snapshot) => {
                    if snapshot.spec.verify().is_ok() {
                        let header = snapshot.spec.header();
                        check_copy(
                            *job,
                            snapshot.spec.submitter(),
                            &header,
                            snapshot.decided.values(),
                            snapshot.cancel.as_ref(),
                        );
                    }
                }
                JobCopy::Update(update) => {
                    // Applied to a copy of a real job the backup holds.
                    let spec = seeds::signed_spec(3, 1);
                    let header = spec.header();
                    let mut snap = JobSnapshot::new(spec);
                    if check_copy(
                        *job,
                        snap.spec.submitter(),
                        &header,
                        update.decided.iter(),
                        update.cancel.as_ref(),
                    ) {
                        snap.apply(update.clone());
                        let _ = (snap.is_done(), snap.is_cancelled());
                    }
                }
            },
            JobRequest::Status { .. }
            | JobRequest::Watch { .. }
            | JobRequest::Results { .. }
            | JobRequest::Held { .. }
            | JobRequest::Terms { .. }
            | JobRequest::FetchBundle { .. }
            | JobRequest::BlobIndex { .. }
            | JobRequest::Chunk { .. } => {}
            // An upload's index must be canonical and its chunks must hash
            // to it (the node's `blobs` service), and an index may name a
            // runtime bundle the node would decode and check.
            JobRequest::PutBlob { index } => {
                if let Ok(i) = BlobIndex::decode(index) {
                    let _ = i.id();
                }
                let _ = RuntimeBundle::decode_verified(index);
            }
            JobRequest::PutChunk { index, bytes, .. } => {
                if let Ok(i) = BlobIndex::of(bytes) {
                    let _ = i.check_chunk(*index, bytes);
                }
            }
        },
    }
}

/// What a client or a node does with a decoded response: capacity records,
/// results pages (each result's proof), signed results, bundles, terms,
/// membership proofs, error kinds.
pub fn check_response(resp: &Response) {
    match resp {
        Response::Ring { msg, capacity } => {
            for c in capacity {
                check_capacity(c);
            }
            // The ring actor hands it to the state machine for the request
            // it answers: see the `ring` target, which plays both sides.
            let _ = msg;
        }
        Response::Peers(list) => {
            for c in &list.records {
                check_capacity(c);
            }
        }
        Response::RingView(_) | Response::Lookup(_) => {}
        Response::Proof {
            public_key,
            signature,
        } => {
            let _ = identity::verify(public_key, &member_message(&[7; 32], public_key), signature);
        }
        Response::Error(e) => {
            let _ = (e.kind.as_str(), e.to_string());
        }
        Response::Job(j) => match j {
            JobResponse::Accepted { .. } | JobResponse::NeedSpec | JobResponse::Ok => {}
            JobResponse::Status(s) => {
                let _ = s.version;
            }
            JobResponse::Results(page) => {
                // The client (`client/verify.rs`): the header must be the
                // job's, then every result must carry its proof.
                let job = page.status.job;
                if let Some(header) = &page.header
                    && header.matches(job)
                {
                    for r in &page.results {
                        let _ = r.check(job, header);
                    }
                }
            }
            JobResponse::Ran(signed) => check_ran(signed, None),
            // A fetcher's checks (`blobs/fetch.rs`): the index must be the
            // one asked for, each chunk must hash to its entry.
            JobResponse::BlobIndex(bytes) => {
                if let Ok(i) = BlobIndex::decode(bytes) {
                    let _ = BlobIndex::decode_for(i.id(), bytes);
                }
            }
            JobResponse::Chunk(bytes) => {
                if let Ok(i) = BlobIndex::of(bytes) {
                    let _ = i.check_chunk(0, bytes);
                }
            }
            JobResponse::Missing { .. } => {}
            JobResponse::Bundle(bytes) => {
                // A worker's fetch (`worker.rs`): decode, then verify as the
                // id it asked for.
                if let Ok(b) = Bundle::decode(bytes) {
                    let _ = b.verify_as(&fixed_bundle().id());
                }
            }
            JobResponse::Terms { header, signature } => {
                // A worker's check of a job's signed terms (`worker.rs`).
                let _ = header.verify_signed(header.id(), fixed_bundle(), signature);
            }
        },
    }
}
