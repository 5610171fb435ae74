//! The job simulator: the real [`JobMachine`], the real placement policies,
//! quorum verifier and reputation table, against modelled workers in virtual
//! time (`chorus sim jobs`).
//!
//! Each worker has `slots` task slots and a speed; a task takes
//! `task_ms / speed` on it, and every message a seeded latency. A fraction
//! `saboteurs` of the workers lie:
//!
//! - without `collude`, each saboteur lies on each replica it runs with
//!   probability `lie_rate`, and every lie is a distinct wrong digest: liars
//!   never agree with each other;
//! - with `collude`, a fraction `lie_rate` of the tasks is targeted (chosen by
//!   the task, so every saboteur knows them) and every saboteur returns the
//!   same wrong digest for a targeted task: they always agree.
//!
//! The machine sees only digests; the simulator knows the truth and counts
//! what was accepted wrongly. With colluding saboteurs, uniform placement,
//! R = 3 and Q = 2, a task is accepted wrong exactly when at least two of its
//! first three replicas are saboteurs: 3f²(1−f) + f³ ([`collusion_closed_form`]).
//! Everything is driven by one seed, so a run replays exactly.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use serde::Serialize;

use crate::jobs::trust::checks_for_single;
use crate::jobs::{
    Action, Answer, BatchId, Candidate, Digest, JobMachine, MachineConfig, PlacementPolicy, Policy,
    Reputation, Verdict,
};
use crate::ring::Time;
use crate::rng::Rng;

/// Settings of a job simulation.
#[derive(Clone, Debug)]
pub struct JobSimConfig {
    /// Modelled workers.
    pub workers: u32,
    /// Tasks in the job.
    pub tasks: u32,
    /// Replicas, quorum and maximum replicas per task.
    pub policy: Policy,
    /// Fraction of the workers that lie (0 to 1).
    pub saboteurs: f64,
    /// Whether saboteurs collude (see the [module docs](self)).
    pub collude: bool,
    /// Probability that a saboteur lies on a replica (without `collude`), or
    /// fraction of the tasks targeted (with `collude`). Default 1.
    pub lie_rate: f64,
    /// The seed of the whole run.
    pub seed: u64,
    /// How replicas are placed. Default uniform (the closed forms' model).
    pub placement: PlacementPolicy,
    /// Task slots per worker. Default 1.
    pub slots: u32,
    /// The machine's tuning; distrust off by default here, so that the
    /// placement alone decides who runs what.
    pub machine: MachineConfig,
    /// Mean task duration on a worker of speed 1, in ms. Default 100.
    pub task_ms: Time,
    /// Smallest one-way latency, in ms. Default 10.
    pub min_latency: Time,
    /// Largest one-way latency, in ms. Default 50.
    pub max_latency: Time,
    /// Networks the saboteurs stand in: 0 spreads them like honest workers
    /// (each its own network); K packs them into K networks (an attacker
    /// with many machines in few address blocks). Replica diversity
    /// ([`MachineConfig::diverse`]) lets at most one replica of a task into
    /// each. Default 0.
    pub saboteur_networks: u32,
}

impl Default for JobSimConfig {
    fn default() -> Self {
        JobSimConfig {
            workers: 1000,
            tasks: 10_000,
            policy: Policy::new(3, Some(2), None).unwrap_or_default(),
            saboteurs: 0.0,
            collude: false,
            lie_rate: 1.0,
            seed: 1,
            placement: PlacementPolicy::Uniform,
            slots: 1,
            machine: MachineConfig {
                distrust_below: None,
                ..MachineConfig::default()
            },
            task_ms: 100,
            min_latency: 10,
            max_latency: 50,
            saboteur_networks: 0,
        }
    }
}

/// Why a job simulation could not run.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum JobSimError {
    /// No workers or no tasks.
    #[error("need at least one worker and one task")]
    Empty,
    /// A fraction out of [0, 1].
    #[error("{what} must be between 0 and 1, not {value}")]
    Fraction {
        /// Which setting.
        what: &'static str,
        /// Its value.
        value: f64,
    },
    /// The policy is invalid or needs more workers than there are.
    #[error("policy: {0}")]
    Policy(#[from] crate::jobs::PolicyError),
    /// The run did not finish within its step bound (a bug).
    #[error("the job did not finish within {0} steps")]
    Stuck(u64),
}

/// What a job simulation measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JobSimReport {
    /// Modelled workers.
    pub workers: u32,
    /// Of which saboteurs.
    pub saboteurs: u32,
    /// Tasks in the job.
    pub tasks: u32,
    /// Tasks with an accepted result.
    pub accepted: u64,
    /// Accepted results that are wrong.
    pub wrong_accepted: u64,
    /// `wrong_accepted / accepted` (0 when nothing was accepted).
    pub error_rate: f64,
    /// Tasks that failed (no quorum, too many attempts, no workers).
    pub failed: u64,
    /// Replicas that returned a vote.
    pub replicas_run: u64,
    /// `replicas_run / tasks`.
    pub replicas_per_task: f64,
    /// Votes rejected by a quorum.
    pub disagreements: u64,
    /// Spot checks answered (included in `replicas_run`).
    pub spot_checks: u64,
    /// Decided tasks opened again (a liar's results judged again, or a
    /// spot check's dispute).
    pub reopened: u64,
    /// Workers trusted with single results at the end: saboteurs.
    pub trusted_saboteurs: u32,
    /// Workers trusted with single results at the end: honest ones.
    pub trusted_honest: u32,
    /// Batches sent.
    pub batches: u64,
    /// Virtual time the job took, in seconds.
    pub virtual_seconds: f64,
    /// Saboteurs' mean reputation at the end, and honest workers' (who ran
    /// anything), as the coordinator's table scores them.
    pub saboteur_reputation: f64,
    /// Honest workers' mean reputation at the end.
    pub honest_reputation: f64,
    /// The closed form for this setting, where there is one (colluding,
    /// uniform placement, R = 3, Q = 2, lie rate 1; or 0 without collusion).
    pub closed_form: Option<f64>,
    /// Wall-clock seconds of the run (filled by the caller).
    pub seconds: f64,
}

/// 3f²(1−f) + f³: the chance that at least two of three uniformly placed
/// replicas are colluding saboteurs, the error rate of R = 3, Q = 2.
pub fn collusion_closed_form(f: f64) -> f64 {
    3.0 * f * f * (1.0 - f) + f * f * f
}

struct Worker {
    saboteur: bool,
    /// Speed factor in [0.5, 2).
    speed: f64,
    inflight: u32,
    /// Its network (honest workers: one each).
    network: u128,
}

struct Arrival {
    batch: BatchId,
    worker: u32,
    answers: Vec<(u32, Answer<()>)>,
}

/// Runs one job to the end and reports what was accepted.
pub fn run(cfg: &JobSimConfig) -> Result<JobSimReport, JobSimError> {
    if cfg.workers == 0 || cfg.tasks == 0 {
        return Err(JobSimError::Empty);
    }
    for (what, value) in [("saboteurs", cfg.saboteurs), ("lie rate", cfg.lie_rate)] {
        if !(0.0..=1.0).contains(&value) {
            return Err(JobSimError::Fraction { what, value });
        }
    }
    cfg.policy.check_workers(cfg.workers as usize)?;
    let mut rng = Rng::new(cfg.seed);
    let mut workers: Vec<Worker> = (0..cfg.workers)
        .map(|i| Worker {
            saboteur: false,
            speed: 0.5 + 1.5 * rng.unit(),
            inflight: 0,
            network: u128::from(i),
        })
        .collect();
    // Exactly round(f * N) saboteurs, a random subset (partial Fisher-Yates).
    let n_sab = ((cfg.saboteurs * f64::from(cfg.workers)).round() as u32).min(cfg.workers);
    let mut order: Vec<u32> = (0..cfg.workers).collect();
    for i in 0..n_sab as usize {
        let j = i + rng.below((order.len() - i) as u64) as usize;
        order.swap(i, j);
        workers[order[i] as usize].saboteur = true;
        if cfg.saboteur_networks > 0 {
            // Networks above every honest one, shared by the saboteurs.
            workers[order[i] as usize].network =
                u128::from(cfg.workers) + (i as u128) % u128::from(cfg.saboteur_networks);
        }
    }
    let target_salt = rng.next_u64();
    let mut answer_rng = rng.fork();
    let mut machine: JobMachine<u32, ()> =
        JobMachine::new(cfg.policy, cfg.tasks, cfg.machine, rng.next_u64());
    let mut placement = cfg.placement;
    let mut reputation: Reputation<u32> = Reputation::default();
    let mut queue: BinaryHeap<Reverse<(Time, u64)>> = BinaryHeap::new();
    let mut arrivals: std::collections::HashMap<u64, Arrival> = std::collections::HashMap::new();
    let mut seq = 0u64;
    let mut now: Time = 0;
    // Each task's standing: None open, Some(true) accepted right,
    // Some(false) accepted wrong; failed tasks are counted apart.
    let mut standing: Vec<Option<bool>> = vec![None; cfg.tasks as usize];
    let (mut failed, mut batches) = (0u64, 0u64);
    let max_steps = 64 * u64::from(cfg.tasks) + 1_000_000;
    let mut steps = 0u64;
    let mut candidates: Vec<Candidate<u32>> = Vec::with_capacity(workers.len());
    loop {
        // Place on every worker with a free slot.
        candidates.clear();
        for (i, w) in workers.iter().enumerate() {
            let free = cfg.slots.saturating_sub(w.inflight);
            if free > 0 {
                let id = i as u32;
                candidates.push(Candidate {
                    id,
                    free_slots: free,
                    fuel_per_sec: (w.speed * 1e9) as u64,
                    reputation: reputation.score(&id),
                    network: w.network,
                    trust: reputation.trust(&id, now),
                });
            }
        }
        machine.place(now, std::mem::take(&mut candidates), &mut placement);
        while let Some(action) = machine.poll_action() {
            match action {
                Action::SendBatch {
                    batch,
                    worker,
                    tasks,
                } => {
                    batches += 1;
                    let w = &mut workers[worker as usize];
                    w.inflight += tasks.len() as u32;
                    let mut t_done = now + rng.range(cfg.min_latency, cfg.max_latency);
                    let mut answers = Vec::with_capacity(tasks.len());
                    for t in tasks {
                        let ms = (cfg.task_ms as f64 * (0.5 + rng.unit()) / w.speed) as Time;
                        t_done += ms.max(1);
                        let digest =
                            answer(cfg, w.saboteur, worker, t, target_salt, &mut answer_rng);
                        answers.push((
                            t,
                            Answer::Vote {
                                digest,
                                payload: (),
                            },
                        ));
                    }
                    t_done += rng.range(cfg.min_latency, cfg.max_latency);
                    seq += 1;
                    arrivals.insert(
                        seq,
                        Arrival {
                            batch,
                            worker,
                            answers,
                        },
                    );
                    queue.push(Reverse((t_done, seq)));
                }
                Action::Decided(d) => match &d.verdict {
                    Verdict::Accepted { digest, .. } => {
                        if let Some(s) = standing.get_mut(d.task as usize) {
                            *s = Some(*digest == truth(d.task));
                        }
                        reputation.apply(&d.verdict, now);
                    }
                    Verdict::Failed { .. } => failed += 1,
                },
                Action::Reopened { task } => {
                    if let Some(s) = standing.get_mut(task as usize) {
                        *s = None;
                    }
                }
                Action::SpotChecked { worker, passed, .. } => {
                    reputation.record_spot_check(&worker, passed, now);
                }
                Action::LateVote { worker, agrees, .. } => {
                    if agrees {
                        reputation.record_agree(&worker, now);
                    } else {
                        reputation.record_disagree(&worker, now);
                    }
                }
                Action::ReplicasEnded { .. } | Action::Checkpoint | Action::Done => {}
            }
        }
        if machine.is_finished() {
            break;
        }
        steps += 1;
        if steps > max_steps {
            return Err(JobSimError::Stuck(max_steps));
        }
        // Advance to the next arrival (or the machine's next timer).
        let next_arrival = queue.peek().map(|Reverse((t, _))| *t);
        let next = match (next_arrival, machine.poll_timeout()) {
            (Some(a), Some(b)) => a.min(b.max(now + 1)),
            (Some(a), None) => a,
            (None, Some(b)) => b.max(now + 1),
            (None, None) => return Err(JobSimError::Stuck(steps)),
        };
        now = now.max(next);
        while let Some(Reverse((t, s))) = queue.peek().copied() {
            if t > now {
                break;
            }
            queue.pop();
            if let Some(a) = arrivals.remove(&s) {
                let w = &mut workers[a.worker as usize];
                w.inflight = w.inflight.saturating_sub(a.answers.len() as u32);
                machine.handle_batch_done(now, a.batch, a.answers);
            }
        }
        machine.handle_tick(now);
    }
    let mean = |sab: bool| {
        let scores: Vec<f64> = reputation
            .snapshot()
            .iter()
            .filter(|e| workers[e.worker as usize].saboteur == sab)
            .map(|e| f64::from(e.record.score))
            .collect();
        if scores.is_empty() {
            0.0
        } else {
            scores.iter().sum::<f64>() / scores.len() as f64
        }
    };
    let accepted = standing.iter().filter(|s| s.is_some()).count() as u64;
    let wrong = standing.iter().filter(|s| **s == Some(false)).count() as u64;
    let single = checks_for_single(cfg.policy.max_error, cfg.machine.assumed_saboteurs);
    let trusted = |sab: bool| {
        (0..cfg.workers)
            .filter(|&i| workers[i as usize].saboteur == sab)
            .filter(|i| {
                let t = reputation.trust(i, now);
                !t.distrusted && t.checks >= single
            })
            .count() as u32
    };
    let closed_form = if cfg.policy.is_adaptive() {
        None
    } else if !cfg.collude && cfg.policy.quorum >= 2 {
        Some(0.0)
    } else if cfg.collude
        && cfg.placement == PlacementPolicy::Uniform
        && cfg.policy.replicas == 3
        && cfg.policy.quorum == 2
        && cfg.lie_rate == 1.0
    {
        Some(collusion_closed_form(
            f64::from(n_sab) / f64::from(cfg.workers),
        ))
    } else {
        None
    };
    Ok(JobSimReport {
        workers: cfg.workers,
        saboteurs: n_sab,
        tasks: cfg.tasks,
        accepted,
        wrong_accepted: wrong,
        error_rate: if accepted == 0 {
            0.0
        } else {
            wrong as f64 / accepted as f64
        },
        failed,
        replicas_run: machine.replicas_run(),
        replicas_per_task: machine.replicas_run() as f64 / f64::from(cfg.tasks),
        disagreements: machine.disagreements(),
        spot_checks: machine.spot_checks(),
        reopened: machine.reopened(),
        trusted_saboteurs: trusted(true),
        trusted_honest: trusted(false),
        batches,
        virtual_seconds: now as f64 / 1000.0,
        saboteur_reputation: mean(true),
        honest_reputation: mean(false),
        closed_form,
        seconds: 0.0,
    })
}

/// The right digest of task `t`.
fn truth(t: u32) -> Digest {
    let mut d = [0u8; 32];
    d[..4].copy_from_slice(&t.to_be_bytes());
    d
}

/// What a worker answers for task `t`.
fn answer(
    cfg: &JobSimConfig,
    saboteur: bool,
    worker: u32,
    t: u32,
    salt: u64,
    rng: &mut Rng,
) -> Digest {
    if !saboteur {
        return truth(t);
    }
    let mut d = truth(t);
    if cfg.collude {
        // Targeted tasks are a pure function of the task, the same for every
        // saboteur, and so is the lie.
        let mut h = Rng::new(salt ^ u64::from(t).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        if h.unit() < cfg.lie_rate {
            d[4] = 1;
        }
    } else if rng.unit() < cfg.lie_rate {
        // A lie of this worker's own: nobody else gives it.
        d[4] = 2;
        d[5..9].copy_from_slice(&worker.to_be_bytes());
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(f: f64, collude: bool, seed: u64) -> JobSimConfig {
        JobSimConfig {
            workers: 2000,
            tasks: 20_000,
            saboteurs: f,
            collude,
            seed,
            ..JobSimConfig::default()
        }
    }

    #[test]
    fn colluders_match_the_closed_form() {
        for f in [0.1, 0.2, 0.35] {
            let r = run(&cfg(f, true, 7)).expect("runs");
            let expect = collusion_closed_form(f);
            assert_eq!(r.accepted + r.failed, 20_000);
            // 20,000 Bernoulli trials: 4 standard deviations.
            let sd = (expect * (1.0 - expect) / r.accepted as f64).sqrt();
            assert!(
                (r.error_rate - expect).abs() < 4.0 * sd + 0.002,
                "f {f}: error rate {} vs closed form {expect} (sd {sd})",
                r.error_rate
            );
            assert_eq!(r.closed_form, Some(expect));
        }
        assert!((collusion_closed_form(0.2) - 0.104).abs() < 1e-12);
    }

    #[test]
    fn replica_diversity_starves_colluders_packed_into_one_network() {
        // f = 0.2 colluders in one network: without diversity the closed
        // form's 10.4% of tasks go wrong; with it, at most one of them holds
        // a replica of any task, and none does.
        let mut c = cfg(0.2, true, 7);
        c.saboteur_networks = 1;
        c.machine.diverse = false;
        let before = run(&c).expect("runs");
        c.machine.diverse = true;
        let after = run(&c).expect("runs");
        assert!(before.error_rate > 0.08, "{before:?}");
        assert_eq!(after.wrong_accepted, 0, "{after:?}");
        assert_eq!(after.accepted, 20_000, "{after:?}");
        // Two networks: two colluders may meet on a task, less often.
        c.saboteur_networks = 2;
        let two = run(&c).expect("runs");
        assert!(
            two.error_rate > 0.0 && two.error_rate < before.error_rate,
            "{two:?}"
        );
    }

    #[test]
    fn lone_liars_never_get_a_wrong_result_accepted() {
        for f in [0.1, 0.2, 0.35] {
            let r = run(&cfg(f, false, 3)).expect("runs");
            assert_eq!(r.wrong_accepted, 0, "f {f}: {r:?}");
            assert!(r.disagreements > 0, "f {f}: liars were caught");
            assert!(r.saboteur_reputation < r.honest_reputation, "{r:?}");
            assert!(r.accepted > 19_000, "f {f}: {r:?}");
        }
    }

    #[test]
    fn honest_grid_runs_each_task_replicas_times() {
        let r = run(&cfg(0.0, false, 1)).expect("runs");
        assert_eq!(r.accepted, 20_000);
        assert_eq!(r.wrong_accepted, 0);
        assert_eq!(r.failed, 0);
        // R = 3, Q = 2: the third replica always runs too (it was sent with
        // the first two), so exactly three votes per task.
        assert_eq!(r.replicas_run, 60_000);
    }

    #[test]
    fn a_seed_replays_the_same_run() {
        let a = run(&cfg(0.2, true, 11)).expect("runs");
        let b = run(&cfg(0.2, true, 11)).expect("runs");
        let c = run(&cfg(0.2, true, 12)).expect("runs");
        assert_eq!(a, b);
        assert_ne!(a.wrong_accepted, c.wrong_accepted);
    }

    #[test]
    fn two_choices_placement_also_finishes() {
        let mut c = cfg(0.1, false, 5);
        c.placement = PlacementPolicy::TwoChoices;
        c.machine.distrust_below = Some(-50);
        let r = run(&c).expect("runs");
        assert_eq!(r.wrong_accepted, 0);
        assert_eq!(r.accepted + r.failed, 20_000);
    }

    #[test]
    fn adaptive_meets_the_targets_against_colluders_that_earn_trust() {
        // 20% saboteurs that lie together on 10% of tasks and behave on the
        // rest to earn trust; 1,000 tasks per worker from zero trust.
        let adaptive = JobSimConfig {
            workers: 200,
            tasks: 200_000,
            saboteurs: 0.2,
            collude: true,
            lie_rate: 0.1,
            seed: 7,
            policy: Policy::adaptive(1e-4, None).expect("policy"),
            ..JobSimConfig::default()
        };
        let r = run(&adaptive).expect("runs");
        assert!(r.error_rate <= 1e-4, "{r:?}");
        assert!(r.replicas_per_task <= 1.3, "{r:?}");
        assert_eq!(r.failed, 0, "{r:?}");
        assert_eq!(r.trusted_saboteurs, 0, "{r:?}");
        assert!(r.trusted_honest >= 150, "{r:?}");
        assert!(r.spot_checks > 0 && r.reopened > 0, "{r:?}");
        // Full replication, R = 3, Q = 2, on the same grid: three times the
        // work and colluding pairs get through.
        let full = run(&JobSimConfig {
            policy: Policy::new(3, Some(2), None).expect("policy"),
            ..adaptive
        })
        .expect("runs");
        assert!(full.replicas_per_task >= 2.9, "{full:?}");
        assert!(full.error_rate > 1e-3, "{full:?}");
    }

    #[test]
    fn bad_settings_are_refused() {
        let mut c = cfg(1.5, false, 1);
        assert!(matches!(run(&c), Err(JobSimError::Fraction { .. })));
        c.saboteurs = 0.0;
        c.workers = 2;
        assert!(matches!(run(&c), Err(JobSimError::Policy(_))));
        c.workers = 0;
        assert_eq!(run(&c), Err(JobSimError::Empty));
    }
}
