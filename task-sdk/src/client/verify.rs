//! The client's check of every result it receives: the attestations'
//! signatures, the number of distinct signers against the job's quorum, the
//! outcome digest against the output bytes, the input hash and the bundle
//! id against the job's header (whose hash is the job id), and that every
//! signer is a member of the ring. A result that fails is never handed to
//! the caller: it is recorded with the node that served it, and its task is
//! fetched again from the job's other holders ([`JobRequest::Held`]).

use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;

use super::Client;
use super::results::{JobResults, Refusal};
use crate::job::{JOB_FRAME_CAP, JobHeader, JobId};
use crate::wire::{JobRequest, JobResponse, ProvedResult, Request, Response, ResultsPage};

/// Checks `r` against the job's header, without the network
/// ([`ProvedResult::check`]): returns the signers' keys (none for a failed
/// task, which carries no proof).
pub(super) fn check_result(
    job: JobId,
    header: &JobHeader,
    r: &ProvedResult,
) -> Result<Vec<[u8; 32]>, String> {
    r.check(job, header).map_err(|e| e.to_string())
}

/// Distinct signers found not to be ring members in one page before the rest
/// of the page is refused without looking anyone else up.
const MAX_STRANGERS_PER_PAGE: usize = 8;

/// One warning per page that held refused results.
fn warn_refused(job: JobId, node: SocketAddr, refused: usize, first: Option<&str>) {
    if refused > 0 {
        tracing::warn!(
            %job,
            %node,
            refused,
            first = first.unwrap_or(""),
            "refused results whose proofs do not hold; fetching them from the job's other holders"
        );
    }
}

/// What a page left to do.
pub(super) struct Checked {
    /// Tasks refused from this page.
    pub(super) refused: usize,
}

impl Client {
    /// Checks every result of `page` (served by `node`) and keeps those that
    /// hold in `all`; the others are recorded as refused and added to `bad`.
    pub(super) async fn take_page(
        &self,
        job: JobId,
        node: SocketAddr,
        page: ResultsPage,
        header: &mut Option<JobHeader>,
        all: &mut JobResults,
        bad: &mut BTreeSet<u32>,
    ) -> Checked {
        let mut refused = 0;
        let mut first: Option<String> = None;
        let mut refuse = |all: &mut JobResults, task: u32, reason: String| {
            tracing::debug!(%job, task, %node, %reason, "refused a result whose proof does not hold");
            first.get_or_insert_with(|| format!("task {task}: {reason}"));
            all.refuse(Refusal { task, node, reason });
            refused += 1;
        };
        if let Some(h) = page.header {
            if !h.matches(job) {
                for r in page.results {
                    bad.insert(r.task);
                    refuse(all, r.task, "the page's job header is not the job's".into());
                }
                warn_refused(job, node, refused, first.as_deref());
                return Checked { refused };
            }
            if header.is_none() {
                self.remember_header(job, &h);
                *header = Some(*h);
            }
        }
        let mut strangers = BTreeSet::new();
        for r in page.results {
            let task = r.task;
            let Some(h) = header.as_ref() else {
                bad.insert(task);
                refuse(all, task, "no job header to check it against".into());
                continue;
            };
            let signers = match check_result(job, h, &r) {
                Ok(s) => s,
                Err(reason) => {
                    bad.insert(task);
                    refuse(all, task, reason);
                    continue;
                }
            };
            // A failed task carries no proof and no output: kept as it is,
            // never counted as verified (SECURITY.md: a coordinator can deny).
            if !r.result.is_verified() {
                bad.remove(&task);
                all.insert_proved(task, r.result, Vec::new(), r.rule);
                continue;
            }
            // A node that signs with fresh keys could make us look up
            // thousands of strangers: past a few, the rest of its page is
            // refused unchecked.
            if strangers.len() >= MAX_STRANGERS_PER_PAGE {
                bad.insert(task);
                refuse(
                    all,
                    task,
                    "the node served too many results signed by non-members".into(),
                );
                continue;
            }
            let mut members = 0usize;
            for key in &signers {
                if !strangers.contains(key) && self.is_member(key, node).await {
                    members += 1;
                } else {
                    strangers.insert(*key);
                }
            }
            let needed = r.rule.signers_needed(&h.policy).unwrap_or(h.policy.quorum);
            if members < needed as usize {
                bad.insert(task);
                refuse(
                    all,
                    task,
                    format!(
                        "only {members} of its {} signers are ring members, {needed} must be ({})",
                        signers.len(),
                        r.rule.describe()
                    ),
                );
                continue;
            }
            bad.remove(&task);
            all.insert_proved(task, r.result, r.attestations, r.rule);
        }
        warn_refused(job, node, refused, first.as_deref());
        Checked { refused }
    }

    /// Fetches the tasks in `bad` from the job's holders (its coordinator
    /// and backups answer [`JobRequest::Held`] from their own state), every
    /// known node but those in `liars` once, in turn. Tasks no holder can
    /// prove stay in `bad`.
    pub(super) async fn refetch(
        &self,
        job: JobId,
        header: &mut Option<JobHeader>,
        all: &mut JobResults,
        bad: &mut BTreeSet<u32>,
        liars: &HashSet<SocketAddr>,
    ) {
        let timeout = self.inner.config.call_timeout;
        for node in self.nodes() {
            if bad.is_empty() {
                return;
            }
            if liars.contains(&node) {
                continue;
            }
            let mut from = if header.is_none() {
                0
            } else {
                bad.first().copied().unwrap_or(0)
            };
            // Pages of one holder, bounded by the job's size.
            for _ in 0..=all.len() {
                let req = Request::Job(JobRequest::Held { job, from });
                let page = match self
                    .inner
                    .transport
                    .call::<_, Response>(node, None, &req, JOB_FRAME_CAP, timeout)
                    .await
                {
                    Ok(Response::Job(JobResponse::Results(page))) => *page,
                    _ => break,
                };
                let next = page.next;
                // Only the tasks still missing are taken from this page.
                let mut page = page;
                page.results.retain(|r| bad.contains(&r.task));
                let checked = self.take_page(job, node, page, header, all, bad).await;
                if checked.refused > 0 {
                    break;
                }
                match (next, bad.first()) {
                    (Some(n), Some(&b)) if n > from => from = n.max(b),
                    _ => break,
                }
            }
        }
    }
}
