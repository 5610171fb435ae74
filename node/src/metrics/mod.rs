//! Every Prometheus metric of a node, defined and documented in one place, and the
//! small HTTP server that serves them (`GET /metrics`) with a Prometheus HTTP
//! service-discovery document (`GET /sd`).
//!
//! # Layout
//!
//! - this file: the registry, [`NodeMetrics`] and its text exposition.
//! - `http.rs`: [`serve`], the bounded HTTP/1.1 server (axum on hyper) of
//!   `/metrics` and `/sd`, fed by a [`MetricsSource`].
//!
//! Metric families:
//!
//! | name | type | meaning |
//! | --- | --- | --- |
//! | `chorus_ring_successors` | gauge | live entries in the successor list |
//! | `chorus_ring_fingers` | gauge | distinct finger entries |
//! | `chorus_ring_predecessor_known` | gauge | 1 when the node has a predecessor |
//! | `chorus_ring_neighbor_changes_total` | counter | successor/predecessor changes |
//! | `chorus_ring_peers_dropped_total` | counter | peers found dead and dropped |
//! | `chorus_lookup_hops` | histogram | remote hops of lookups started here |
//! | `chorus_lookups_total{result}` | counter | lookups by result (`ok`, `error`) |
//! | `chorus_peers_connected` | gauge | cached live QUIC connections |
//! | `chorus_rpc_calls_total` | counter | RPCs this node sent |
//! | `chorus_rpc_errors_total{kind}` | counter | RPC and stream errors by kind |
//! | `chorus_bytes_sent_total` / `chorus_bytes_received_total` | counter | frame bytes of our calls |
//! | `chorus_capacity_cores` | gauge | cores (task slots) this node donates |
//! | `chorus_capacity_memory_bytes` | gauge | memory this node donates |
//! | `chorus_capacity_slots_free` | gauge | task slots free now |
//! | `chorus_capacity_fuel_per_second` | gauge | measured speed of one slot |
//! | `chorus_capacity_known_peers` | gauge | verified, unexpired capacity records known (itself included) |
//! | `chorus_capacity_records_refused_total{reason}` | counter | capacity records dropped (`bad_signature`, `from_the_future`, `expired`, `no_work`, `relay_budget`, `prefix_full`) and member-only requests refused from keys without the identity work (`no_work`) |
//! | `chorus_tasks_executed_total{outcome}` | counter | tasks this node ran as a worker, by outcome |
//! | `chorus_task_duration_seconds` | histogram | wall time of tasks run here |
//! | `chorus_fuel_donated_total` | counter | fuel spent on other people's tasks |
//! | `chorus_worker_busy_total` | counter | task batches refused because every slot was taken |
//! | `chorus_worker_batches_refused_total{reason}` | counter | task batches refused and never run: `unsigned_job` (no signed terms of the job from the sender), `terms_mismatch` (a task, the limits or the policy differ from the signed terms), `batch_too_large` |
//! | `chorus_module_cache_hits_total` / `chorus_module_cache_misses_total` | counter | compiled-module cache |
//! | `chorus_verifications_total{outcome}` | counter | tasks decided here as coordinator (`accepted`, `accepted_error`, `failed`) |
//! | `chorus_results_rejected_total` | counter | replica results that disagreed with the accepted one |
//! | `chorus_spot_checks_total{result}` | counter | spot checks answered (adaptive verification: an accepted task run again by a worker not yet trusted), `passed` or `failed` |
//! | `chorus_results_reopened_total` | counter | accepted results withdrawn and decided again (a worker that helped accept them was proven a liar, or a spot check disputed them) |
//! | `chorus_replicas_total{result}` | counter | replicas this coordinator sent, by how they ended (`vote`, `no_verdict`, `lost`, `busy`) |
//! | `chorus_jobs{state}` | gauge | jobs coordinated here by state (`running`, `done`, `cancelled`) and backups held (`backup`) |
//! | `chorus_jobs_submitted_total` | counter | jobs this node accepted as coordinator |
//! | `chorus_job_failovers_total` | counter | jobs this node took over from a dead coordinator |
//! | `chorus_job_store_errors_total` | counter | writes to the job store that failed (kept in memory and retried at the next checkpoint) |
//! | `chorus_job_copies_refused_total` | counter | job copies refused: the sender is not the job's owner, the spec is unsigned, a decided task lacks a quorum of valid attestations by ring members, or a cancel is not the submitter's |
//! | `chorus_blob_chunks_refused_total` | counter | blob chunks refused on arrival (fetched or uploaded): wrong hash or length; each is fetched again |
//! | `chorus_blob_indexes_refused_total` | counter | blob indexes refused on arrival: not canonical, or not hashing to the blob id asked for |
//! | `chorus_blob_bytes_fetched_total` | counter | verified chunk bytes this node fetched from other nodes |
//! | `chorus_blob_bytes_served_total` | counter | chunk bytes this node served to others |
//! | `chorus_blob_fetches_total` | counter | whole blobs this node fetched over the network (a blob already held is not fetched again) |
//! | `chorus_blob_store_bytes` | gauge | bytes of the blob store in use: complete blobs plus room reserved for fetches and uploads in progress |
//! | `chorus_peer_reputation{peer}` | gauge | reputation of workers as seen here (at most 32 peers: the 16 best and 16 worst) |

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use chorus_sdk::transport::NetStats;
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use tracing::warn;

mod http;

pub use http::{
    HEADER_TIMEOUT, MAX_CONNECTIONS, MAX_REQUEST_HEAD, MetricsSource, WRITE_STALL_TIMEOUT, serve,
};

/// Errors creating metrics or their server.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// A metric could not be registered (a programming error: duplicate name).
    #[error("metric registration: {0}")]
    Register(#[from] prometheus::Error),
    /// The HTTP listener could not be bound.
    #[error("metrics listener on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why it failed.
        source: std::io::Error,
    },
}

/// The node's metrics registry and its ring and transport families.
#[derive(Clone, Debug)]
pub struct NodeMetrics {
    registry: Registry,
    /// Live entries in the successor list.
    pub ring_successors: IntGauge,
    /// Distinct finger entries.
    pub ring_fingers: IntGauge,
    /// 1 when the node knows a predecessor.
    pub ring_predecessor_known: IntGauge,
    /// Successor or predecessor changes.
    pub ring_neighbor_changes: IntCounter,
    /// Peers found dead and dropped from the routing state.
    pub ring_peers_dropped: IntCounter,
    /// Remote hops of lookups started at this node.
    pub lookup_hops: Histogram,
    /// Lookups by result.
    pub lookups: IntCounterVec,
    /// Cached live QUIC connections.
    pub peers_connected: IntGauge,
    rpc_calls: IntCounter,
    rpc_errors: IntCounterVec,
    capacity_refused: IntCounterVec,
    bytes_sent: IntCounter,
    bytes_received: IntCounter,
    /// Cores (task slots) donated.
    pub capacity_cores: IntGauge,
    /// Memory donated, bytes.
    pub capacity_memory_bytes: IntGauge,
    /// Task slots free now.
    pub capacity_slots_free: IntGauge,
    /// Measured fuel per second of one slot.
    pub capacity_fuel_per_second: IntGauge,
    /// Verified, unexpired capacity records known, this node's own included.
    pub capacity_known_peers: IntGauge,
    /// Tasks run here as a worker, by outcome.
    pub tasks_executed: IntCounterVec,
    /// Wall time of tasks run here.
    pub task_duration: Histogram,
    /// Fuel spent on tasks run here.
    pub fuel_donated: IntCounter,
    /// Batches refused because every slot was taken.
    pub worker_busy: IntCounter,
    /// Batches refused and never run, by the error kind they got.
    pub worker_refused: IntCounterVec,
    module_cache_hits: IntCounter,
    module_cache_misses: IntCounter,
    /// Tasks decided here as coordinator, by outcome.
    pub verifications: IntCounterVec,
    /// Replica results that disagreed with the accepted one.
    pub results_rejected: IntCounter,
    /// Spot checks answered, by result.
    pub spot_checks: IntCounterVec,
    /// Accepted results withdrawn and decided again.
    pub reopened: IntCounter,
    /// Replicas sent by this coordinator, by how they ended.
    pub replicas: IntCounterVec,
    /// Jobs coordinated (or backed up) here, by state.
    pub jobs: IntGaugeVec,
    /// Jobs accepted as coordinator.
    pub jobs_submitted: IntCounter,
    /// Jobs taken over from a dead coordinator.
    pub job_failovers: IntCounter,
    /// Failed writes to the job store.
    pub job_store_errors: IntCounter,
    /// Job copies refused (forged or unprovable).
    pub job_copies_refused: IntCounter,
    /// Reputation of known workers (bounded, see [`NodeMetrics::set_reputation`]).
    peer_reputation: IntGaugeVec,
    /// Blobs: chunks moved, refused and stored.
    pub blobs: BlobMetrics,
}

/// The blob families (`crate::blobs`): recorded by the fetcher, the
/// server of chunks and the store.
#[derive(Clone, Debug)]
pub struct BlobMetrics {
    /// Chunks refused on arrival (wrong hash or length), fetched or uploaded.
    pub chunks_refused: IntCounter,
    /// Indexes refused on arrival (not canonical, or another blob's).
    pub indexes_refused: IntCounter,
    /// Verified chunk bytes fetched from other nodes.
    pub bytes_fetched: IntCounter,
    /// Chunk bytes served to others.
    pub bytes_served: IntCounter,
    /// Whole blobs fetched over the network.
    pub fetches: IntCounter,
    /// Bytes of the store in use (complete blobs and reservations).
    pub store_bytes: IntGauge,
}

impl BlobMetrics {
    fn register(registry: &Registry) -> Result<Self, MetricsError> {
        let counter = |name: &str, help: &str| -> Result<IntCounter, MetricsError> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let store_bytes = IntGauge::new(
            "chorus_blob_store_bytes",
            "Bytes of this node's blob store in use: complete blobs plus room reserved for fetches and uploads in progress.",
        )?;
        registry.register(Box::new(store_bytes.clone()))?;
        Ok(BlobMetrics {
            chunks_refused: counter(
                "chorus_blob_chunks_refused_total",
                "Blob chunks refused on arrival, fetched or uploaded: a wrong hash or length (each is fetched again).",
            )?,
            indexes_refused: counter(
                "chorus_blob_indexes_refused_total",
                "Blob indexes refused on arrival: not canonical, or not hashing to the blob id asked for.",
            )?,
            bytes_fetched: counter(
                "chorus_blob_bytes_fetched_total",
                "Verified blob chunk bytes this node fetched from other nodes.",
            )?,
            bytes_served: counter(
                "chorus_blob_bytes_served_total",
                "Blob chunk bytes this node served to others.",
            )?,
            fetches: counter(
                "chorus_blob_fetches_total",
                "Whole blobs this node fetched over the network (a blob already held is not fetched again).",
            )?,
            store_bytes,
        })
    }

    /// Families in a registry of their own (for a client such as `chorus
    /// blob get`, which fetches without a node).
    pub fn standalone() -> Result<Self, MetricsError> {
        Self::register(&Registry::new())
    }
}

/// Most peers `chorus_peer_reputation` reports: the best and worst half each.
pub const REPUTATION_SERIES: usize = 32;

/// Outcome labels of `chorus_tasks_executed_total`, all present from the start.
pub const TASK_OUTCOMES: [&str; 11] = [
    "ok",
    "exit",
    "fuel_exhausted",
    "memory_limit",
    "output_too_large",
    "input_too_large",
    "trap",
    "invalid_module",
    "timeout",
    "host_error",
    "scratch_limit",
];

/// Raises counter `c` to the total `v` counted elsewhere (never lowers it).
fn catch_up(c: &IntCounter, v: u64) {
    let have = c.get();
    if v > have {
        c.inc_by(v - have);
    }
}

impl NodeMetrics {
    /// Creates every family in a fresh registry.
    pub fn new() -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let gauge = |name: &str, help: &str| -> Result<IntGauge, MetricsError> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let counter = |name: &str, help: &str| -> Result<IntCounter, MetricsError> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let counter_vec =
            |name: &str, help: &str, label: &str| -> Result<IntCounterVec, MetricsError> {
                let c = IntCounterVec::new(Opts::new(name, help), &[label])?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let lookup_hops = Histogram::with_opts(
            HistogramOpts::new(
                "chorus_lookup_hops",
                "Remote FindSuccessor hops of lookups started at this node.",
            )
            .buckets(vec![
                0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 16.0, 24.0,
            ]),
        )?;
        registry.register(Box::new(lookup_hops.clone()))?;
        let task_duration = Histogram::with_opts(
            HistogramOpts::new(
                "chorus_task_duration_seconds",
                "Wall time of tasks this node ran as a worker (instantiate and run).",
            )
            .buckets(vec![
                0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05,
                0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ]),
        )?;
        registry.register(Box::new(task_duration.clone()))?;
        let gauge_vec =
            |name: &str, help: &str, label: &str| -> Result<IntGaugeVec, MetricsError> {
                let g = IntGaugeVec::new(Opts::new(name, help), &[label])?;
                registry.register(Box::new(g.clone()))?;
                Ok(g)
            };
        let tasks_executed = counter_vec(
            "chorus_tasks_executed_total",
            "Tasks this node ran as a worker, by outcome (ok, exit, fuel_exhausted, memory_limit, output_too_large, input_too_large, trap, invalid_module, timeout, host_error).",
            "outcome",
        )?;
        for o in TASK_OUTCOMES {
            tasks_executed.with_label_values(&[o]);
        }
        // Both results exist from the start, so dashboards show 0, not
        // nothing, before the first spot check.
        let spot_checks = counter_vec(
            "chorus_spot_checks_total",
            "Spot checks answered: accepted tasks run again by workers not yet trusted (adaptive verification), passed or failed.",
            "result",
        )?;
        for r in ["passed", "failed"] {
            spot_checks.with_label_values(&[r]);
        }
        let verifications = counter_vec(
            "chorus_verifications_total",
            "Tasks decided by this node as coordinator: accepted (a quorum agreed on an output), accepted_error (a quorum agreed on a task error), failed (no quorum).",
            "outcome",
        )?;
        for o in ["accepted", "accepted_error", "failed"] {
            verifications.with_label_values(&[o]);
        }
        let replicas = counter_vec(
            "chorus_replicas_total",
            "Replicas this node sent as coordinator, by how they ended: vote, no_verdict (timeout or host error on the worker), lost (worker dead or silent), busy (worker refused).",
            "result",
        )?;
        for r in ["vote", "no_verdict", "lost", "busy"] {
            replicas.with_label_values(&[r]);
        }
        let worker_refused = counter_vec(
            "chorus_worker_batches_refused_total",
            "Task batches this node refused as a worker and never ran, by reason: unsigned_job (no signed terms of the job from the sender), terms_mismatch (a task, the limits or the policy differ from the submitter's signed terms), batch_too_large.",
            "reason",
        )?;
        for r in ["unsigned_job", "terms_mismatch", "batch_too_large"] {
            worker_refused.with_label_values(&[r]);
        }
        let jobs = gauge_vec(
            "chorus_jobs",
            "Jobs coordinated by this node by state (running, done, cancelled), and copies of other coordinators' jobs held as backup (backup).",
            "state",
        )?;
        for st in ["running", "done", "cancelled", "backup"] {
            jobs.with_label_values(&[st]);
        }
        let lookups = counter_vec(
            "chorus_lookups_total",
            "Lookups started at this node, by result (ok, error).",
            "result",
        )?;
        for r in ["ok", "error"] {
            lookups.with_label_values(&[r]);
        }
        Ok(NodeMetrics {
            capacity_cores: gauge(
                "chorus_capacity_cores",
                "Cores this node donates (one task slot each).",
            )?,
            capacity_memory_bytes: gauge(
                "chorus_capacity_memory_bytes",
                "Memory this node donates, in bytes.",
            )?,
            capacity_slots_free: gauge(
                "chorus_capacity_slots_free",
                "Task slots free now on this node.",
            )?,
            capacity_fuel_per_second: gauge(
                "chorus_capacity_fuel_per_second",
                "Measured speed of one task slot, in wasm fuel per second (start-up benchmark).",
            )?,
            capacity_known_peers: gauge(
                "chorus_capacity_known_peers",
                "Verified, unexpired capacity records this node knows, its own included.",
            )?,
            tasks_executed,
            task_duration,
            fuel_donated: counter(
                "chorus_fuel_donated_total",
                "Wasm fuel spent on tasks this node ran as a worker.",
            )?,
            worker_busy: counter(
                "chorus_worker_busy_total",
                "Task batches this node refused because every slot and queue place was taken.",
            )?,
            worker_refused,
            module_cache_hits: counter(
                "chorus_module_cache_hits_total",
                "Compiled-module cache hits (memory or disk).",
            )?,
            module_cache_misses: counter(
                "chorus_module_cache_misses_total",
                "Compiled-module cache misses (a compilation).",
            )?,
            verifications,
            results_rejected: counter(
                "chorus_results_rejected_total",
                "Replica results that disagreed with the accepted result (rejected by the quorum).",
            )?,
            spot_checks,
            reopened: counter(
                "chorus_results_reopened_total",
                "Accepted results withdrawn and decided again: a worker that helped accept them was proven a liar, or a spot check disputed them.",
            )?,
            replicas,
            jobs,
            jobs_submitted: counter(
                "chorus_jobs_submitted_total",
                "Jobs this node accepted as coordinator.",
            )?,
            job_failovers: counter(
                "chorus_job_failovers_total",
                "Jobs this node took over from a dead coordinator.",
            )?,
            job_store_errors: counter(
                "chorus_job_store_errors_total",
                "Writes to the job store that failed (kept in memory and retried at the next checkpoint).",
            )?,
            job_copies_refused: counter(
                "chorus_job_copies_refused_total",
                "Job copies this node refused: not from the job's owner, an unsigned spec, a decided task without a quorum of valid attestations by ring members, or a cancel not signed by the submitter.",
            )?,
            peer_reputation: gauge_vec(
                "chorus_peer_reputation",
                "Reputation of workers as seen by this node (at most 32 peers: the 16 best and 16 worst); +1 per agreement, -10 per disagreement.",
                "peer",
            )?,
            ring_successors: gauge(
                "chorus_ring_successors",
                "Entries in this node's successor list (itself when alone).",
            )?,
            ring_fingers: gauge(
                "chorus_ring_fingers",
                "Distinct entries in the finger table.",
            )?,
            ring_predecessor_known: gauge(
                "chorus_ring_predecessor_known",
                "1 when this node knows a predecessor, else 0.",
            )?,
            ring_neighbor_changes: counter(
                "chorus_ring_neighbor_changes_total",
                "Changes of successor or predecessor.",
            )?,
            ring_peers_dropped: counter(
                "chorus_ring_peers_dropped_total",
                "Peers found dead (an RPC failed) and dropped from the routing state.",
            )?,
            lookup_hops,
            lookups,
            peers_connected: gauge(
                "chorus_peers_connected",
                "Live QUIC connections in this node's connection cache.",
            )?,
            rpc_calls: counter("chorus_rpc_calls_total", "RPCs this node sent.")?,
            capacity_refused: counter_vec(
                "chorus_capacity_records_refused_total",
                "Capacity records dropped by reason (bad_signature, from_the_future, expired, no_work, relay_budget, prefix_full), and member-only requests refused from keys without the identity proof of work (no_work).",
                "reason",
            )?,
            rpc_errors: counter_vec(
                "chorus_rpc_errors_total",
                "RPC, stream and handshake errors by kind (timeout, malformed, oversized, handshake, busy, conn_limit, read_timeout, ...).",
                "kind",
            )?,
            bytes_sent: counter(
                "chorus_bytes_sent_total",
                "Frame bytes this node sent in its own RPCs.",
            )?,
            bytes_received: counter(
                "chorus_bytes_received_total",
                "Frame bytes this node received in answers to its RPCs.",
            )?,
            blobs: BlobMetrics::register(&registry)?,
            registry,
        })
    }

    /// Brings the transport counters up to date (they are monotonic in `stats`).
    pub fn sync_transport(&self, stats: &NetStats, connections: usize) {
        catch_up(&self.rpc_calls, stats.calls.load(Ordering::Relaxed));
        catch_up(&self.bytes_sent, stats.bytes_sent.load(Ordering::Relaxed));
        catch_up(
            &self.bytes_received,
            stats.bytes_received.load(Ordering::Relaxed),
        );
        for e in stats.errors.iter() {
            catch_up(
                &self.rpc_errors.with_label_values(&[e.key()]),
                e.value().load(Ordering::Relaxed),
            );
        }
        self.peers_connected
            .set(i64::try_from(connections).unwrap_or(i64::MAX));
    }

    /// Brings the capacity refusal counters up to date from the table's totals.
    pub fn sync_capacity_refused(&self, totals: &[(&'static str, u64)]) {
        for (reason, v) in totals {
            catch_up(&self.capacity_refused.with_label_values(&[reason]), *v);
        }
    }

    /// Brings the module-cache counters up to date from the engine's totals.
    pub fn sync_module_cache(&self, hits: u64, misses: u64) {
        catch_up(&self.module_cache_hits, hits);
        catch_up(&self.module_cache_misses, misses);
    }

    /// Replaces the reputation series with `scores` (peer, score): keeps the
    /// [`REPUTATION_SERIES`]/2 best and worst so cardinality stays bounded.
    pub fn set_reputation(&self, scores: &[(String, i32)]) {
        let mut sorted: Vec<&(String, i32)> = scores.iter().collect();
        sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let half = REPUTATION_SERIES / 2;
        let keep: Vec<&(String, i32)> = if sorted.len() <= REPUTATION_SERIES {
            sorted
        } else {
            let n = sorted.len();
            sorted[..half]
                .iter()
                .chain(&sorted[n - half..])
                .copied()
                .collect()
        };
        self.peer_reputation.reset();
        for (peer, score) in keep {
            self.peer_reputation
                .with_label_values(&[peer.as_str()])
                .set(i64::from(*score));
        }
    }

    /// The Prometheus text exposition of every family.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            warn!(error = %e, "could not encode metrics");
        }
        String::from_utf8_lossy(&buf).into_owned()
    }
}
