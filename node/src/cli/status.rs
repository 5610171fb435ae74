//! `chorus status`: a job's progress, asked through any node.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use chorus_sdk::client::Client;
use chorus_sdk::job::{JobId, JobStatus};
use serde_json::{Value, json};

use super::ring::peer_json;

/// Arguments of `chorus status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// A node to ask (HOST:PORT); any node of the ring will do.
    #[arg(long, value_parser = super::addr::parse)]
    pub node: SocketAddr,
    /// The job, 16 hex digits.
    pub job: JobId,
    /// Print the status as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Runs `chorus status`.
pub fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let status = rt.block_on(async {
        let client = Client::connect(args.node)
            .await
            .with_context(|| format!("connecting to {}", args.node))?;
        let status = client
            .status(args.job)
            .await
            .with_context(|| format!("asking for job {}", args.job));
        client.close();
        status
    })?;
    if args.json {
        println!("{}", status_json(&status));
    } else {
        print!("{}", status_text(&status));
    }
    Ok(ExitCode::SUCCESS)
}

/// Every field of a [`JobStatus`] as JSON; ring positions as 16 hex digits.
pub fn status_json(s: &JobStatus) -> Value {
    json!({
        "job": s.job.to_string(),
        "coordinator": peer_json(&s.coordinator),
        "tasks": s.tasks,
        "pending": s.pending,
        "running": s.running,
        "verified": s.verified,
        "failed": s.failed,
        "replicas_run": s.replicas_run,
        "disagreements": s.disagreements,
        "rejected": s.rejected.iter().map(|r| json!({
            "task": r.task,
            "worker": r.worker.to_string(),
        })).collect::<Vec<_>>(),
        "done": s.done,
        "cancelled": s.cancelled,
        "failovers": s.failovers,
        "waiting_for_networks": s.waiting_for_networks,
        "replicas_per_task": s.replicas_per_task,
        "spot_checks": s.spot_checks,
        "reopened": s.reopened,
        "reputation": s.reputation.iter().map(|w| json!({
            "worker": w.worker.to_string(),
            "score": w.score,
            "agreed": w.agreed,
            "disagreed": w.disagreed,
            "spot_passed": w.spot_passed,
            "spot_failed": w.spot_failed,
            "streak": w.streak,
            "distrusted": w.distrusted,
        })).collect::<Vec<_>>(),
    })
}

/// A status for people.
pub fn status_text(s: &JobStatus) -> String {
    let state = if s.cancelled {
        "cancelled"
    } else if s.done {
        "done"
    } else {
        "running"
    };
    let mut out = format!(
        "job {} ({state}), coordinated by {} at {}\n\
         tasks {}: {} verified, {} failed, {} running, {} pending\n\
         replicas run {} ({:.2} per task, {} spot checks, {} results re-judged), disagreements {}, failovers {}\n",
        s.job,
        s.coordinator.id,
        s.coordinator.addr,
        s.tasks,
        s.verified,
        s.failed,
        s.running,
        s.pending,
        s.replicas_run,
        s.replicas_per_task,
        s.spot_checks,
        s.reopened,
        s.disagreements,
        s.failovers
    );
    if s.waiting_for_networks > 0 {
        out.push_str(&format!(
            "{} tasks wait for a worker in another network (replica diversity: one replica of a task per network; the grid has too few networks for this job's replicas)\n",
            s.waiting_for_networks
        ));
    }
    if !s.reputation.is_empty() {
        out.push_str(
            "reputation (worker, score, agreed, disagreed, spot checks passed/failed, streak):\n",
        );
        for w in &s.reputation {
            out.push_str(&format!(
                "  {}  {:>6}  {:>6}  {:>6}  {:>4}/{:<4}  {:>6}{}\n",
                w.worker,
                w.score,
                w.agreed,
                w.disagreed,
                w.spot_passed,
                w.spot_failed,
                w.streak,
                if w.distrusted { "  distrusted" } else { "" }
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use chorus_core::RingPos;
    use chorus_sdk::job::{Rejection, WorkerReputation};
    use chorus_sdk::wire::Peer;

    use super::*;

    /// A peer id whose ring position is `pos` (what these tests name workers by).
    fn peer_at(pos: u64) -> chorus_sdk::identity::PeerId {
        let mut b = [0u8; 32];
        b[..8].copy_from_slice(&pos.to_be_bytes());
        chorus_sdk::identity::PeerId(b)
    }

    #[test]
    fn json_names_every_field_with_hex_ids() {
        let s = JobStatus {
            job: JobId(RingPos(0xff)),
            coordinator: Peer {
                id: RingPos(1),
                addr: "127.0.0.1:7001".parse().unwrap(),
            },
            tasks: 4,
            pending: 1,
            running: 1,
            verified: 2,
            failed: 0,
            replicas_run: 5,
            disagreements: 1,
            rejected: vec![Rejection {
                task: 3,
                worker: peer_at(2),
            }],
            done: false,
            cancelled: false,
            failovers: 1,
            waiting_for_networks: 0,
            replicas_per_task: 0.0,
            spot_checks: 0,
            reopened: 0,
            reputation: vec![WorkerReputation {
                worker: peer_at(2),
                score: -10,
                agreed: 0,
                disagreed: 1,
                spot_passed: 0,
                spot_failed: 0,
                streak: 0,
                distrusted: true,
            }],
            version: 3,
        };
        let v = status_json(&s);
        assert_eq!(v["job"], "00000000000000ff");
        assert_eq!(v["coordinator"]["addr"], "127.0.0.1:7001");
        assert_eq!(v["rejected"][0]["worker"], "0000000000000002");
        assert_eq!(v["reputation"][0]["score"], -10);
        for key in [
            "tasks",
            "pending",
            "running",
            "verified",
            "failed",
            "replicas_run",
            "disagreements",
            "done",
            "cancelled",
            "failovers",
            "waiting_for_networks",
        ] {
            assert!(v.get(key).is_some(), "{key} missing");
        }
        assert!(status_text(&s).contains("2 verified"));
    }
}
