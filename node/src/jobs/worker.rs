//! The worker side: run a coordinator's batch of tasks in the sandbox and
//! return signed results.

use std::sync::Arc;

use std::net::SocketAddr;

use chorus_core::RingPos;
use chorus_core::jobs::Admission as FairAdmission;
use chorus_sdk::attest::{Claim, terms_digest};
use chorus_sdk::bundle::{Bundle, BundleId, VerifiedBundle};
use chorus_sdk::identity::PeerId;
use chorus_sdk::job::{
    JOB_FRAME_CAP, JobHeader, JobId, JobRequest, JobResponse, MAX_BATCH_TASKS, RunTasks,
    SignedResults, WorkerResult,
};
use chorus_sdk::outcome::{self, Outcome};
use chorus_sdk::wire::{ErrorKind, Request, Response, WireError};
use serde_bytes::ByteBuf;
use tracing::{debug, warn};

use super::Shared;
use super::flights::FlightError;
use super::gate::Submitter;
use super::terms::{self, Terms};
use crate::sandbox::{SandboxError, TaskReport, TaskSpec};

/// Most bundles kept in memory by a worker.
const MAX_BUNDLES: usize = 64;

/// The `chorus_tasks_executed_total` label of an outcome.
pub fn outcome_label(o: &Outcome) -> &'static str {
    match o {
        Outcome::Ok => "ok",
        Outcome::Exit(_) => "exit",
        Outcome::FuelExhausted => "fuel_exhausted",
        Outcome::MemoryLimit => "memory_limit",
        Outcome::OutputTooLarge => "output_too_large",
        Outcome::InputTooLarge => "input_too_large",
        Outcome::Trap(_) => "trap",
        Outcome::InvalidModule(_) => "invalid_module",
        Outcome::Timeout => "timeout",
        Outcome::HostError(_) => "host_error",
        Outcome::ScratchLimit => "scratch_limit",
    }
}

/// Releases admitted tasks when a batch ends, however it ends.
struct Admitted<'a> {
    shared: &'a Shared,
    submitter: Submitter,
    n: usize,
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.shared.admission().release(&self.submitter, self.n);
        self.shared.refresh_capacity();
    }
}

impl Shared {
    /// The worker's admission queue (a std mutex: held to count, never
    /// across an await).
    pub(super) fn admission(&self) -> std::sync::MutexGuard<'_, FairAdmission<Submitter>> {
        self.admission.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The most tasks one batch may hold: one submitter's share of the queue
    /// (half of it, so that a batch always fits beside another submitter's),
    /// at most [`MAX_BATCH_TASKS`]. Coordinators send at most `batch_tasks`
    /// (capped by the same constant) and at most `cores × queue_per_core`, a
    /// quarter of the queue.
    fn batch_bound(&self) -> usize {
        self.admission().batch_bound(MAX_BATCH_TASKS)
    }

    /// Runs a batch sent by `from`, whose connection comes from `addr`: only
    /// for a job whose signed terms this node holds or gets from the sender,
    /// and only tasks that match them.
    pub(super) async fn run_batch(
        &self,
        run: RunTasks,
        from: PeerId,
        addr: SocketAddr,
    ) -> Response {
        let n = run.tasks.len();
        let bound = self.batch_bound();
        if n > bound {
            // Not busy: it never fits here, however idle this worker is.
            let e = WireError::new(
                ErrorKind::BatchTooLarge,
                format!(
                    "a batch of {n} tasks is over the most this worker takes at once ({bound})"
                ),
            );
            return self.refuse(run.job, from, e);
        }
        let inputs = terms::input_hashes(&run);
        let terms = match self.terms_for(&run, from, addr).await {
            Ok(t) => t,
            Err(e) => return self.refuse(run.job, from, e),
        };
        if let Err(e) = terms.check(&run, &inputs) {
            let e = WireError::new(ErrorKind::TermsMismatch, e.to_string());
            return self.refuse(run.job, from, e);
        }
        // Fair admission: one submitter holds at most half of the queue, so
        // another's batch is never refused as busy because of it.
        let submitter = terms.submitter;
        let admitted = self.admission().admit(&submitter, n, MAX_BATCH_TASKS);
        if let Err(e) = admitted {
            self.metrics.worker_busy.inc();
            return Response::Error(WireError::new(ErrorKind::Busy, e.to_string()));
        }
        let _admitted = Admitted {
            shared: self,
            submitter,
            n,
        };
        self.refresh_capacity();
        let bundle = match self.bundle_for(run.bundle, addr, from.ring_pos()).await {
            Ok(b) => b,
            Err(e) => return Response::Error(e),
        };
        let limits = run.limits;
        // Mounts, environment and runtime come from the signed bundle (their
        // bytes as blobs checked against its hashes), never from the batch's
        // sender: they are part of what this worker attests.
        let prepared = if Shared::needs_files(&bundle) {
            match self.prepare(&bundle, &[addr]).await {
                Ok(p) => Some(p),
                Err(e) => return Response::Error(e),
            }
        } else {
            None
        };
        // Arguments and seed come from the signed bundle, never from the
        // batch's sender: they are part of what this worker attests.
        let argv = match &prepared {
            Some(p) => p.layout.args.clone(),
            None => bundle.manifest().args.clone(),
        };
        let (env, mounts, argv0) = match &prepared {
            Some(p) => (
                p.layout.env.clone(),
                p.layout.mounts.clone(),
                p.layout.argv0.clone(),
            ),
            None => (Vec::new(), Vec::new(), None),
        };
        let bundle_seed = bundle.manifest().seed;
        // Compiling takes a slot in the same fair order as the tasks.
        let slot = match self.slots.acquire(submitter, from).await {
            Ok(s) => s,
            Err(e) => return Response::Error(WireError::new(ErrorKind::Busy, e.to_string())),
        };
        let compiled = match prepared.as_ref().and_then(|p| p.runtime.clone()) {
            Some(rt) => rt.module(self, &limits).await,
            None => {
                let module_bytes: Arc<[u8]> = Arc::from(bundle.module());
                self.engine.compile(module_bytes, limits).await
            }
        };
        drop(slot);
        let module = match compiled {
            Ok(m) => Ok(m),
            Err(SandboxError::LimitAboveCeiling(name)) => {
                // Not the task's fault and not ours to lower: the coordinator
                // sends it to someone who donates more.
                return Response::Error(WireError::new(
                    ErrorKind::Busy,
                    format!("the task's {name} limit is above what this node donates"),
                ));
            }
            Err(e) => match e.into_outcome() {
                Ok(outcome) => Err(outcome),
                Err(e) => {
                    return Response::Error(WireError::new(ErrorKind::Sandbox, e.to_string()));
                }
            },
        };
        // What every attestation of this batch binds besides the task.
        let terms = terms_digest(&run.limits, &run.policy);
        let mut handles = Vec::with_capacity(n);
        for (a, input) in run.tasks.into_iter().zip(inputs) {
            let engine = self.engine.clone();
            let module = module.clone();
            let slots = self.slots.clone();
            let args = argv.clone();
            let (env, mounts, argv0) = (env.clone(), mounts.clone(), argv0.clone());
            let seed = chorus_sdk::job::task_seed(bundle_seed, run.job, a.task);
            handles.push((
                a.task,
                input,
                tokio::spawn(async move {
                    match module {
                        Ok(m) => {
                            // A slot in fair order (submitter, then
                            // coordinator), held while the task runs.
                            let _slot = slots
                                .acquire(submitter, from)
                                .await
                                .map_err(|e| SandboxError::Worker(e.to_string()))?;
                            let spec = TaskSpec {
                                input: a.input.into_vec(),
                                args,
                                seed,
                                limits,
                                env,
                                mounts,
                                argv0,
                            };
                            engine.run(&m, spec).await
                        }
                        Err(outcome) => Ok(TaskReport {
                            outcome,
                            stdout: Vec::new(),
                            stderr: Vec::new(),
                            fuel_used: 0,
                            wall: std::time::Duration::ZERO,
                        }),
                    }
                }),
            ));
        }
        let mut results = Vec::with_capacity(n);
        for (task, input, h) in handles {
            let report = match h.await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => TaskReport {
                    outcome: Outcome::HostError(e.to_string()),
                    stdout: Vec::new(),
                    stderr: Vec::new(),
                    fuel_used: 0,
                    wall: std::time::Duration::ZERO,
                },
                Err(e) => TaskReport {
                    outcome: Outcome::HostError(format!("task panicked or was cancelled: {e}")),
                    stdout: Vec::new(),
                    stderr: Vec::new(),
                    fuel_used: 0,
                    wall: std::time::Duration::ZERO,
                },
            };
            self.metrics
                .tasks_executed
                .with_label_values(&[outcome_label(&report.outcome)])
                .inc();
            self.metrics
                .task_duration
                .observe(report.wall.as_secs_f64());
            self.metrics.fuel_donated.inc_by(report.fuel_used);
            let mut outcome = report.outcome;
            let mut output = report.stdout;
            if self.chaos.corrupt_results {
                corrupt(&mut outcome, &mut output);
            }
            if self.chaos.collude {
                outcome = Outcome::Ok;
                output = super::chaos::colluded_output(run.job, task);
            }
            let digest = outcome::digest(&outcome, &output);
            // Attest every verdict: what ran (input, bundle, terms) and how it ended.
            let attestation = digest.map(|d| {
                let claim = Claim {
                    job: run.job,
                    task,
                    input,
                    bundle: run.bundle,
                    terms,
                    outcome: d,
                };
                claim.sign(&self.identity).signature
            });
            results.push(WorkerResult {
                task,
                digest,
                attestation,
                stderr: if outcome.is_ok() {
                    ByteBuf::new()
                } else {
                    let mut e = report.stderr;
                    e.truncate(chorus_sdk::wire::STDERR_SHIPPED);
                    ByteBuf::from(e)
                },
                outcome,
                output: ByteBuf::from(output),
                fuel_used: report.fuel_used,
                wall_us: u64::try_from(report.wall.as_micros()).unwrap_or(u64::MAX),
            });
        }
        let signed = SignedResults::sign(run.job, results, &self.identity);
        Response::Job(JobResponse::Ran(Box::new(signed)))
    }

    /// Refuses a batch of `job` from `from`: logged, counted by kind, nothing run.
    fn refuse(&self, job: JobId, from: PeerId, e: WireError) -> Response {
        warn!(%job, peer = %from, kind = %e.kind, reason = %e.message, "refused a batch");
        self.metrics
            .worker_refused
            .with_label_values(&[e.kind.as_str()])
            .inc();
        Response::Error(e)
    }

    /// The verified terms of `run`'s job: kept, held here as coordinator or
    /// backup, or fetched once per job from the batch's sender (`addr`,
    /// pinned to `from`) and checked against the bundle's submitter.
    async fn terms_for(
        &self,
        run: &RunTasks,
        from: PeerId,
        addr: SocketAddr,
    ) -> Result<Arc<Terms>, WireError> {
        let job = run.job;
        let unsigned = |why: String| WireError::new(ErrorKind::UnsignedJob, why);
        let got = self
            .term_flights
            .get(
                job,
                || self.terms.get(job),
                || async {
                    let (header, signature) = match self.held_terms(job) {
                        Some(t) => t,
                        None => self.ask_terms(job, from, addr).await?,
                    };
                    if header.bundle != run.bundle {
                        return Err(WireError::new(
                            ErrorKind::TermsMismatch,
                            format!(
                                "the batch runs bundle {}, the job's terms name {}",
                                run.bundle, header.bundle
                            ),
                        ));
                    }
                    let bundle = self.bundle_for(header.bundle, addr, from.ring_pos()).await?;
                    let submitter = header
                        .verify_signed(job, &bundle, &signature)
                        .map_err(|e| unsigned(format!("terms of job {job}: {e}")))?;
                    let terms = Arc::new(Terms { header, submitter });
                    self.terms.insert(job, terms.clone());
                    debug!(%job, submitter = %hex::encode(&terms.submitter[..8]), "job terms verified");
                    Ok(terms)
                },
            )
            .await;
        got.map_err(|e| match e {
            FlightError::Failed(e) => e,
            FlightError::TimedOut(t) => unsigned(format!(
                "no signed terms of job {job} from the sender within {t:?}"
            )),
        })
    }

    /// The header and submitter's signature of `job`, if this node holds the
    /// job (as its coordinator or a backup).
    fn held_terms(&self, job: JobId) -> Option<(JobHeader, ByteBuf)> {
        if let Some(h) = self.jobs.get(&job).map(|h| h.value().clone()) {
            let signature = h.state.lock().ok()?.snapshot.spec.signature.clone();
            return Some((h.header.clone(), signature));
        }
        let b = self.backups.get(&job).map(|b| b.value().clone())?;
        let b = b.lock().ok()?;
        Some(((*b.header).clone(), b.snapshot.spec.signature.clone()))
    }

    /// Asks the sender of a batch for its job's terms.
    async fn ask_terms(
        &self,
        job: JobId,
        from: PeerId,
        addr: SocketAddr,
    ) -> Result<(JobHeader, ByteBuf), WireError> {
        let req = Request::Job(JobRequest::Terms { job });
        let resp: Response = self
            .transport
            .call(
                addr,
                Some(from.ring_pos()),
                &req,
                JOB_FRAME_CAP,
                self.config.fetch_timeout,
            )
            .await
            .map_err(|e| {
                WireError::new(
                    ErrorKind::UnsignedJob,
                    format!("cannot get the terms of job {job} from the sender: {e}"),
                )
            })?;
        match resp {
            Response::Job(JobResponse::Terms { header, signature }) => Ok((*header, signature)),
            Response::Error(e) => Err(WireError::new(
                ErrorKind::UnsignedJob,
                format!("the sender has no terms of job {job}: {e}"),
            )),
            other => Err(WireError::new(
                ErrorKind::UnsignedJob,
                format!("unexpected answer to a terms request: {other:?}"),
            )),
        }
    }

    /// Answers a worker's request for the terms of a job held here.
    pub(super) fn serve_terms(&self, job: JobId) -> Response {
        match self.held_terms(job) {
            Some((header, signature)) => Response::Job(JobResponse::Terms {
                header: Box::new(header),
                signature,
            }),
            None => Response::Error(WireError::new(
                ErrorKind::UnknownJob,
                format!("no job {job} here"),
            )),
        }
    }

    /// The verified bundle `id`: from memory, else fetched from `addr` (where
    /// the batch came from, pinned to the sender's key `from`) and verified.
    /// One fetch per bundle at a time, bundles in parallel, each under the
    /// flights' timeout.
    async fn bundle_for(
        &self,
        id: BundleId,
        addr: SocketAddr,
        from: RingPos,
    ) -> Result<Arc<VerifiedBundle>, WireError> {
        self.bundle_flights
            .get(
                id,
                || self.bundles.get(&id).map(|b| b.clone()),
                || self.fetch_bundle(id, addr, from),
            )
            .await
            .map_err(|e| match e {
                FlightError::Failed(e) => e,
                FlightError::TimedOut(t) => WireError::new(
                    ErrorKind::Bundle,
                    format!("cannot fetch bundle {id}: no answer within {t:?}"),
                ),
            })
    }

    /// Fetches, verifies and keeps bundle `id` (one flight of [`Shared::bundle_for`]).
    async fn fetch_bundle(
        &self,
        id: BundleId,
        addr: SocketAddr,
        from: RingPos,
    ) -> Result<Arc<VerifiedBundle>, WireError> {
        let req = Request::Job(JobRequest::FetchBundle { bundle: id });
        let resp: Response = self
            .transport
            .call(
                addr,
                Some(from),
                &req,
                JOB_FRAME_CAP,
                self.config.fetch_timeout,
            )
            .await
            .map_err(|e| {
                WireError::new(ErrorKind::Bundle, format!("cannot fetch bundle {id}: {e}"))
            })?;
        let bytes = match resp {
            Response::Job(JobResponse::Bundle(b)) => b,
            Response::Error(e) => {
                return Err(WireError::new(
                    ErrorKind::Bundle,
                    format!("the sender refused bundle {id}: {e}"),
                ));
            }
            other => {
                return Err(WireError::new(
                    ErrorKind::Bundle,
                    format!("unexpected answer to a bundle fetch: {other:?}"),
                ));
            }
        };
        let verified = Bundle::decode(&bytes)
            .and_then(|b| b.verify_as(&id))
            .map_err(|e| {
                warn!(bundle = %id, error = %e, "refused a bundle from a batch's sender");
                WireError::new(ErrorKind::BadBundle, e.to_string())
            })?;
        let verified = Arc::new(verified);
        self.remember_bundle(verified.clone());
        debug!(bundle = %id, "fetched bundle");
        Ok(verified)
    }

    /// Keeps a verified bundle for workers that ask for it and for later batches.
    pub(super) fn remember_bundle(&self, b: Arc<VerifiedBundle>) {
        if self.bundles.len() >= MAX_BUNDLES {
            // Forget one that no running job here coordinates.
            let coordinated: std::collections::HashSet<BundleId> =
                self.jobs.iter().map(|j| j.value().bundle.id()).collect();
            let victim = self
                .bundles
                .iter()
                .map(|e| *e.key())
                .find(|k| !coordinated.contains(k));
            if let Some(v) = victim {
                self.bundles.remove(&v);
            }
        }
        self.bundles.insert(b.id(), b);
    }

    /// Answers a worker's bundle fetch.
    pub(super) fn serve_bundle(&self, id: BundleId, _from: PeerId) -> Response {
        match self.bundles.get(&id).map(|b| b.encode()) {
            Some(Ok(bytes)) => Response::Job(JobResponse::Bundle(ByteBuf::from(bytes))),
            Some(Err(e)) => Response::Error(WireError::new(ErrorKind::Bundle, e.to_string())),
            None => Response::Error(WireError::new(
                ErrorKind::UnknownBundle,
                format!("no bundle {id} here"),
            )),
        }
    }
}

/// `--chaos corrupt-results`: a consistent lie. Outputs get their bytes
/// flipped; an error becomes a made-up success, so that every result votes
/// differently from an honest one.
fn corrupt(outcome: &mut Outcome, output: &mut Vec<u8>) {
    match outcome {
        Outcome::Ok | Outcome::Exit(_) => {
            if output.is_empty() {
                output.push(0x5a);
            }
            for b in output.iter_mut().step_by(7) {
                *b ^= 0xff;
            }
        }
        _ => {
            *outcome = Outcome::Ok;
            *output = b"corrupted by chaos".to_vec();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corruption_always_changes_the_vote() {
        for (o, out) in [
            (Outcome::Ok, b"hello world".to_vec()),
            (Outcome::Ok, Vec::new()),
            (Outcome::Exit(3), b"x".to_vec()),
            (Outcome::FuelExhausted, Vec::new()),
        ] {
            let honest = outcome::digest(&o, &out);
            let (mut o2, mut out2) = (o.clone(), out.clone());
            corrupt(&mut o2, &mut out2);
            assert_ne!(honest, outcome::digest(&o2, &out2), "{o:?}");
        }
    }
}
