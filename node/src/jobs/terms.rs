//! The signed terms of the jobs this node runs batches for, as a worker.
//!
//! A worker runs a task only when it matches its job's [`JobHeader`] (input
//! hash, index, limits, policy, bundle), and the header only when the
//! submitter's signature over the job id holds for the key in the bundle's
//! manifest ([`JobHeader::verify_signed`]). Verified terms are kept here,
//! bounded in count and in bytes, least recently used out first.

use std::collections::HashMap;
use std::sync::Mutex;

use chorus_sdk::bundle::BundleId;
use chorus_sdk::job::{JobHeader, JobId, RunTasks, sha256};

/// Most jobs whose terms a worker keeps.
const MAX_TERMS: usize = 256;
/// Most bytes of input hashes kept over all terms (a header of 100,000 tasks
/// holds 3.2 MB of them).
const MAX_TERMS_BYTES: usize = 64 << 20;

/// A job's verified terms.
#[derive(Debug)]
pub(super) struct Terms {
    /// The job's header (its hash is the job id).
    pub(super) header: JobHeader,
    /// The submitter's public key, whose signature over the job id holds.
    pub(super) submitter: [u8; 32],
}

/// Why a batch does not match its job's terms.
#[derive(Debug, thiserror::Error)]
pub(super) enum Mismatch {
    /// The batch names another bundle.
    #[error("the batch runs bundle {batch}, the job's terms name {terms}")]
    Bundle {
        /// The batch's bundle.
        batch: BundleId,
        /// The terms' bundle.
        terms: BundleId,
    },
    /// The batch's limits or policy are not the job's.
    #[error("the batch's limits or policy differ from the job's signed terms")]
    Terms,
    /// A task index outside the job.
    #[error("task {0} is not in the job")]
    OutOfRange(u32),
    /// A task whose input is not the one the submitter signed.
    #[error("task {0}'s input is not the one the submitter signed")]
    Input(u32),
    /// The same task twice in one batch.
    #[error("task {0} appears twice in the batch")]
    Duplicate(u32),
}

impl Terms {
    /// Checks every part of `run` against the terms, given each task's input
    /// hash in `inputs` (in the batch's order).
    pub(super) fn check(&self, run: &RunTasks, inputs: &[[u8; 32]]) -> Result<(), Mismatch> {
        let h = &self.header;
        if run.bundle != h.bundle {
            return Err(Mismatch::Bundle {
                batch: run.bundle,
                terms: h.bundle,
            });
        }
        if run.limits != h.limits || run.policy != h.policy {
            return Err(Mismatch::Terms);
        }
        let mut seen = std::collections::HashSet::with_capacity(run.tasks.len());
        for (a, input) in run.tasks.iter().zip(inputs) {
            match h.input(a.task) {
                None => return Err(Mismatch::OutOfRange(a.task)),
                Some(signed) if signed != *input => return Err(Mismatch::Input(a.task)),
                Some(_) => {}
            }
            if !seen.insert(a.task) {
                return Err(Mismatch::Duplicate(a.task));
            }
        }
        Ok(())
    }
}

/// The input hash of every task of `run`, in order.
pub(super) fn input_hashes(run: &RunTasks) -> Vec<[u8; 32]> {
    run.tasks.iter().map(|a| sha256(&a.input)).collect()
}

/// Verified terms by job, bounded, least recently used out first. A std
/// mutex: held to look up or insert, never across an await.
#[derive(Default)]
pub(super) struct TermsCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<JobId, (std::sync::Arc<Terms>, u64)>,
    bytes: usize,
    clock: u64,
}

impl TermsCache {
    /// The terms of `job`, if kept (and marks them used).
    pub(super) fn get(&self, job: JobId) -> Option<std::sync::Arc<Terms>> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.clock += 1;
        let now = g.clock;
        g.entries.get_mut(&job).map(|(t, used)| {
            *used = now;
            t.clone()
        })
    }

    /// Keeps verified terms, forgetting the least recently used ones beyond
    /// the bounds.
    pub(super) fn insert(&self, job: JobId, terms: std::sync::Arc<Terms>) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.clock += 1;
        let now = g.clock;
        let size = terms.header.inputs.len();
        if let Some((old, _)) = g.entries.insert(job, (terms, now)) {
            g.bytes -= old.header.inputs.len();
        }
        g.bytes += size;
        while g.entries.len() > MAX_TERMS || (g.bytes > MAX_TERMS_BYTES && g.entries.len() > 1) {
            let Some(victim) = g
                .entries
                .iter()
                .filter(|(k, _)| **k != job)
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| *k)
            else {
                break;
            };
            if let Some((t, _)) = g.entries.remove(&victim) {
                g.bytes -= t.header.inputs.len();
            }
        }
    }

    /// Jobs whose terms are kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entries
            .len()
    }
}

#[cfg(test)]
mod tests {
    use chorus_core::RingPos;
    use chorus_core::jobs::Policy;
    use chorus_sdk::bundle::Limits;
    use chorus_sdk::job::Assignment;
    use serde_bytes::ByteBuf;

    use super::*;

    fn terms(inputs: &[&[u8]]) -> Terms {
        let mut hashes = Vec::new();
        for i in inputs {
            hashes.extend_from_slice(&sha256(i));
        }
        Terms {
            header: JobHeader {
                bundle: BundleId([1; 32]),
                policy: Policy::new(2, None, None).unwrap(),
                limits: Limits::default(),
                nonce: 0,
                inputs: ByteBuf::from(hashes),
            },
            submitter: [2; 32],
        }
    }

    fn batch(t: &Terms, tasks: &[(u32, &[u8])]) -> RunTasks {
        RunTasks {
            job: t.header.id(),
            bundle: t.header.bundle,
            coordinator: ([127, 0, 0, 1], 1).into(),
            limits: t.header.limits,
            policy: t.header.policy,
            tasks: tasks
                .iter()
                .map(|(task, input)| Assignment {
                    task: *task,
                    seed: 0,
                    input: ByteBuf::from(input.to_vec()),
                })
                .collect(),
        }
    }

    #[test]
    fn a_batch_must_match_its_terms_in_every_part() {
        let t = terms(&[b"a", b"b"]);
        let check = |run: &RunTasks| t.check(run, &input_hashes(run));
        assert!(check(&batch(&t, &[(0, b"a"), (1, b"b")])).is_ok());
        assert!(matches!(
            check(&batch(&t, &[(0, b"b")])),
            Err(Mismatch::Input(0))
        ));
        assert!(matches!(
            check(&batch(&t, &[(2, b"a")])),
            Err(Mismatch::OutOfRange(2))
        ));
        assert!(matches!(
            check(&batch(&t, &[(0, b"a"), (0, b"a")])),
            Err(Mismatch::Duplicate(0))
        ));
        let mut run = batch(&t, &[(0, b"a")]);
        run.limits.fuel += 1;
        assert!(matches!(check(&run), Err(Mismatch::Terms)));
        let mut run = batch(&t, &[(0, b"a")]);
        run.policy.max_replicas += 1;
        assert!(matches!(check(&run), Err(Mismatch::Terms)));
        let mut run = batch(&t, &[(0, b"a")]);
        run.bundle = BundleId([9; 32]);
        assert!(matches!(check(&run), Err(Mismatch::Bundle { .. })));
    }

    #[test]
    fn the_cache_is_bounded_and_keeps_what_is_used() {
        let cache = TermsCache::default();
        let first = JobId(RingPos(0));
        cache.insert(first, std::sync::Arc::new(terms(&[b"0"])));
        for i in 1..(MAX_TERMS as u64 + 10) {
            // The first job stays in use.
            assert!(cache.get(first).is_some(), "{i}");
            cache.insert(JobId(RingPos(i)), std::sync::Arc::new(terms(&[b"x"])));
            assert!(cache.len() <= MAX_TERMS);
        }
        assert!(cache.get(first).is_some());
        assert!(
            cache.get(JobId(RingPos(1))).is_none(),
            "the oldest unused went"
        );
    }
}
