//! Routing of client requests: any node takes them, the owner of the job id
//! (the coordinator) answers them. Owner lookup and forwarding live here and
//! nowhere else: submissions and every per-job question (status, watch,
//! results, cancel) go through [`Shared::owner_elsewhere`] and
//! [`Shared::forward`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chorus_core::RingPos;
use chorus_sdk::job::{
    JOB_FRAME_CAP, JobId, JobRequest, JobResponse, JobSnapshot, JobSpec, JobStatus, MAX_WATCH_MS,
    verify_cancel,
};
use chorus_sdk::wire::{ErrorKind, Peer, Request, Response, WireError};
use serde_bytes::ByteBuf;
use tracing::{debug, info};

use super::coordinator::{JobHandle, page_of};
use super::{Role, Shared, job_error};
use crate::ring_actor::RingError;

/// Lookups tried before a client is told the owner cannot be found.
const LOOKUP_TRIES: u32 = 4;
/// The wait after the first failed lookup; doubled after each (0.3 + 0.6 + 1.2 s).
const LOOKUP_RETRY_FIRST: Duration = Duration::from_millis(300);

/// Why `spec`'s limits cannot be met: fewer than `replicas` of the known
/// nodes (`records`) announce a ceiling that admits them. A node that
/// announces none is counted as admitting (it decides when a batch comes).
fn limits_refused(
    spec: &JobSpec,
    records: &[chorus_sdk::capacity::SignedCapacity],
) -> Option<String> {
    let mut above: Option<&'static str> = None;
    let admitting = records
        .iter()
        .filter(|s| match &s.record.ceiling {
            None => true,
            Some(c) => match spec.limits.first_above(c) {
                None => true,
                Some(name) => {
                    above.get_or_insert(name);
                    false
                }
            },
        })
        .count();
    let replicas = spec.policy.replicas as usize;
    (admitting < replicas).then(|| {
        format!(
            "the job's limits are above what the workers donate: {admitting} of {} known nodes accept them (first limit refused: {}), and replicas {replicas} need {replicas}",
            records.len(),
            above.unwrap_or("?")
        )
    })
}

/// A per-job question, answered by the job's coordinator.
#[derive(Clone, Debug)]
pub(super) enum Ask {
    /// The status now.
    Status,
    /// The status once its version passes `after`, or after `wait_ms`.
    Watch {
        /// The version the client saw.
        after: u64,
        /// How long to wait, in ms.
        wait_ms: u64,
    },
    /// A page of results from task `from`.
    Results {
        /// First task.
        from: u32,
    },
    /// Cancel, signed by the submitter.
    Cancel {
        /// The submitter's signature.
        signature: ByteBuf,
    },
}

impl Ask {
    /// The request that carries this question to the coordinator.
    fn onward(&self, job: JobId) -> Request {
        let req = match self.clone() {
            Ask::Status => JobRequest::Status {
                job,
                forwarded: true,
            },
            Ask::Watch { after, wait_ms } => JobRequest::Watch {
                job,
                after,
                wait_ms,
                forwarded: true,
            },
            Ask::Results { from } => JobRequest::Results {
                job,
                from,
                forwarded: true,
            },
            Ask::Cancel { signature } => JobRequest::Cancel {
                job,
                signature,
                forwarded: true,
            },
        };
        Request::Job(req)
    }
}

fn poisoned() -> Response {
    Response::Error(WireError::new(ErrorKind::Internal, "job state poisoned"))
}

fn unknown(job: JobId) -> Response {
    Response::Error(WireError::new(
        ErrorKind::UnknownJob,
        format!("no job {job} is known here"),
    ))
}

impl Shared {
    /// Why an adaptive job cannot reach its error target on the workers
    /// known now: even all of them agreeing, one per network (replica
    /// diversity), with the trust this coordinator has in each, would not
    /// be credible enough. A new grid of three nodes cannot meet 1e-4 at
    /// the assumed saboteur fraction; full verification can.
    fn credibility_refused(
        &self,
        spec: &JobSpec,
        records: &[chorus_sdk::capacity::SignedCapacity],
    ) -> Option<String> {
        if !spec.policy.is_adaptive() {
            return None;
        }
        let f = self.machine_config().assumed_saboteurs;
        let now = super::now_ms();
        let mut best: std::collections::HashMap<u128, f64> = std::collections::HashMap::new();
        if let Ok(r) = self.reputation.lock() {
            for s in records {
                let e =
                    chorus_core::jobs::trust::worker_error(r.trust(&s.record.peer_id(), now), f);
                let slot = best.entry(self.network(s.record.addr)).or_insert(1.0);
                *slot = slot.min(e);
            }
        }
        let errors: Vec<f64> = best.into_values().collect();
        let needed = chorus_core::jobs::trust::votes_needed(&errors, spec.policy.max_error);
        let max = spec.policy.max_replicas as usize;
        match needed {
            Some(n) if n <= max => None,
            _ => Some(format!(
                "adaptive verification cannot reach max_error {} here: {} networks of workers are known, and while they are new (assumed saboteur fraction {f}) even all of them agreeing, at most {max}, would not be credible enough; use --verify full, a larger --max-error, or more nodes",
                spec.policy.max_error,
                errors.len()
            )),
        }
    }

    /// The owner of `key` when it is another node; `Ok(None)` when it is us.
    ///
    /// A failed lookup is tried again a few times (about two seconds in all):
    /// while the ring repairs itself after a death, the owner may briefly not
    /// claim its keys (its predecessor is unknown), and a client should not
    /// see that.
    pub(super) async fn owner_elsewhere(&self, key: RingPos) -> Result<Option<Peer>, Response> {
        let mut wait = LOOKUP_RETRY_FIRST;
        let mut tries = 0;
        loop {
            tries += 1;
            match self.ring.lookup(key).await {
                Ok(done) if done.owner.id != self.me.id => return Ok(Some(done.owner)),
                Ok(_) => return Ok(None),
                Err(RingError::Lookup(e)) if tries < LOOKUP_TRIES => {
                    debug!(%key, error = %e, tries, "lookup failed; trying again");
                    tokio::time::sleep(wait).await;
                    wait = wait.saturating_mul(2);
                }
                Err(e) => {
                    return Err(Response::Error(WireError::new(
                        ErrorKind::Unavailable,
                        format!("cannot find the owner of {key}: {e}"),
                    )));
                }
            }
        }
    }

    /// Sends `req` on to `owner` and returns its answer.
    pub(super) async fn forward(&self, owner: Peer, req: &Request) -> Response {
        match self
            .transport
            .call::<_, Response>(
                owner.addr,
                Some(owner.id),
                req,
                JOB_FRAME_CAP,
                self.config.fetch_timeout.saturating_mul(3),
            )
            .await
        {
            Ok(r) => r,
            Err(e) => Response::Error(WireError::new(
                ErrorKind::Unavailable,
                format!(
                    "the coordinator {} at {} did not answer: {e}",
                    owner.id, owner.addr
                ),
            )),
        }
    }

    /// Takes a submission: forwarded to the owner of its id unless that is
    /// us; the owner checks it, stores it, copies it to its successors, and
    /// only then acknowledges it.
    pub(super) async fn submit(
        self: &Arc<Self>,
        spec: JobSpec,
        forwarded: bool,
        addr: SocketAddr,
    ) -> Response {
        let bundle = match spec.verify() {
            Ok(b) => b,
            Err(e) => return Response::Error(job_error(&e)),
        };
        let id = spec.id();
        if self.jobs.contains_key(&id) {
            return self.accepted(id);
        }
        if !forwarded {
            match self.owner_elsewhere(id.0).await {
                Ok(Some(owner)) => {
                    let req = Request::Job(JobRequest::Submit {
                        spec: Box::new(spec),
                        forwarded: true,
                    });
                    return self.forward(owner, &req).await;
                }
                Ok(None) => {}
                Err(e) => return e,
            }
        }
        // Its files and runtime, held here for the workers (fetched from
        // the node that forwarded it, or uploaded here by the client).
        if Self::needs_files(&bundle)
            && let Err(e) = self.ensure_blobs(&bundle, &[addr]).await
        {
            return Response::Error(e);
        }
        let records = self.capacity.list();
        let live = records.len();
        if let Err(e) = spec.policy.check_workers(live) {
            return Response::Error(WireError::new(ErrorKind::NotEnoughWorkers, e.to_string()));
        }
        // Limits no worker would take: refused now, not retried forever.
        if let Some(why) = limits_refused(&spec, &records) {
            return Response::Error(WireError::new(ErrorKind::NotEnoughWorkers, why));
        }
        if let Some(why) = self.credibility_refused(&spec, &records) {
            return Response::Error(WireError::new(ErrorKind::NotEnoughWorkers, why));
        }
        let (snapshot, stored) = self
            .put_job_blocking(Role::Primary, id, JobSnapshot::new(spec))
            .await;
        if let Err(e) = stored {
            return Response::Error(WireError::new(
                ErrorKind::Store,
                format!("could not store job {id}: {e}"),
            ));
        }
        self.drop_copy(id);
        let handle = self.launch(id, snapshot, Arc::new(bundle));
        // Copy the job to the successors before acknowledging it, so that the
        // death of this node right after the answer loses nothing.
        self.persist_and_replicate(&handle).await;
        self.metrics.jobs_submitted.inc();
        info!(job = %id, "job accepted");
        self.accepted(id)
    }

    fn accepted(&self, job: JobId) -> Response {
        Response::Job(JobResponse::Accepted {
            job,
            coordinator: self.me.clone(),
        })
    }

    /// Status, watch, results and cancel: answered here when this node
    /// coordinates the job, else forwarded to the owner of its id (or, from
    /// a copy, to the coordinator that sent it).
    pub(super) async fn routed(
        self: &Arc<Self>,
        job: JobId,
        forwarded: bool,
        ask: Ask,
    ) -> Response {
        if let Some(h) = self.jobs.get(&job).map(|h| h.clone()) {
            return self.local(&h, ask).await;
        }
        if !forwarded {
            match self.owner_elsewhere(job.0).await {
                Ok(Some(owner)) => return self.forward(owner, &ask.onward(job)).await,
                Ok(None) => {}
                Err(e) => return e,
            }
        }
        // We are the owner (by our lookup or the forwarder's): carry the job
        // on from our copy if we have one.
        match self.promote(job).await {
            Some(h) => self.local(&h, ask).await,
            None => match self.copy_coordinator(job) {
                // A copy whose coordinator is alive: ask it.
                Some(c) if c.id != self.me.id => self.forward(c, &ask.onward(job)).await,
                // Only the owner may say a job does not exist. A lookup
                // that pointed here while the ring repairs itself (a slow
                // owner taken for dead) is not the last word: try again.
                _ if !self.owns(job.0).await => Response::Error(WireError::new(
                    ErrorKind::Unavailable,
                    format!(
                        "this node does not own job {job} by its own view; the ring is repairing, try again"
                    ),
                )),
                _ => unknown(job),
            },
        }
    }

    /// [`JobRequest::Held`]: a page of results as this node holds them, as
    /// the job's coordinator or from its copy; never forwarded. Every result
    /// carries its attestations, so the client checks it whoever serves it.
    pub(super) fn held(&self, job: JobId, from: u32) -> Response {
        if let Some(h) = self.jobs.get(&job).map(|h| h.clone()) {
            return match h.state.lock() {
                Ok(st) => Response::Job(JobResponse::Results(Box::new(h.page(&st, from, self)))),
                Err(_) => poisoned(),
            };
        }
        let Some(b) = self.backups.get(&job).map(|b| b.clone()) else {
            return unknown(job);
        };
        let Ok(b) = b.lock() else {
            return poisoned();
        };
        let snap = &b.snapshot;
        let verified = snap
            .decided
            .values()
            .filter(|d| d.result.is_verified())
            .count();
        let decided = snap.decided.len();
        let tasks = snap.spec.inputs.len();
        let status = JobStatus {
            job,
            coordinator: b.coordinator.clone().unwrap_or_else(|| self.me.clone()),
            tasks: u32::try_from(tasks).unwrap_or(u32::MAX),
            pending: u32::try_from(tasks.saturating_sub(decided)).unwrap_or(u32::MAX),
            running: 0,
            verified: u32::try_from(verified).unwrap_or(u32::MAX),
            failed: u32::try_from(decided - verified).unwrap_or(u32::MAX),
            replicas_run: 0,
            disagreements: 0,
            rejected: Vec::new(),
            done: snap.is_done(),
            cancelled: snap.is_cancelled(),
            failovers: snap.failovers,
            waiting_for_networks: 0,
            replicas_per_task: 0.0,
            spot_checks: 0,
            reopened: 0,
            reputation: Vec::new(),
            version: 0,
        };
        Response::Job(JobResponse::Results(Box::new(page_of(
            snap, &b.header, from, status,
        ))))
    }

    /// The job's status as it is now.
    fn status_now(&self, h: &JobHandle) -> Response {
        match h.state.lock() {
            Ok(st) => Response::Job(JobResponse::Status(Box::new(h.status(&st, self)))),
            Err(_) => poisoned(),
        }
    }

    async fn local(&self, h: &Arc<JobHandle>, ask: Ask) -> Response {
        match ask {
            Ask::Status => self.status_now(h),
            Ask::Watch { after, wait_ms } => {
                let mut rx = h.version.subscribe();
                let wait = Duration::from_millis(wait_ms.min(MAX_WATCH_MS));
                // Answer at once when the job is done (it never changes
                // again) or its version differs from the client's: newer, or
                // from another coordinator's history (after a failover).
                let done = h.state.lock().is_ok_and(|st| st.is_done());
                if !done && *rx.borrow() == after {
                    let _ = tokio::time::timeout(wait, rx.wait_for(|v| *v != after)).await;
                }
                self.status_now(h)
            }
            Ask::Results { from } => match h.state.lock() {
                Ok(st) => Response::Job(JobResponse::Results(Box::new(h.page(&st, from, self)))),
                Err(_) => poisoned(),
            },
            Ask::Cancel { signature } => {
                let job = h.id;
                let Some(key) = h
                    .state
                    .lock()
                    .ok()
                    .and_then(|st| st.snapshot.spec.submitter())
                else {
                    return Response::Error(WireError::new(
                        ErrorKind::Forbidden,
                        "job has no submitter",
                    ));
                };
                if !verify_cancel(job, &key, &signature) {
                    return Response::Error(WireError::new(
                        ErrorKind::Forbidden,
                        format!("only the submitter of job {job} can cancel it"),
                    ));
                }
                if h.cancel(self, signature) {
                    info!(%job, "job cancelled");
                    self.persist_and_replicate(h).await;
                }
                self.status_now(h)
            }
        }
    }
}
