//! The body of every fuzz target, one function each. They live here, not in
//! `fuzz_targets/*.rs`, so that the decoders they instantiate are compiled
//! once for the library rather than once per target binary (which made the
//! instrumented build several times longer). Each `fuzz_targets/NAME.rs`
//! only calls `targets::NAME`.

use chorus_core::RingPos;
use chorus_core::ring::RequestId;
use chorus_sdk::bundle::Bundle;
use chorus_sdk::capacity::SignedCapacity;
use chorus_sdk::frame::{self, FrameError};
use chorus_sdk::identity::PeerId;
use chorus_sdk::job::{JOB_FRAME_CAP, JobSpec};
use chorus_sdk::proof::Proof;
use chorus_sdk::stored::{self, JobFlags};
use chorus_sdk::tls::{self, PeerVerifier};
use chorus_sdk::wire::{Request, Response};
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::ClientCertVerifier;

use crate::seeds::{AttestCase, RingStep};

/// Whole frames (4-byte length prefix, MessagePack body) as the node's
/// stream reader and the client's reader take them: `frame::decode_frame`
/// under the job cap, as a `Request` (what a node reads) and as a
/// `Response` (what a client reads). A frame that decodes must encode back
/// to a frame that decodes to the same bytes.
pub fn frame(data: &[u8]) {
    match frame::decode_frame::<Request>(data, JOB_FRAME_CAP) {
        Ok((req, used)) => {
            assert!(used <= data.len());
            let again = frame::encode(&req, JOB_FRAME_CAP).expect("a decoded request encodes");
            let (back, n) = frame::decode_frame::<Request>(&again, JOB_FRAME_CAP)
                .expect("an encoded request decodes");
            assert_eq!(n, again.len());
            assert_eq!(frame::encode(&back, JOB_FRAME_CAP).ok(), Some(again));
        }
        Err(FrameError::TooLarge { len, cap }) => assert!(len > cap),
        Err(_) => {}
    }
    if let Ok((resp, _)) = frame::decode_frame::<Response>(data, JOB_FRAME_CAP) {
        crate::round_trip(&resp);
    }
    // The ring cap is smaller: a length between the two is refused before
    // the body is looked at.
    let _ = frame::decode_frame::<Response>(data, frame::RING_FRAME_CAP);
}

/// A request body as a node reads it from a stream (`rpc/server.rs`:
/// `frame::decode::<Request>` after the length prefix), then what the node
/// checks before it acts on it (`chorus_fuzz::check_request`: capacity
/// records, the ring state machine, signed specs, cancels, batches, job
/// copies with their attestations). Round trip: decode, encode, decode.
pub fn request(data: &[u8]) {
    if let Ok(req) = frame::decode::<Request>(data) {
        crate::round_trip(&req);
        // From a peer at a fixed position, and from the peer a Notify or a
        // Leave names (which the state machine then takes).
        crate::check_request(&req, RingPos(0x2000_0000_0000_0000));
        if let Request::Ring {
            msg:
                chorus_core::ring::Request::Notify { peer }
                | chorus_core::ring::Request::Leave { peer, .. },
            ..
        } = &req
        {
            crate::check_request(&req, peer.id);
        }
    }
}

/// A response body as a client or a node reads it (`transport.rs`'s call:
/// `frame::decode::<Response>`), then what the reader checks
/// (`chorus_fuzz::check_response`: capacity records, each result's proof
/// against the job header, a worker's signed results, a fetched bundle
/// against its id, a job's signed terms, membership proofs). Round trip:
/// decode, encode, decode.
pub fn response(data: &[u8]) {
    if let Ok(resp) = frame::decode::<Response>(data) {
        crate::round_trip(&resp);
        crate::check_response(&resp);
    }
}

/// The ring messages inside `Request::Ring` and `Response::Ring`
/// (`chorus_core::ring::{Request, Response}`) fed to the ring state machine
/// as the node's ring actor feeds it (`ring_actor.rs`:
/// `handle_request_from`, `handle_response`, `handle_failure`,
/// `handle_timeout`): the input is a script of steps, each a decoded ring
/// message or a tick. Whatever peers say, the node must not panic and its
/// successor list must stay within its configured length.
pub fn ring(data: &[u8]) {
    let Ok(steps) = rmp_serde::from_slice::<Vec<RingStep>>(data) else {
        return;
    };
    let mut node = crate::ring_node();
    let mut now = crate::NOW_MS;
    let mut pending: Vec<RequestId> = Vec::new();
    for step in steps.into_iter().take(256) {
        match step {
            RingStep::Request { from, msg } => {
                crate::round_trip(&msg);
                let _ = node.handle_request_from(now, RingPos(from), msg);
            }
            RingStep::Response { nth, msg } => {
                crate::round_trip(&msg);
                if !pending.is_empty() {
                    let id = pending.remove(usize::from(nth) % pending.len());
                    node.handle_response(now, id, msg);
                }
            }
            RingStep::Fail { nth } => {
                if !pending.is_empty() {
                    let id = pending.remove(usize::from(nth) % pending.len());
                    node.handle_failure(now, id);
                }
            }
            RingStep::Tick { ms } => {
                now += u64::from(ms);
                node.handle_timeout(now);
            }
            RingStep::Lookup { key } => {
                let _ = node.lookup(now, RingPos(key));
            }
        }
        while let Some(t) = node.poll_transmit() {
            pending.push(t.id);
        }
        while node.poll_event().is_some() {}
        assert!(node.successors().len() <= node.config().successors.max(1));
        assert!(pending.len() <= 10_000);
    }
    let _ = (node.fingers(), node.predecessor(), node.heap_bytes());
}

/// Bundles as a worker receives them (`worker.rs`, `routing.rs`):
/// `Bundle::decode` (canonical form only), then `verify` (manifest ranges,
/// hash, submitter's signature) and `verify_as` an id. A bundle that decodes
/// is canonical: its encoding is the input, byte for byte.
pub fn bundle(data: &[u8]) {
    let Ok(bundle) = Bundle::decode(data) else {
        return;
    };
    assert_eq!(bundle.encode().expect("a decoded bundle encodes"), data);
    let id = bundle.id().expect("a decoded bundle hashes");
    let _ = bundle.manifest().check();
    let _ = bundle.clone().verify_as(&crate::fixed_bundle().id());
    if let Ok(v) = bundle.verify() {
        assert_eq!(v.id(), id);
        assert_eq!(v.encode().expect("encodes"), data);
        assert!(v.manifest().check().is_ok());
    }
}

/// Job specs as a coordinator takes a submission (`routing.rs`:
/// `JobSpec::verify`: bundle, policy, task count, input and module caps,
/// the submitter's signature), then its id and header (`JobSpec::header`,
/// `JobHeader::matches`, `verify_signed`: what clients and workers check).
/// Round trip: decode, encode, decode.
pub fn job_spec(data: &[u8]) {
    let Ok(spec) = rmp_serde::from_slice::<JobSpec>(data) else {
        return;
    };
    crate::round_trip(&spec);
    crate::check_spec(&spec);
}

/// Capacity records as the gossip takes them (`capacity.rs` in the node:
/// decode, then `SignedCapacity::verify`: signature, age, future skew).
/// Round trip: decode, encode, decode.
pub fn capacity(data: &[u8]) {
    let Ok(record) = rmp_serde::from_slice::<SignedCapacity>(data) else {
        return;
    };
    crate::round_trip(&record);
    crate::check_capacity(&record);
}

/// Attestations as a client checks a result (`client/verify.rs`:
/// `ProvedResult::check`: outcome digest, claim from the header, then
/// `attest::check_proof`: rule, signatures, distinct signers, quorum), and
/// each attestation alone as a coordinator checks a worker's vote
/// (`coordinator.rs`: `Claim::verify`). Round trip: decode, encode, decode.
pub fn attest(data: &[u8]) {
    let Ok(case) = rmp_serde::from_slice::<AttestCase>(data) else {
        return;
    };
    crate::round_trip(&case.result);
    crate::round_trip(&case.header);
    let checked = case.result.check(case.job, &case.header);
    if let (Ok(signers), true) = (&checked, case.result.result.is_verified()) {
        // Distinct signers, at least one.
        let mut s = signers.clone();
        s.sort();
        s.dedup();
        assert_eq!(s.len(), signers.len());
        assert!(!signers.is_empty());
    }
    if let Some(digest) = case.result.result.outcome_digest()
        && let Some(claim) = case.header.claim(case.job, case.result.task, digest)
    {
        for a in &case.result.attestations {
            let _ = claim.verify(a);
        }
    }
}

/// Proof files as `chorus verify` reads them (`cli/verify.rs`:
/// `Proof::from_json`, then `Proof::check` of the output against it). The
/// input is a 2-byte big-endian output length, the output, then the JSON.
pub fn proof(data: &[u8]) {
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let len = usize::from(u16::from_be_bytes(*len)).min(rest.len());
    let (output, json) = rest.split_at(len);
    let Ok(proof) = Proof::from_json(json) else {
        return;
    };
    let _ = proof.check(output);
    // The codec of proof files round-trips (`Proof::to_json`, what
    // `chorus submit` writes, reads back as the same proof).
    let again = Proof::from_json(&proof.to_json()).expect("a written proof reads back");
    assert_eq!(again.to_json(), proof.to_json());
}

/// Peer certificates as the TLS verifier takes them in the handshake
/// (`tls.rs`: `PeerVerifier::verify_client_cert` and `verify_server_cert`,
/// which walk the DER to the Ed25519 key with `ed25519_key_of` and check the
/// proof of work and the pinned ring position).
pub fn tls_cert(data: &[u8]) {
    let key = tls::ed25519_key_of(data);
    if let Some(k) = key {
        assert_eq!(k.len(), 32);
    }
    let id = tls::peer_id_of(data);
    assert_eq!(id.is_some(), key.is_some());
    let cert = CertificateDer::from(data);
    let v = PeerVerifier;
    let now = UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_800_000_000));
    let client = v.verify_client_cert(&cert, &[], now);
    assert_eq!(client.is_ok(), key.is_some());
    let pinned = tls::server_name_for(id.map(|i| i.ring_pos()));
    for name in [pinned.as_str(), tls::ANY_PEER, "0000000000000001.chorus"] {
        if let Ok(server_name) = ServerName::try_from(name) {
            let _ = v.verify_server_cert(&cert, &[], &server_name, &[], now);
        }
    }
}

/// Job-store records as a node reads them back on start and on every
/// update (`jobs/store.rs` through `chorus_sdk::stored`): a kind byte picks
/// the record (0 spec, 1 flags, 2 decided task with a 4-byte key, 3 the
/// trust records), the rest is the stored value. A record that decodes is
/// then used as the node uses it: a spec is verified, flags are updated,
/// a decided task is checked, trust records take votes.
pub fn store(data: &[u8]) {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    match kind {
        0 => {
            if let Ok(spec) = stored::decode_spec(rest) {
                crate::round_trip(&spec);
                crate::check_spec(&spec);
            }
        }
        1 => {
            if let Ok(mut flags) = JobFlags::decode(Some(rest)) {
                flags.failovers = flags.failovers.saturating_add(1);
                let bytes = flags.encode().expect("flags encode");
                assert_eq!(JobFlags::decode(Some(&bytes)).ok(), Some(flags));
            }
        }
        2 => {
            let Some((key, value)) = rest.split_first_chunk::<4>() else {
                return;
            };
            let key = u32::from_be_bytes(*key);
            if let Ok(task) = stored::decode_task(key, value) {
                assert_eq!(task.task, key);
                crate::round_trip(&task);
                let spec = crate::seeds::signed_spec(3, 1);
                let header = spec.header();
                crate::check_copy(
                    spec.id(),
                    spec.submitter(),
                    &header,
                    std::iter::once(&task),
                    None,
                );
            }
        }
        3 => {
            if let Ok(mut table) = stored::decode_trust(rest) {
                // What the coordinator does with it (`jobs/mod.rs`): votes,
                // spot checks, trust for credibility, the table for status.
                let now = crate::NOW_MS;
                let a = PeerId([1; 32]);
                let b = PeerId([2; 32]);
                table.record_agree(&a, now);
                table.record_disagree(&b, now);
                table.record_spot_check(&a, true, now);
                table.record_spot_check(&b, false, now);
                let _ = (table.trust(&a, now), table.score(&b), table.snapshot());
                let bytes = stored::encode_trust(&table).expect("trust encodes");
                assert!(stored::decode_trust(&bytes).is_ok());
            }
        }
        _ => {}
    }
}
