//! The client API: build a job, submit it to the grid through any node, watch
//! it run, fetch its verified outputs, cancel it.
//!
//! A [`Client`] owns a QUIC client endpoint with a fresh identity. It talks to
//! one node at a time; that node forwards every job request to the job's
//! coordinator. At [`Client::connect`] it also learns the addresses of other
//! nodes (their capacity records), so that when the current node stops
//! answering, or answers `unavailable` (the coordinator is unreachable right
//! now, e.g. while the ring recovers from its death), the call is retried
//! through the next known node, a bounded number of times within a bounded
//! time ([`ClientConfig`]). Retrying is safe: resubmitting the same
//! [`JobSpec`] names the same job, and status and results are reads.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use chorus_sdk::client::{Client, JobBuilder, sign_module};
//! use chorus_sdk::identity::Identity;
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let me = Identity::generate()?;
//! let module = std::fs::read("examples/wasm/primes.wasm")?;
//! let bundle = sign_module("primes", module, &me)?;
//!
//! #[derive(serde::Serialize)]
//! struct Range { lo: u64, hi: u64 }
//! let mut job = JobBuilder::new(&bundle).replicas(3).quorum(2);
//! for i in 0..10u64 {
//!     job = job.input_typed(&Range { lo: i * 1_000_000, hi: (i + 1) * 1_000_000 })?;
//! }
//! let spec = job.build()?;
//!
//! let client = Client::connect("127.0.0.1:7001".parse()?).await?;
//! let id = client.submit(&spec).await?;
//! let mut progress = client.watch(id, Duration::from_millis(250));
//! while let Some(status) = progress.recv().await {
//!     let s = status?;
//!     println!("{}/{} verified, {} running", s.verified, s.tasks, s.running);
//! }
//! let results = client.wait(id).await?;
//!
//! #[derive(serde::Deserialize, Debug)]
//! struct Count { lo: u64, hi: u64, count: u64, largest: u64 }
//! for task in 0..results.len() as u32 {
//!     let c: Count = results.typed(task)?;
//!     println!("{c:?}");
//! }
//! # Ok(()) }
//! ```
//!
//! The runnable version is the `mandelbrot-submit` example of the repository
//! (`examples/mandelbrot-submit`), and `chorus demo` does the same against a
//! ring it starts itself.

use std::net::{Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chorus_core::jobs::Policy;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_bytes::ByteBuf;
use tokio::sync::mpsc;

use crate::bundle::{Bundle, BundleError, Limits, Manifest, VerifiedBundle};
use crate::capacity::SignedCapacity;
use crate::identity::Identity;
use crate::job::{
    JOB_FRAME_CAP, JobError, JobId, JobRequest, JobResponse, JobSpec, JobStatus, ResultsPage,
    TaskResult, sign_cancel,
};
use crate::transport::{Transport, TransportError};
use crate::wire::{ErrorKind, Request, Response, WireError};

/// How patient a [`Client`] is. The defaults ride out the death of a
/// coordinator (its successor takes the job over within seconds).
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Timeout of one call to a node (connect, request, response). Default 10 s.
    pub call_timeout: Duration,
    /// Timeout of one submission, which carries the bundle and every input
    /// and is answered once the coordinator stored the job. Default 60 s.
    pub submit_timeout: Duration,
    /// How long one request keeps being retried through other nodes before
    /// its last error is returned. Default 60 s.
    pub retry_for: Duration,
    /// Most attempts of one request, over all nodes. Default 64.
    pub max_attempts: u32,
    /// Longest a [`Client::wait`] or [`Client::watch`] request is held open
    /// at the coordinator waiting for the job to change (progress is pushed:
    /// the answer comes as soon as something changes). Default 10 s, the
    /// most a node holds one ([`crate::job::MAX_WATCH_MS`]).
    pub poll_interval: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            call_timeout: Duration::from_secs(10),
            submit_timeout: Duration::from_secs(60),
            retry_for: Duration::from_secs(60),
            max_attempts: 64,
            poll_interval: Duration::from_millis(crate::job::MAX_WATCH_MS),
        }
    }
}

/// Errors of the client. None of them leaves the client unusable.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The local QUIC endpoint or its identity could not be created; nothing was sent.
    #[error("client endpoint: {0}")]
    Endpoint(String),
    /// No node answered (the last one tried is named), after every retry.
    /// For a submission, whether the job was stored is unknown: submitting
    /// the same spec again is safe (it names the same job).
    #[error("node {node}: {source}")]
    Transport {
        /// The last node tried.
        node: SocketAddr,
        /// Why the call failed.
        source: TransportError,
    },
    /// A node refused the request with a wire error (`unknown_job`,
    /// `bad_bundle`, `bad_policy`, `not_enough_workers`, `forbidden`, ...).
    /// Nothing changed on the grid.
    #[error("node {node} refused: {error}")]
    Node {
        /// The node that answered.
        node: SocketAddr,
        /// Its error: [`WireError::kind`] is stable, `message` is for people.
        error: WireError,
    },
    /// A node answered something that is not an answer to the request.
    #[error("unexpected answer from {node}: {what}")]
    Unexpected {
        /// The node that answered.
        node: SocketAddr,
        /// What came back.
        what: String,
    },
    /// The job could not be built (no inputs, bad policy, input over the cap);
    /// nothing was sent.
    #[error(transparent)]
    Job(#[from] JobError),
    /// The bundle could not be built or signed; nothing was sent.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// A typed input could not be encoded as MessagePack; nothing was sent.
    #[error("cannot encode an input: {0}")]
    Encode(String),
    /// A task has no output to give: it ended in an agreed error, no result
    /// could be accepted, it is not decided yet, or there is no such task.
    #[error("task {task}: {what}")]
    Task {
        /// The task.
        task: u32,
        /// Why it has no output.
        what: String,
    },
    /// A task's output is not the MessagePack encoding of the type asked for.
    #[error("task {task}: cannot decode its output: {source}")]
    Decode {
        /// The task.
        task: u32,
        /// The decoder's error.
        source: rmp_serde::decode::Error,
    },
}

impl ClientError {
    /// The node's wire error kind, when a node refused the request.
    pub fn kind(&self) -> Option<&ErrorKind> {
        match self {
            ClientError::Node { error, .. } => Some(&error.kind),
            _ => None,
        }
    }
}

/// A connection to the grid through any of its nodes. Cheap to clone; clones
/// share the endpoint and the list of known nodes.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    transport: Transport,
    /// Known nodes, the one in use first. Locked only to copy or rotate,
    /// never across an `.await`.
    nodes: Mutex<Vec<SocketAddr>>,
    config: ClientConfig,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.transport.close();
    }
}

/// Whether a request may be retried on `unknown_job`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Known {
    /// The job was acknowledged: `unknown_job` is a node that has not caught
    /// up yet (the ring is healing around a dead coordinator), so retry.
    Acknowledged,
    /// Maybe not: `unknown_job` is final.
    Maybe,
}

impl Client {
    /// Connects through `node` with the default [`ClientConfig`] and learns
    /// the other nodes it knows of.
    pub async fn connect(node: SocketAddr) -> Result<Client, ClientError> {
        Client::connect_with(node, ClientConfig::default()).await
    }

    /// Connects through `node`: creates the endpoint with a fresh identity,
    /// asks `node` for the capacity records it knows and keeps their
    /// addresses as fallbacks. Fails if `node` does not answer.
    pub async fn connect_with(
        node: SocketAddr,
        config: ClientConfig,
    ) -> Result<Client, ClientError> {
        let identity = Identity::generate().map_err(|e| ClientError::Endpoint(e.to_string()))?;
        let bind: SocketAddr = if node.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let transport =
            Transport::client(&identity, bind).map_err(|e| ClientError::Endpoint(e.to_string()))?;
        let client = Client {
            inner: Arc::new(Inner {
                transport,
                nodes: Mutex::new(vec![node]),
                config,
            }),
        };
        let records = client.peers_of(node).await?;
        client.learn(&records);
        Ok(client)
    }

    /// The nodes this client knows, the one in use first.
    pub fn nodes(&self) -> Vec<SocketAddr> {
        self.lock_nodes().clone()
    }

    /// The capacity records the current node knows (its own first), as it
    /// sent them; their addresses become fallbacks of this client.
    pub async fn peers(&self) -> Result<Vec<SignedCapacity>, ClientError> {
        match self.call(&Request::Peers, Known::Maybe, false).await? {
            (_, Response::Peers(list)) => {
                self.learn(&list.records);
                Ok(list.records)
            }
            (node, other) => Err(unexpected(node, &other)),
        }
    }

    /// Submits a job; returns its id once its coordinator stored it. From
    /// then on the job is the grid's to finish (or to fail explicitly).
    pub async fn submit(&self, spec: &JobSpec) -> Result<JobId, ClientError> {
        let req = Request::Job(JobRequest::Submit {
            spec: Box::new(spec.clone()),
            forwarded: false,
        });
        match self.call(&req, Known::Maybe, true).await? {
            (node, Response::Job(JobResponse::Accepted { job, .. })) => {
                if job != spec.id() {
                    return Err(ClientError::Unexpected {
                        node,
                        what: format!("acknowledged job {job}, submitted {}", spec.id()),
                    });
                }
                Ok(job)
            }
            (node, other) => Err(unexpected(node, &other)),
        }
    }

    /// A job's progress now.
    pub async fn status(&self, job: JobId) -> Result<JobStatus, ClientError> {
        self.status_inner(job, Known::Maybe).await
    }

    /// One page of final results: decided tasks from index `from` on (see
    /// [`ResultsPage`]).
    pub async fn results_page(&self, job: JobId, from: u32) -> Result<ResultsPage, ClientError> {
        self.results_page_inner(job, from, Known::Maybe).await
    }

    /// The results decided so far, paging through all of them. Tasks not
    /// decided yet have no entry. See [`Client::wait`] to wait for all.
    pub async fn results(&self, job: JobId) -> Result<JobResults, ClientError> {
        self.results_inner(job, Known::Maybe).await
    }

    /// Progress of `job`, pushed: the first status, then every status that
    /// differs from the one before, as soon as the coordinator has it (each
    /// request is held open up to `interval` waiting for a change), until the
    /// job is done (that status is the last) or a request fails for good (the
    /// error is the last item). Dropping the receiver stops it.
    pub fn watch(
        &self,
        job: JobId,
        interval: Duration,
    ) -> mpsc::Receiver<Result<JobStatus, ClientError>> {
        let (tx, rx) = mpsc::channel(16);
        let client = self.clone();
        tokio::spawn(async move {
            let mut last: Option<JobStatus> = None;
            let mut known = Known::Maybe;
            loop {
                let after = last.as_ref().map(|s| s.version);
                let status = tokio::select! {
                    s = client.watch_inner(job, after, interval, known) => s,
                    _ = tx.closed() => return,
                };
                let status = match status {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                known = Known::Acknowledged;
                let done = status.done;
                if last.as_ref() != Some(&status) {
                    last = Some(status.clone());
                    if tx.send(Ok(status)).await.is_err() {
                        return;
                    }
                }
                if done {
                    return;
                }
            }
        });
        rx
    }

    /// Waits until `job` is done, then fetches every result.
    pub async fn wait(&self, job: JobId) -> Result<JobResults, ClientError> {
        self.wait_with(job, |_| {}).await
    }

    /// [`Client::wait`], calling `progress` with every status as the
    /// coordinator pushes it (at least every [`ClientConfig::poll_interval`]).
    pub async fn wait_with(
        &self,
        job: JobId,
        mut progress: impl FnMut(&JobStatus),
    ) -> Result<JobResults, ClientError> {
        let interval = self.inner.config.poll_interval;
        let mut known = Known::Maybe;
        let mut refreshed = Instant::now();
        let mut after: Option<u64> = None;
        loop {
            let status = self.watch_inner(job, after, interval, known).await?;
            known = Known::Acknowledged;
            progress(&status);
            if status.done || status.cancelled {
                let results = self.results_inner(job, known).await?;
                // A done job has every task decided; a page cut by a node that
                // has not caught up yet (just after a failover) is fetched again.
                if results.decided() == results.len() || results.status.cancelled {
                    return Ok(results);
                }
                // Not caught up: ask again shortly rather than hold a watch
                // on a version that will not change.
                tokio::time::sleep(Duration::from_millis(50)).await;
                after = None;
            } else if after == Some(status.version) {
                // Nothing changed within the wait; a coordinator that moved
                // starts its versions afresh, so take whatever it has next.
                after = None;
            } else {
                after = Some(status.version);
            }
            // Learn of nodes that joined while the job runs, for failover.
            if refreshed.elapsed() > Duration::from_secs(10) {
                refreshed = Instant::now();
                let _ = self.peers().await;
            }
        }
    }

    /// Cancels `job`: its undecided tasks fail, decided ones stay. `submitter`
    /// must be the key that signed the job's bundle.
    pub async fn cancel(&self, job: JobId, submitter: &Identity) -> Result<(), ClientError> {
        let req = Request::Job(JobRequest::Cancel {
            job,
            signature: ByteBuf::from(sign_cancel(job, submitter)),
            forwarded: false,
        });
        match self.call(&req, Known::Maybe, false).await? {
            (_, Response::Job(JobResponse::Ok)) => Ok(()),
            (_, Response::Job(JobResponse::Status(_))) => Ok(()),
            (node, other) => Err(unexpected(node, &other)),
        }
    }

    /// Closes the endpoint (also done when the last clone is dropped).
    pub fn close(&self) {
        self.inner.transport.close();
    }

    async fn status_inner(&self, job: JobId, known: Known) -> Result<JobStatus, ClientError> {
        let req = Request::Job(JobRequest::Status {
            job,
            forwarded: false,
        });
        match self.call(&req, known, false).await? {
            (_, Response::Job(JobResponse::Status(s))) => Ok(*s),
            (node, other) => Err(unexpected(node, &other)),
        }
    }

    /// The status once its version passes `after` (at once when `after` is
    /// `None`), or as it is after `wait`.
    async fn watch_inner(
        &self,
        job: JobId,
        after: Option<u64>,
        wait: Duration,
        known: Known,
    ) -> Result<JobStatus, ClientError> {
        let Some(after) = after else {
            return self.status_inner(job, known).await;
        };
        let wait_ms = u64::try_from(wait.as_millis())
            .unwrap_or(u64::MAX)
            .min(crate::job::MAX_WATCH_MS);
        let req = Request::Job(JobRequest::Watch {
            job,
            after,
            wait_ms,
            forwarded: false,
        });
        let timeout = self.inner.config.call_timeout + Duration::from_millis(wait_ms);
        match self.call_with(&req, known, timeout).await? {
            (_, Response::Job(JobResponse::Status(s))) => Ok(*s),
            (node, other) => Err(unexpected(node, &other)),
        }
    }

    async fn results_page_inner(
        &self,
        job: JobId,
        from: u32,
        known: Known,
    ) -> Result<ResultsPage, ClientError> {
        let req = Request::Job(JobRequest::Results {
            job,
            from,
            forwarded: false,
        });
        match self.call(&req, known, false).await? {
            (_, Response::Job(JobResponse::Results(page))) => Ok(*page),
            (node, other) => Err(unexpected(node, &other)),
        }
    }

    async fn results_inner(&self, job: JobId, known: Known) -> Result<JobResults, ClientError> {
        let mut from = 0u32;
        let mut out: Option<JobResults> = None;
        loop {
            let page = self.results_page_inner(job, from, known).await?;
            let node = self.current();
            let all = out.get_or_insert_with(|| JobResults::empty(page.status.clone()));
            all.status = page.status;
            for (task, result) in page.results {
                all.insert(task, result);
            }
            match page.next {
                None => break,
                Some(next) if next > from => from = next,
                Some(next) => {
                    return Err(ClientError::Unexpected {
                        node,
                        what: format!("results page from {from} ends at {next}"),
                    });
                }
            }
        }
        Ok(out.unwrap_or_else(|| JobResults::empty(empty_status(job))))
    }

    /// One request with failover: on a transport error, or an answer that
    /// says "try again" (`unavailable`, `busy`, and `unknown_job` for a job
    /// known to exist), the next known node is tried after a short pause,
    /// until an answer, `max_attempts` or `retry_for`. Returns the answering
    /// node and its answer.
    async fn call(
        &self,
        req: &Request,
        known: Known,
        submit: bool,
    ) -> Result<(SocketAddr, Response), ClientError> {
        let cfg = &self.inner.config;
        let timeout = if submit {
            cfg.submit_timeout
        } else {
            cfg.call_timeout
        };
        self.call_with(req, known, timeout).await
    }

    /// [`Client::call`] with its own timeout per attempt.
    async fn call_with(
        &self,
        req: &Request,
        known: Known,
        timeout: Duration,
    ) -> Result<(SocketAddr, Response), ClientError> {
        let cfg = &self.inner.config;
        let start = Instant::now();
        let mut attempt = 0u32;
        loop {
            let node = self.current();
            let result: Result<Response, _> = self
                .inner
                .transport
                .call(node, None, req, JOB_FRAME_CAP, timeout)
                .await;
            let err = match result {
                Ok(Response::Error(error)) => {
                    let retry = retryable(error.kind.clone(), known);
                    let err = ClientError::Node { node, error };
                    if !retry {
                        return Err(err);
                    }
                    err
                }
                Ok(resp) => return Ok((node, resp)),
                Err(source) => ClientError::Transport { node, source },
            };
            attempt += 1;
            if attempt >= cfg.max_attempts || start.elapsed() >= cfg.retry_for {
                return Err(err);
            }
            tracing::debug!(%node, attempt, error = %err, "retrying through the next node");
            let known_nodes = self.rotate(node);
            tokio::time::sleep(backoff(attempt, known_nodes)).await;
        }
    }

    async fn peers_of(&self, node: SocketAddr) -> Result<Vec<SignedCapacity>, ClientError> {
        let timeout = self.inner.config.call_timeout;
        match self
            .inner
            .transport
            .call(node, None, &Request::Peers, JOB_FRAME_CAP, timeout)
            .await
        {
            Ok(Response::Peers(list)) => Ok(list.records),
            Ok(Response::Error(error)) => Err(ClientError::Node { node, error }),
            Ok(other) => Err(unexpected(node, &other)),
            Err(source) => Err(ClientError::Transport { node, source }),
        }
    }

    /// Adds the addresses of records whose signature holds to the fallbacks.
    /// Their age is not checked: a stale address costs one failed call.
    fn learn(&self, records: &[SignedCapacity]) {
        let mut nodes = self.lock_nodes();
        for r in records {
            if r.verify(r.record.timestamp_ms, u64::MAX).is_ok() && !nodes.contains(&r.record.addr)
            {
                nodes.push(r.record.addr);
            }
        }
    }

    fn current(&self) -> SocketAddr {
        self.lock_nodes()[0]
    }

    /// Moves `failed` to the back, if it is still the node in use; returns
    /// the number of known nodes.
    fn rotate(&self, failed: SocketAddr) -> usize {
        let mut nodes = self.lock_nodes();
        if nodes.len() > 1 && nodes[0] == failed {
            nodes.rotate_left(1);
        }
        nodes.len()
    }

    fn lock_nodes(&self) -> std::sync::MutexGuard<'_, Vec<SocketAddr>> {
        // The list is never left half-updated, so a poisoned lock is still good.
        self.inner
            .nodes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Whether a node's error says "try again, maybe elsewhere".
fn retryable(kind: impl Into<ErrorKind>, known: Known) -> bool {
    match kind.into() {
        ErrorKind::UnknownJob => known == Known::Acknowledged,
        k => k.is_retryable(),
    }
}

/// Pause before attempt `attempt + 1`: none while untried nodes remain in
/// this round, then 100 ms doubling per round, at most 2 s.
fn backoff(attempt: u32, nodes: usize) -> Duration {
    let nodes = u32::try_from(nodes.max(1)).unwrap_or(u32::MAX);
    if !attempt.is_multiple_of(nodes) {
        return Duration::from_millis(20);
    }
    let round = (attempt / nodes).min(5);
    Duration::from_millis(100u64 << round).min(Duration::from_secs(2))
}

fn unexpected(node: SocketAddr, resp: &Response) -> ClientError {
    let mut what = format!("{resp:?}");
    what.truncate(200);
    ClientError::Unexpected { node, what }
}

fn empty_status(job: JobId) -> JobStatus {
    JobStatus {
        job,
        coordinator: crate::wire::Peer {
            id: job.0,
            addr: ([0, 0, 0, 0], 0).into(),
        },
        tasks: 0,
        pending: 0,
        running: 0,
        verified: 0,
        failed: 0,
        replicas_run: 0,
        disagreements: 0,
        rejected: Vec::new(),
        done: false,
        cancelled: false,
        failovers: 0,
        reputation: Vec::new(),
        version: 0,
    }
}

/// Signs a raw WebAssembly module into a bundle named `name` (version "1",
/// default limits, 3 replicas and a quorum of 2 unless the job says otherwise).
pub fn sign_module(
    name: &str,
    module: Vec<u8>,
    submitter: &Identity,
) -> Result<VerifiedBundle, ClientError> {
    let manifest = Manifest::new(name, "1", submitter.public_key());
    Ok(Bundle::sign(manifest, module, submitter)?)
}

/// Builds a [`JobSpec`]: a bundle, one input per task, and optionally the
/// replication policy and limits (the manifest's by default).
#[derive(Clone, Debug)]
pub struct JobBuilder<'a> {
    bundle: &'a VerifiedBundle,
    inputs: Vec<Vec<u8>>,
    replicas: Option<u32>,
    quorum: Option<u32>,
    max_replicas: Option<u32>,
    limits: Option<Limits>,
    nonce: Option<u64>,
}

impl<'a> JobBuilder<'a> {
    /// A job of `bundle` with no tasks yet.
    pub fn new(bundle: &'a VerifiedBundle) -> Self {
        JobBuilder {
            bundle,
            inputs: Vec::new(),
            replicas: None,
            quorum: None,
            max_replicas: None,
            limits: None,
            nonce: None,
        }
    }

    /// Adds one task with `input` as its stdin.
    pub fn input(mut self, input: Vec<u8>) -> Self {
        self.inputs.push(input);
        self
    }

    /// Adds one task per input, in order.
    pub fn inputs(mut self, inputs: impl IntoIterator<Item = Vec<u8>>) -> Self {
        self.inputs.extend(inputs);
        self
    }

    /// Adds one task whose stdin is `value` in MessagePack (what
    /// `chorus_sdk::guest::run` decodes).
    pub fn input_typed<T: Serialize + ?Sized>(self, value: &T) -> Result<Self, ClientError> {
        let bytes = rmp_serde::to_vec(value).map_err(|e| ClientError::Encode(e.to_string()))?;
        Ok(self.input(bytes))
    }

    /// Replicas per task. Without [`JobBuilder::quorum`] the quorum is then a
    /// majority of them.
    pub fn replicas(mut self, replicas: u32) -> Self {
        self.replicas = Some(replicas);
        self
    }

    /// Matching replicas needed to accept a result.
    pub fn quorum(mut self, quorum: u32) -> Self {
        self.quorum = Some(quorum);
        self
    }

    /// Most replicas per task, counting those sent on disagreement
    /// (default: twice the replicas).
    pub fn max_replicas(mut self, max_replicas: u32) -> Self {
        self.max_replicas = Some(max_replicas);
        self
    }

    /// Limits of every task (default: the manifest's).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = Some(limits);
        self
    }

    /// The nonce that tells this job from an identical earlier one (default: random).
    pub fn nonce(mut self, nonce: u64) -> Self {
        self.nonce = Some(nonce);
        self
    }

    /// The spec, checked as a node would check it (but for the number of live workers).
    pub fn build(self) -> Result<JobSpec, ClientError> {
        let m = self.bundle.manifest();
        let policy = match (self.replicas, self.quorum, self.max_replicas) {
            (None, None, None) => None,
            (Some(r), q, max) => Some(Policy::new(r, q, max).map_err(JobError::from)?),
            (None, q, max) => Some(
                Policy::new(m.replicas, Some(q.unwrap_or(m.quorum)), max)
                    .map_err(JobError::from)?,
            ),
        };
        let nonce = self.nonce.unwrap_or_else(random_nonce);
        Ok(JobSpec::new(
            self.bundle,
            self.inputs,
            policy,
            self.limits,
            nonce,
        )?)
    }
}

fn random_nonce() -> u64 {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 8];
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_ok() {
        return u64::from_le_bytes(bytes);
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A job's final results, by task index, with the status they were cut at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobResults {
    /// The job's status when the last page was cut.
    pub status: JobStatus,
    results: Vec<Option<TaskResult>>,
}

impl JobResults {
    fn empty(status: JobStatus) -> Self {
        let n = status.tasks as usize;
        JobResults {
            status,
            results: vec![None; n],
        }
    }

    fn insert(&mut self, task: u32, result: TaskResult) {
        let i = task as usize;
        if i >= self.results.len() {
            self.results.resize(i + 1, None);
        }
        self.results[i] = Some(result);
    }

    /// Results from a list of `(task, result)` pairs (tests and tools).
    pub fn from_parts(status: JobStatus, results: Vec<(u32, TaskResult)>) -> Self {
        let mut out = JobResults::empty(status);
        for (task, result) in results {
            out.insert(task, result);
        }
        out
    }

    /// Tasks in the job.
    pub fn len(&self) -> usize {
        self.results.len()
    }

    /// Whether the job has no task (never, for a job a node accepted).
    pub fn is_empty(&self) -> bool {
        self.results.is_empty()
    }

    /// Tasks with a final result (accepted or failed).
    pub fn decided(&self) -> usize {
        self.results.iter().filter(|r| r.is_some()).count()
    }

    /// Whether every task has an accepted result: an output, or an error a
    /// quorum agreed on.
    pub fn all_accepted(&self) -> bool {
        self.results
            .iter()
            .all(|r| r.as_ref().is_some_and(TaskResult::is_verified))
    }

    /// Task `task`'s final result, if decided.
    pub fn get(&self, task: u32) -> Option<&TaskResult> {
        self.results.get(task as usize).and_then(Option::as_ref)
    }

    /// Every task's final result in task order (`None`: not decided).
    pub fn iter(&self) -> impl Iterator<Item = (u32, Option<&TaskResult>)> {
        self.results
            .iter()
            .enumerate()
            .map(|(i, r)| (u32::try_from(i).unwrap_or(u32::MAX), r.as_ref()))
    }

    /// Task `task`'s accepted output bytes.
    pub fn output(&self, task: u32) -> Result<&[u8], ClientError> {
        let what = match self.get(task) {
            Some(TaskResult::Output(bytes)) => return Ok(bytes),
            Some(TaskResult::Error { outcome, .. }) => format!("agreed task error: {outcome}"),
            Some(TaskResult::Failed { reason }) => format!("no accepted result: {reason}"),
            None if (task as usize) < self.results.len() => "not decided yet".to_string(),
            None => format!("no such task (the job has {})", self.results.len()),
        };
        Err(ClientError::Task { task, what })
    }

    /// Task `task`'s accepted output decoded from MessagePack (what
    /// `chorus_sdk::guest::run` encodes).
    pub fn typed<T: DeserializeOwned>(&self, task: u32) -> Result<T, ClientError> {
        rmp_serde::from_slice(self.output(task)?)
            .map_err(|source| ClientError::Decode { task, source })
    }

    /// Every task's output in task order, or the first task without one.
    pub fn outputs(&self) -> Result<Vec<&[u8]>, ClientError> {
        (0..self.results.len())
            .map(|i| self.output(u32::try_from(i).unwrap_or(u32::MAX)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use chorus_core::RingPos;

    use super::*;
    use crate::outcome::{Outcome, TrapCode};

    fn status(tasks: u32) -> JobStatus {
        let mut s = empty_status(JobId(RingPos(7)));
        s.tasks = tasks;
        s
    }

    fn module() -> Vec<u8> {
        b"\0asm\x01\0\0\0".to_vec()
    }

    #[test]
    fn builder_policy_defaults_follow_the_manifest_or_a_majority() {
        let me = Identity::generate().unwrap();
        let b = sign_module("t", module(), &me).unwrap();
        let spec = JobBuilder::new(&b).input(vec![1]).build().unwrap();
        assert_eq!(spec.policy, Policy::new(3, Some(2), None).unwrap());
        let spec = JobBuilder::new(&b)
            .input(vec![1])
            .replicas(5)
            .build()
            .unwrap();
        assert_eq!(spec.policy.quorum, 3);
        assert_eq!(spec.policy.max_replicas, 10);
        let spec = JobBuilder::new(&b)
            .input(vec![1])
            .quorum(3)
            .max_replicas(4)
            .build()
            .unwrap();
        assert_eq!((spec.policy.replicas, spec.policy.quorum), (3, 3));
        assert_eq!(spec.policy.max_replicas, 4);
        assert!(matches!(
            JobBuilder::new(&b)
                .input(vec![])
                .replicas(2)
                .quorum(3)
                .build(),
            Err(ClientError::Job(JobError::Policy(_)))
        ));
        assert!(matches!(
            JobBuilder::new(&b).build(),
            Err(ClientError::Job(JobError::NoTasks))
        ));
    }

    #[test]
    fn random_nonces_make_distinct_jobs_and_fixed_ones_the_same() {
        let me = Identity::generate().unwrap();
        let b = sign_module("t", module(), &me).unwrap();
        let a = JobBuilder::new(&b).input(vec![1]).build().unwrap();
        let c = JobBuilder::new(&b).input(vec![1]).build().unwrap();
        assert_ne!(a.id(), c.id());
        let a = JobBuilder::new(&b).input(vec![1]).nonce(9).build().unwrap();
        let c = JobBuilder::new(&b).input(vec![1]).nonce(9).build().unwrap();
        assert_eq!(a.id(), c.id());
        assert!(a.verify().is_ok());
    }

    #[test]
    fn typed_inputs_and_outputs_round_trip_through_messagepack() {
        #[derive(Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Range {
            lo: u64,
            hi: u64,
        }
        let me = Identity::generate().unwrap();
        let b = sign_module("t", module(), &me).unwrap();
        let spec = JobBuilder::new(&b)
            .input_typed(&Range { lo: 1, hi: 2 })
            .unwrap()
            .build()
            .unwrap();
        let r = JobResults::from_parts(
            status(1),
            vec![(0, TaskResult::Output(spec.inputs[0].clone()))],
        );
        assert_eq!(r.typed::<Range>(0).unwrap(), Range { lo: 1, hi: 2 });
        assert!(matches!(
            r.typed::<String>(0),
            Err(ClientError::Decode { task: 0, .. })
        ));
    }

    #[test]
    fn results_tell_accepted_from_missing_and_failed() {
        let r = JobResults::from_parts(
            status(4),
            vec![
                (0, TaskResult::Output(ByteBuf::from(b"a".to_vec()))),
                (
                    1,
                    TaskResult::Error {
                        outcome: Outcome::Trap(TrapCode::Unreachable),
                        output: ByteBuf::new(),
                    },
                ),
                (
                    3,
                    TaskResult::Failed {
                        reason: "no quorum".into(),
                    },
                ),
            ],
        );
        assert_eq!(r.len(), 4);
        assert_eq!(r.decided(), 3);
        assert!(!r.all_accepted());
        assert_eq!(r.output(0).unwrap(), b"a");
        let msg = |t| r.output(t).unwrap_err().to_string();
        assert!(msg(1).contains("agreed task error"), "{}", msg(1));
        assert!(msg(2).contains("not decided"), "{}", msg(2));
        assert!(msg(3).contains("no quorum"), "{}", msg(3));
        assert!(msg(9).contains("no such task"), "{}", msg(9));
        assert!(r.outputs().is_err());
        let ok = JobResults::from_parts(
            status(2),
            vec![
                (1, TaskResult::Output(ByteBuf::from(b"y".to_vec()))),
                (
                    0,
                    TaskResult::Error {
                        outcome: Outcome::Exit(2),
                        output: ByteBuf::new(),
                    },
                ),
            ],
        );
        assert!(ok.all_accepted());
    }

    #[test]
    fn only_try_again_errors_are_retried() {
        assert!(retryable("unavailable", Known::Maybe));
        assert!(retryable("busy", Known::Maybe));
        assert!(!retryable("unknown_job", Known::Maybe));
        assert!(retryable("unknown_job", Known::Acknowledged));
        assert!(!retryable("bad_policy", Known::Acknowledged));
        assert!(!retryable("unsupported", Known::Acknowledged));
    }

    #[test]
    fn backoff_is_short_within_a_round_and_bounded() {
        assert_eq!(backoff(1, 5), Duration::from_millis(20));
        assert_eq!(backoff(5, 5), Duration::from_millis(200));
        assert_eq!(backoff(10, 5), Duration::from_millis(400));
        assert!(backoff(1000, 1) <= Duration::from_secs(2));
        assert!(backoff(0, 0) <= Duration::from_secs(2));
    }

    #[tokio::test]
    async fn connect_fails_clearly_when_nobody_answers() {
        let config = ClientConfig {
            call_timeout: Duration::from_millis(300),
            ..ClientConfig::default()
        };
        // A UDP port nobody listens on.
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = sock.local_addr().unwrap();
        drop(sock);
        let err = Client::connect_with(addr, config).await.unwrap_err();
        assert!(matches!(err, ClientError::Transport { node, .. } if node == addr));
    }
}
