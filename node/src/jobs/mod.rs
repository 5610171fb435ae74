//! Jobs on the grid: the coordinator that places, verifies and replicates a
//! job's tasks, the worker that runs them, and the store that keeps both.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chorus_sdk::identity::{Identity, PeerId};
use chorus_sdk::job::JobRequest;
use chorus_sdk::transport::Transport;
use chorus_sdk::wire::{Peer, Response, WireError};
use tokio::task::JoinHandle;

use crate::capacity::Capacity;
use crate::metrics::NodeMetrics;
use crate::net::RingHandle;
use crate::sandbox::Engine;

/// Misbehaviour on purpose, to watch verification work. Off by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Chaos {
    /// Behave.
    #[default]
    Off,
    /// Flip bytes in every result this node returns as a worker.
    CorruptResults,
}

/// Tuning of the job service.
#[derive(Clone, Debug)]
pub struct JobsConfig {
    /// Most tasks in one batch sent to one worker.
    pub batch_tasks: usize,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig { batch_tasks: 64 }
    }
}

/// What the job service needs from its node.
pub struct JobsDeps {
    /// The node's key (signs results).
    pub identity: Arc<Identity>,
    /// The node itself.
    pub me: Peer,
    /// Its endpoint.
    pub transport: Transport,
    /// Lookups and ring views.
    pub ring: RingHandle,
    /// Capacity records: the workers to choose from.
    pub capacity: Capacity,
    /// The sandbox.
    pub engine: Engine,
    /// Metrics.
    pub metrics: NodeMetrics,
    /// Where job state is kept; `None` keeps it in memory.
    pub data_dir: Option<PathBuf>,
    /// Misbehaviour for tests and demos.
    pub chaos: Chaos,
    /// Tuning.
    pub config: JobsConfig,
}

/// The job service of a node. Cheap to clone.
#[derive(Clone)]
pub struct Jobs {
    inner: Arc<JobsDeps>,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs").field("me", &self.inner.me).finish()
    }
}

impl Jobs {
    /// Starts the service and its background loop.
    pub fn start(deps: JobsDeps) -> (Jobs, JoinHandle<()>) {
        let jobs = Jobs {
            inner: Arc::new(deps),
        };
        let task = tokio::spawn(async {
            loop {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
        });
        (jobs, task)
    }

    /// Answers one job request from `from`.
    pub async fn handle(&self, _req: JobRequest, _from: PeerId) -> Response {
        Response::Error(WireError::new("unsupported", "jobs are not served yet"))
    }

    /// Brings the job gauges up to date.
    pub fn sync_metrics(&self) {}
}
