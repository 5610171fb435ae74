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
//! let spec = job.build(&me)?;
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

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_bytes::ByteBuf;
use tokio::sync::mpsc;

use crate::capacity::SignedCapacity;
use crate::identity::Identity;
use crate::job::{JOB_FRAME_CAP, JobHeader, JobId, JobSpec, sign_cancel};
use crate::members::Members;
use crate::transport::Transport;
use crate::wire::{ErrorKind, JobRequest, JobResponse, JobStatus, Request, Response, ResultsPage};

mod builder;
mod error;
mod results;
mod verify;

pub use self::builder::{JobBuilder, sign_module};
pub use self::error::ClientError;
pub use self::results::{JobResults, Refusal};

/// Nodes asked, in turn, whether an attestation's signer is a ring member
/// before it counts as none (see [`crate::members`]).
const MEMBER_TRIES: usize = 3;
/// Rounds over a job's holders for results whose proof did not hold.
const REFETCH_ROUNDS: usize = 3;

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
    /// most a node holds one ([`crate::wire::MAX_WATCH_MS`]).
    pub poll_interval: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            call_timeout: Duration::from_secs(10),
            submit_timeout: Duration::from_secs(60),
            retry_for: Duration::from_secs(60),
            max_attempts: 64,
            poll_interval: Duration::from_millis(crate::wire::MAX_WATCH_MS),
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
    /// Which attestation signers are ring members.
    members: Members,
    /// Headers of jobs this client submitted or checked, to check results against.
    headers: Mutex<HashMap<JobId, JobHeader>>,
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
                members: Members::new(),
                headers: Mutex::new(HashMap::new()),
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
        let header = spec.header();
        self.remember_header(header.id(), &header);
        let req = Request::Job(JobRequest::Submit {
            spec: Box::new(spec.clone()),
            forwarded: false,
        });
        // Checked here, before any node is asked: a node would refuse the
        // frame, and retrying elsewhere cannot help.
        let bytes =
            crate::frame::encoded_len(&req).map_err(|e| ClientError::Encode(e.to_string()))?;
        if bytes > JOB_FRAME_CAP {
            return Err(ClientError::TooLarge {
                bytes,
                cap: JOB_FRAME_CAP,
            });
        }
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

    /// One page of final results as the node sent it: decided tasks from
    /// index `from` on (see [`ResultsPage`]), **not checked** against their
    /// proofs. [`Client::results`] and [`Client::wait`] check every result.
    pub async fn results_page(&self, job: JobId, from: u32) -> Result<ResultsPage, ClientError> {
        self.results_page_inner(job, from, Known::Maybe).await
    }

    /// The results decided so far, paging through all of them, each checked
    /// against its attestations (results that fail are refused and fetched
    /// from other holders: [`JobResults::refused`]). Tasks not decided yet
    /// have no entry. See [`Client::wait`] to wait for all.
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
            } else {
                // The coordinator answers at once when its version differs
                // (a newer one, or another coordinator's after a failover).
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
            .min(crate::wire::MAX_WATCH_MS);
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

    /// Every result of `job`, each checked against its proof
    /// ([`verify`](self::verify)); results that fail are refused, named
    /// with the node that served them, and fetched again from the job's
    /// other holders. A task no holder can prove ends as
    /// [`TaskResult::Failed`](crate::wire::TaskResult::Failed) saying so.
    async fn results_inner(&self, job: JobId, known: Known) -> Result<JobResults, ClientError> {
        let mut from = 0u32;
        let mut out: Option<JobResults> = None;
        let mut header = self.header_of(job);
        // What a node's answers may make this client hold: the tasks it
        // submitted when it did, else the protocol's bound.
        let limit = header.as_ref().map_or(crate::job::MAX_TASKS, |h| h.tasks());
        let mut bad = BTreeSet::new();
        let mut liars = HashSet::new();
        loop {
            let (node, page) = self.results_page_from(job, from, known).await?;
            let all = out.get_or_insert_with(|| JobResults::empty(page.status.clone(), limit));
            all.status = page.status.clone();
            let next = page.next;
            let checked = self
                .take_page(job, node, page, &mut header, all, &mut bad)
                .await;
            if checked.refused > 0 {
                liars.insert(node);
            }
            match next {
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
        let mut all = out.unwrap_or_else(|| JobResults::empty(empty_status(job), limit));
        // A few rounds over the holders, a pause apart: a copy can lag its
        // coordinator, and a signer's membership can be unknowable for a
        // moment while the ring repairs itself.
        for round in 0..REFETCH_ROUNDS {
            if bad.is_empty() {
                break;
            }
            if round > 0 {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            self.refetch(job, &mut header, &mut all, &mut bad, &liars)
                .await;
        }
        for task in bad {
            all.insert(
                task,
                crate::wire::TaskResult::Failed {
                    reason: "no node served a result whose proof holds".into(),
                },
            );
        }
        if let Some(h) = header {
            all.set_header(h);
        }
        Ok(all)
    }

    /// A page of results through the current node (with failover), and the
    /// node that served it.
    async fn results_page_from(
        &self,
        job: JobId,
        from: u32,
        known: Known,
    ) -> Result<(SocketAddr, ResultsPage), ClientError> {
        let req = Request::Job(JobRequest::Results {
            job,
            from,
            forwarded: false,
        });
        match self.call(&req, known, false).await? {
            (node, Response::Job(JobResponse::Results(page))) => Ok((node, *page)),
            (node, other) => Err(unexpected(node, &other)),
        }
    }

    fn header_of(&self, job: JobId) -> Option<JobHeader> {
        self.inner
            .headers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&job)
            .cloned()
    }

    fn remember_header(&self, job: JobId, header: &JobHeader) {
        let mut h = self.inner.headers.lock().unwrap_or_else(|p| p.into_inner());
        if h.len() >= 1024 {
            h.clear();
        }
        h.insert(job, header.clone());
    }

    /// Whether `key` is a member of the ring: a lookup of its position
    /// through a node other than `served_by` (the node whose answer is being
    /// checked), then a signed challenge at the owner found. Cached.
    ///
    /// A lookup can fail while the ring repairs itself (an owner that does
    /// not know its predecessor yet): up to [`MEMBER_TRIES`] nodes are
    /// asked in turn, a short pause apart, before the key counts as no member.
    async fn is_member(&self, key: &[u8; 32], served_by: SocketAddr) -> bool {
        if let Some(m) = self.inner.members.cached(key) {
            return m;
        }
        let mut vias: Vec<SocketAddr> = self
            .nodes()
            .into_iter()
            .filter(|n| *n != served_by)
            .collect();
        if vias.is_empty() {
            vias.push(served_by);
        }
        let timeout = self.inner.config.call_timeout;
        let transport = &self.inner.transport;
        for (attempt, via) in vias.into_iter().cycle().take(MEMBER_TRIES).enumerate() {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let lookup = |key| async move {
                match transport
                    .call::<_, Response>(
                        via,
                        None,
                        &Request::Lookup { key },
                        JOB_FRAME_CAP,
                        timeout,
                    )
                    .await
                {
                    Ok(Response::Lookup(a)) if a.key == key => Some(a.owner),
                    _ => None,
                }
            };
            if let Some(member) = self
                .inner
                .members
                .check(key, lookup, transport, timeout)
                .await
            {
                return member;
            }
        }
        false
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
        waiting_for_networks: 0,
        replicas_per_task: 0.0,
        spot_checks: 0,
        reopened: 0,
        reputation: Vec::new(),
        version: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
