//! A job's final results as the client holds them, with typed access to
//! each task's output.

use std::net::SocketAddr;

use serde::de::DeserializeOwned;

use super::error::ClientError;
use crate::attest::{AcceptRule, Attestation};
use crate::job::JobHeader;
use crate::outcome::Outcome;
use crate::proof::Proof;
use crate::wire::{JobStatus, TaskResult};

/// A result the client refused because its proof did not hold, and the node
/// that served it. The task was fetched again elsewhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The task.
    pub task: u32,
    /// The node that served the result.
    pub node: SocketAddr,
    /// Why it was refused.
    pub reason: String,
}

/// A job's final results, by task index, with the status they were cut at.
/// Every accepted result in it was checked by the client against its
/// attestations (see [`Client`](super::Client)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobResults {
    /// The job's status when the last page was cut.
    pub status: JobStatus,
    results: Vec<Option<TaskResult>>,
    attestations: Vec<Vec<Attestation>>,
    /// The rule that accepted each result.
    rules: Vec<AcceptRule>,
    header: Option<JobHeader>,
    refused: Vec<Refusal>,
    /// Most tasks kept: what the client submitted when it knows the job's
    /// header, else [`MAX_TASKS`](crate::job::MAX_TASKS). A node's answer
    /// cannot make the client allocate more.
    limit: usize,
}

impl JobResults {
    /// No results yet, room for at most `limit` tasks (see [`JobResults`]).
    pub(super) fn empty(status: JobStatus, limit: usize) -> Self {
        let limit = limit.min(crate::job::MAX_TASKS);
        let n = (status.tasks as usize).min(limit);
        JobResults {
            status,
            results: vec![None; n],
            attestations: vec![Vec::new(); n],
            rules: vec![AcceptRule::Quorum; n],
            header: None,
            refused: Vec::new(),
            limit,
        }
    }

    pub(super) fn insert(&mut self, task: u32, result: TaskResult) {
        self.insert_proved(task, result, Vec::new(), AcceptRule::Quorum);
    }

    pub(super) fn insert_proved(
        &mut self,
        task: u32,
        result: TaskResult,
        attestations: Vec<Attestation>,
        rule: AcceptRule,
    ) {
        let i = task as usize;
        if i >= self.limit {
            // A task the job cannot have: nothing to keep, nothing to grow.
            return;
        }
        if i >= self.results.len() {
            self.results.resize(i + 1, None);
            self.attestations.resize(i + 1, Vec::new());
            self.rules.resize(i + 1, AcceptRule::Quorum);
        }
        self.results[i] = Some(result);
        self.attestations[i] = attestations;
        self.rules[i] = rule;
    }

    pub(super) fn set_header(&mut self, header: JobHeader) {
        self.header = Some(header);
    }

    pub(super) fn refuse(&mut self, refusal: Refusal) {
        self.refused.push(refusal);
    }

    /// Results the client refused (a bad proof) with the node that served
    /// each; those tasks were fetched again through other nodes.
    pub fn refused(&self) -> &[Refusal] {
        &self.refused
    }

    /// The job's header (input hashes, bundle, terms), once known.
    pub fn header(&self) -> Option<&JobHeader> {
        self.header.as_ref()
    }

    /// The attestations of task `task`'s accepted result (empty when it has none).
    pub fn attestations(&self, task: u32) -> &[Attestation] {
        self.attestations
            .get(task as usize)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The rule that accepted task `task`'s result: a quorum of signers,
    /// or (adaptive verification) the coordinator's credibility bound.
    pub fn rule(&self, task: u32) -> AcceptRule {
        self.rules.get(task as usize).copied().unwrap_or_default()
    }

    /// The proof of task `task`'s output, to keep beside it
    /// ([`crate::proof`]); `None` when the task has no accepted output.
    pub fn proof(&self, task: u32) -> Option<Proof> {
        let Some(TaskResult::Output(bytes)) = self.get(task) else {
            return None;
        };
        let atts = self.attestations(task);
        if atts.is_empty() {
            return None;
        }
        Proof::new(
            self.status.job,
            self.header.as_ref()?,
            task,
            &Outcome::Ok,
            bytes,
            atts,
            self.rule(task),
        )
    }

    /// Results from a list of `(task, result)` pairs (tests and tools).
    pub fn from_parts(status: JobStatus, results: Vec<(u32, TaskResult)>) -> Self {
        let mut out = JobResults::empty(status, crate::job::MAX_TASKS);
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
    use serde::Serialize;
    use serde_bytes::ByteBuf;

    use super::*;
    use crate::client::{JobBuilder, empty_status, sign_module};
    use crate::identity::Identity;
    use crate::job::JobId;
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
    fn a_node_cannot_make_the_client_allocate_past_what_it_submitted() {
        // A status claiming 2^32 - 1 tasks, then a result for task 10^6, for
        // a job of 10 tasks: 10 entries, the stray result dropped.
        let mut r = JobResults::empty(status(u32::MAX), 10);
        assert_eq!(r.len(), 10);
        r.insert(
            1_000_000,
            TaskResult::Output(serde_bytes::ByteBuf::from(b"x".to_vec())),
        );
        assert_eq!(r.len(), 10);
        r.insert(
            3,
            TaskResult::Output(serde_bytes::ByteBuf::from(b"y".to_vec())),
        );
        assert_eq!(r.len(), 10);
        // Without a submitted header, the protocol's bound.
        assert_eq!(
            JobResults::empty(status(u32::MAX), usize::MAX).len(),
            crate::job::MAX_TASKS
        );
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
            .build(&me)
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
                        stderr: ByteBuf::new(),
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
                        stderr: ByteBuf::new(),
                    },
                ),
            ],
        );
        assert!(ok.all_accepted());
    }
}
