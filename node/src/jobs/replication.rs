//! Copies of other coordinators' jobs: keeping them, forwarding to their
//! coordinator while it lives, taking a job over when it is gone, and
//! forgetting finished copies.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use chorus_sdk::attest::check_proof;
use chorus_sdk::job::{
    DecidedTask, JOB_FRAME_CAP, JobCopy, JobHeader, JobId, JobRequest, JobResponse, JobSnapshot,
    verify_cancel,
};
use chorus_sdk::wire::{ErrorKind, Peer, Request, Response, WireError};
use serde_bytes::ByteBuf;
use tracing::{debug, info, warn};

use super::coordinator::JobHandle;
use super::{Role, Shared};

/// A copy of another coordinator's job.
pub(super) struct Backup {
    /// When the last copy arrived.
    pub(super) updated: Instant,
    /// The coordinator that sent it (`None` when loaded from the store).
    pub(super) coordinator: Option<Peer>,
    /// The job as copied.
    pub(super) snapshot: JobSnapshot,
    /// Its header: what the attestations of its decided tasks are checked
    /// against (shared: an update is checked without copying it).
    pub(super) header: Arc<JobHeader>,
    /// The submitter's key, which signs a cancel.
    pub(super) submitter: Option<[u8; 32]>,
}

/// Who sent a copy, as far as copies go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sender {
    /// The job's owner by our lookup, or the coordinator of our copy.
    Owner,
    /// One of our successors, while we own the job.
    Successor,
}

/// Whether `decided` holds failed tasks that no proof backs (a cancel
/// signature backs them all; the caller checks it).
fn unproven_failures<'a>(
    mut decided: impl Iterator<Item = &'a DecidedTask>,
    cancelled: bool,
) -> bool {
    !cancelled && decided.any(|d| !d.result.is_verified())
}

impl Backup {
    /// A copy from its snapshot and its header (`snapshot.spec.header()`,
    /// which hashes every input: the caller has it already, or computes it).
    pub(super) fn new(
        coordinator: Option<Peer>,
        snapshot: JobSnapshot,
        header: JobHeader,
    ) -> Backup {
        Backup {
            updated: Instant::now(),
            coordinator,
            header: Arc::new(header),
            submitter: snapshot.spec.submitter(),
            snapshot,
        }
    }
}

impl Shared {
    /// Keeps (or updates) a copy of another coordinator's job, once it holds
    /// up: the sender is the job's owner by our own lookup, the spec carries
    /// its submitter's signature, every decided task a quorum of valid
    /// attestations by ring members, a cancel the submitter's signature. A
    /// copy that fails any of these changes nothing and is counted in
    /// `chorus_job_copies_refused_total`.
    pub(super) async fn take_copy(
        self: &Arc<Self>,
        job: JobId,
        coordinator: Peer,
        copy: JobCopy,
    ) -> Response {
        if self.jobs.contains_key(&job) {
            // We coordinate it ourselves (a takeover raced the old owner):
            // our state is at least as new.
            return Response::Job(JobResponse::Ok);
        }
        let Some(sender) = self.sender_of_copies(job, &coordinator).await else {
            return self.refuse_copy(job, &coordinator, "the sender is not the job's owner");
        };
        // Failed tasks carry no proof: only the owner may say so (or the
        // submitter's cancel, which the copy carries and we check).
        let unproven = match &copy {
            JobCopy::Full(s) => unproven_failures(s.decided.values(), s.cancel.is_some()),
            JobCopy::Update(u) => unproven_failures(u.decided.iter(), u.cancel.is_some()),
        };
        if sender == Sender::Successor && unproven {
            return self.refuse_copy(
                job,
                &coordinator,
                "failed tasks without proof from a node that is not the job's owner",
            );
        }
        let entry = match copy {
            JobCopy::Full(snapshot) => {
                if snapshot.spec.id() != job {
                    return self.refuse_copy(job, &coordinator, "the spec is not the job's");
                }
                let bundle = match snapshot.spec.verify() {
                    Ok(b) => b,
                    Err(e) => return self.refuse_copy(job, &coordinator, &e.to_string()),
                };
                let header = snapshot.spec.header();
                let source = coordinator.addr;
                if let Err(why) = self
                    .check_copy(
                        job,
                        snapshot.spec.submitter(),
                        &header,
                        snapshot.decided.values(),
                        snapshot.cancel.as_ref(),
                    )
                    .await
                {
                    return self.refuse_copy(job, &coordinator, &why);
                }
                let (snapshot, stored) = self.put_job_blocking(Role::Backup, job, *snapshot).await;
                if let Err(e) = stored {
                    // Refused, so the coordinator sends the whole copy again.
                    warn!(%job, error = %e, "could not store a job copy");
                    return Response::Error(WireError::new(
                        ErrorKind::Store,
                        format!("could not store the copy of job {job}: {e}"),
                    ));
                }
                let b = Arc::new(std::sync::Mutex::new(Backup::new(
                    Some(coordinator),
                    snapshot,
                    header,
                )));
                self.backups.insert(job, b);
                if Self::needs_files(&bundle) {
                    // The job's files and runtime, so that this node can
                    // serve them to the workers if it takes the job over:
                    // fetched from the coordinator in the background (they
                    // may be large; the copy is held either way).
                    let me = self.clone();
                    tokio::spawn(async move {
                        match me.ensure_blobs(&bundle, &[source]).await {
                            Ok(()) => debug!(%job, "holding the files of a job copy"),
                            Err(e) => {
                                warn!(%job, error = %e, "could not fetch the files of a job copy")
                            }
                        }
                    });
                }
                return Response::Job(JobResponse::Ok);
            }
            JobCopy::Update(update) => {
                let Some(b) = self.backups.get(&job).map(|b| b.clone()) else {
                    return Response::Job(JobResponse::NeedSpec);
                };
                let known = b.lock().ok().map(|b| (b.submitter, b.header.clone()));
                let Some((submitter, header)) = known else {
                    return Response::Error(WireError::new(ErrorKind::Internal, "backup poisoned"));
                };
                if let Err(why) = self
                    .check_copy(
                        job,
                        submitter,
                        &header,
                        update.decided.iter(),
                        update.cancel.as_ref(),
                    )
                    .await
                {
                    return self.refuse_copy(job, &coordinator, &why);
                }
                (b, update)
            }
        };
        let (b, update) = entry;
        let Ok(mut b) = b.lock() else {
            return Response::Error(WireError::new(ErrorKind::Internal, "backup poisoned"));
        };
        if let Some(store) = &self.store {
            let mut r = Ok(());
            if !update.decided.is_empty() {
                r = store.add_decided(Role::Backup, job, &update.decided);
            }
            if r.is_ok()
                && let Some(signature) = &update.cancel
                && !b.snapshot.is_cancelled()
            {
                r = store.set_cancelled(Role::Backup, job, signature);
            }
            if r.is_ok() && update.failovers != b.snapshot.failovers {
                r = store.set_failovers(Role::Backup, job, update.failovers);
            }
            if let Err(e) = r {
                // Ask for the whole copy next time rather than lose this part.
                warn!(%job, error = %e, "could not store a job update");
                self.metrics.job_store_errors.inc();
                return Response::Job(JobResponse::NeedSpec);
            }
        }
        b.coordinator = Some(coordinator);
        b.updated = Instant::now();
        b.snapshot.apply(update);
        Response::Job(JobResponse::Ok)
    }

    /// Counts and logs a refused copy; the answer says why.
    fn refuse_copy(&self, job: JobId, sender: &Peer, why: &str) -> Response {
        self.metrics.job_copies_refused.inc();
        // Counted; logged at info, since a forger can send many.
        info!(%job, sender = %sender.id, addr = %sender.addr, reason = why, "refused a job copy");
        Response::Error(WireError::new(
            ErrorKind::Forbidden,
            format!("copy of job {job} refused: {why}"),
        ))
    }

    /// Who `sender` is to `job`: the coordinator of our copy already or
    /// the job's owner by our own lookup ([`Sender::Owner`]); one of our
    /// successors while we own the job ourselves ([`Sender::Successor`]: a
    /// coordinator we joined in front of, or one a lookup misled while the
    /// ring was repairing); or nobody who may send copies.
    async fn sender_of_copies(&self, job: JobId, sender: &Peer) -> Option<Sender> {
        if self
            .copy_coordinator(job)
            .is_some_and(|c| c.id == sender.id)
        {
            return Some(Sender::Owner);
        }
        match self.ring.lookup(job.0).await {
            Ok(done) if done.owner.id == sender.id => Some(Sender::Owner),
            Ok(done) if done.owner.id == self.me.id => self
                .ring
                .view()
                .await
                .is_ok_and(|v| v.successors.iter().any(|s| s.id == sender.id))
                .then_some(Sender::Successor),
            _ => None,
        }
    }

    /// Checks what a copy adds to `snapshot` (the spec already verified):
    /// every accepted task carries at least `quorum` valid attestations of
    /// its result by distinct ring members, and a cancel is the submitter's.
    async fn check_copy<'a>(
        &self,
        job: JobId,
        submitter: Option<[u8; 32]>,
        header: &JobHeader,
        decided: impl Iterator<Item = &'a DecidedTask>,
        cancel: Option<&ByteBuf>,
    ) -> Result<(), String> {
        if let Some(signature) = cancel {
            let Some(key) = submitter else {
                return Err("the job has no submitter to cancel it".into());
            };
            if !verify_cancel(job, &key, signature) {
                return Err("the cancel is not signed by the submitter".into());
            }
        }
        let mut per_task = Vec::new();
        let mut signers = BTreeSet::new();
        for d in decided {
            // No proof exists for a failed task: only the owner (checked by
            // the caller) may say so.
            if !d.result.is_verified() {
                continue;
            }
            let digest = d
                .result
                .outcome_digest()
                .ok_or_else(|| format!("task {} is accepted without a verdict", d.task))?;
            let claim = header
                .claim(job, d.task, digest)
                .ok_or_else(|| format!("task {} is not in the job", d.task))?;
            let needed = d
                .rule
                .signers_needed(&header.policy)
                .map_err(|e| format!("task {}: {e}", d.task))?;
            let keys = check_proof(&claim, &d.attestations, &header.policy, &d.rule)
                .map_err(|e| format!("task {}: {e}", d.task))?;
            signers.extend(keys.iter().copied());
            per_task.push((d.task, keys, needed));
        }
        let mut members = BTreeSet::new();
        for key in signers {
            if self.is_member(&key).await {
                members.insert(key);
            }
        }
        for (task, keys, needed) in per_task {
            let n = keys.iter().filter(|k| members.contains(*k)).count();
            if n < needed as usize {
                return Err(format!(
                    "task {task}: {n} of its signers are ring members, {needed} must be"
                ));
            }
        }
        Ok(())
    }

    /// Whether `key` is a ring member: our lookup of its position finds it,
    /// and it signs our challenge. Cached.
    pub(super) async fn is_member(&self, key: &[u8; 32]) -> bool {
        if *key == self.identity.public_key() {
            return true;
        }
        // A lookup can fail while the ring repairs itself: ask a few times.
        for attempt in 0..3 {
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            let ring = &self.ring;
            let lookup = |pos| async move { ring.lookup(pos).await.ok().map(|d| d.owner) };
            if let Some(member) = self
                .members
                .check(key, lookup, &self.transport, self.config.liveness_timeout)
                .await
            {
                return member;
            }
        }
        false
    }

    /// Stores a whole job off the async threads (a spec may be 64 MiB and
    /// every write is an fsync) and gives the snapshot back. A failure is
    /// counted in `chorus_job_store_errors_total`; without a store, `Ok`.
    pub(super) async fn put_job_blocking(
        &self,
        role: Role,
        job: JobId,
        snapshot: JobSnapshot,
    ) -> (JobSnapshot, Result<(), String>) {
        let Some(store) = self.store.clone() else {
            return (snapshot, Ok(()));
        };
        let snap = Arc::new(snapshot);
        let write = snap.clone();
        let r = tokio::task::spawn_blocking(move || store.put_job(role, job, &write))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        if r.is_err() {
            self.metrics.job_store_errors.inc();
        }
        let snapshot = Arc::try_unwrap(snap).unwrap_or_else(|a| (*a).clone());
        (snapshot, r)
    }

    /// Forgets a copy (the job is coordinated here now).
    pub(super) fn drop_copy(&self, job: JobId) {
        if self.backups.remove(&job).is_some()
            && let Some(store) = &self.store
            && let Err(e) = store.remove(Role::Backup, job)
        {
            warn!(%job, error = %e, "could not remove a job copy from the store");
        }
    }

    /// The coordinator named in our copy of `job`.
    pub(super) fn copy_coordinator(&self, job: JobId) -> Option<Peer> {
        self.backups
            .get(&job)
            .and_then(|b| b.lock().ok().and_then(|b| b.coordinator.clone()))
    }

    /// Whether the coordinator that sent us a copy of `job` still runs it.
    /// A ring view can be briefly wrong (a stale predecessor while the ring
    /// converges), so a backup asks before it takes a job over.
    async fn coordinator_alive(&self, job: JobId) -> bool {
        let Some(c) = self.copy_coordinator(job) else {
            return false;
        };
        if c.id == self.me.id {
            return false;
        }
        let req = Request::Job(JobRequest::Status {
            job,
            forwarded: true,
        });
        matches!(
            self.transport
                .call::<_, Response>(c.addr, Some(c.id), &req, JOB_FRAME_CAP, self.config.liveness_timeout)
                .await,
            Ok(Response::Job(JobResponse::Status(s))) if s.coordinator.id == c.id
        )
    }

    /// Turns a copy into a coordinated job, unless its coordinator still
    /// runs it.
    pub(super) async fn promote(self: &Arc<Self>, job: JobId) -> Option<Arc<JobHandle>> {
        let _one = self.promote_lock.lock().await;
        if let Some(h) = self.jobs.get(&job) {
            return Some(h.clone());
        }
        // A takeover needs both: this node owns the job by its own view (a
        // forwarder's word is not enough), and the coordinator named in the
        // copy does not answer for it.
        if !self.backups.contains_key(&job)
            || !self.owns(job.0).await
            || self.coordinator_alive(job).await
        {
            return None;
        }
        let (_, backup) = self.backups.remove(&job)?;
        let mut snapshot = match backup.lock() {
            Ok(g) => g.snapshot.clone(),
            Err(_) => return None,
        };
        let bundle = match snapshot.spec.verify() {
            Ok(v) => v,
            Err(e) => {
                warn!(%job, error = %e, "backup copy does not verify; dropped");
                return None;
            }
        };
        snapshot.failovers = snapshot.failovers.saturating_add(1);
        if let Some(store) = self.store.clone() {
            let failovers = snapshot.failovers;
            // Moves the spec (up to 64 MiB) in one transaction: off the async threads.
            let r = tokio::task::spawn_blocking(move || store.promote(job, failovers))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
            if let Err(e) = r {
                warn!(%job, error = %e, "could not store a taken-over job; it runs from memory");
                self.metrics.job_store_errors.inc();
            }
        }
        self.metrics.job_failovers.inc();
        info!(%job, decided = snapshot.decided.len(), "taking over a job whose coordinator is gone");
        Some(self.launch(job, snapshot, Arc::new(bundle)))
    }

    /// Takes over every unfinished copy whose job this node now owns.
    pub(super) async fn take_over_orphans(self: &Arc<Self>) {
        let copies: Vec<JobId> = self.backups.iter().map(|e| *e.key()).collect();
        for job in copies {
            let unfinished = self
                .backups
                .get(&job)
                .and_then(|b| b.lock().ok().map(|b| !b.snapshot.is_done()))
                .unwrap_or(false);
            if unfinished && self.owns(job.0).await {
                self.promote(job).await;
            }
        }
    }

    /// Forgets finished copies not updated for `keep_done`, and unfinished
    /// ones not updated for `keep_unfinished` (their coordinator went
    /// silent and this node never came to own the job: nobody will finish
    /// it here, and the copy would otherwise be kept forever).
    pub(super) fn expire_copies(&self) {
        let keep = self.config.keep_done;
        let keep_unfinished = self.config.keep_unfinished;
        let old: Vec<JobId> = self
            .backups
            .iter()
            .filter(|e| {
                e.value().lock().is_ok_and(|b| {
                    let age = b.updated.elapsed();
                    if b.snapshot.is_done() {
                        age > keep
                    } else {
                        age > keep_unfinished
                    }
                })
            })
            .map(|e| *e.key())
            .collect();
        for job in old {
            self.drop_copy(job);
        }
    }
}
