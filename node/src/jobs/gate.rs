//! The worker's task slots, granted in fair order: the async shell of
//! [`FairQueue`](chorus_core::jobs::FairQueue).
//!
//! Every task a worker runs (and every compile) first takes a slot here,
//! keyed by the job's submitter and the coordinator that sent it. A free
//! slot goes to the next waiter in the fair queue's order rather than to
//! whoever asked first, so a submitter with ten tasks waiting gets every
//! other slot that frees while another has a thousand queued. The engine's
//! own semaphore stays the hard bound; this gate only decides the order.

use std::sync::{Arc, Mutex};

use chorus_core::jobs::FairQueue;
use chorus_sdk::identity::PeerId;
use tokio::sync::oneshot;

/// Who a task runs for: its job's submitter (a public key).
pub(super) type Submitter = [u8; 32];

/// The slots and the waiters for them. A std mutex: held to count or to
/// queue, never across an await.
pub(super) struct SlotGate {
    state: Mutex<State>,
}

struct State {
    free: usize,
    waiting: FairQueue<Submitter, PeerId, oneshot::Sender<SlotPermit>>,
}

/// The queue of waiters is full (more tasks wait than admission allows:
/// a bug, or a burst the caller reports as busy).
#[derive(Debug, thiserror::Error)]
#[error("too many tasks wait for a slot")]
pub(super) struct GateFull;

/// One slot, given back to the next waiter in fair order when dropped.
pub(super) struct SlotPermit {
    gate: Arc<SlotGate>,
    armed: bool,
}

impl Drop for SlotPermit {
    fn drop(&mut self) {
        if self.armed {
            self.gate.release();
        }
    }
}

impl SlotGate {
    /// `slots` slots; at most `waiters` tasks wait for one.
    pub(super) fn new(slots: usize, waiters: usize) -> Arc<SlotGate> {
        Arc::new(SlotGate {
            state: Mutex::new(State {
                free: slots.max(1),
                waiting: FairQueue::new(waiters),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The counts stay consistent even if a holder panicked.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for a task of `submitter` sent by `coordinator`: at once if
    /// one is free and nobody waits, else in fair order.
    pub(super) async fn acquire(
        self: &Arc<Self>,
        submitter: Submitter,
        coordinator: PeerId,
    ) -> Result<SlotPermit, GateFull> {
        let rx = {
            let mut st = self.lock();
            if st.free > 0 && st.waiting.is_empty() {
                st.free -= 1;
                return Ok(SlotPermit {
                    gate: self.clone(),
                    armed: true,
                });
            }
            let (tx, rx) = oneshot::channel();
            st.waiting
                .push(submitter, coordinator, tx)
                .map_err(|_| GateFull)?;
            rx
        };
        // A permit sent to a waiter that gave up is dropped with the
        // channel, which hands it on: no slot is lost.
        rx.await.map_err(|_| GateFull)
    }

    /// Hands a freed slot to the next waiter still waiting, or frees it.
    fn release(self: &Arc<Self>) {
        let mut st = self.lock();
        while let Some(tx) = st.waiting.pop() {
            let permit = SlotPermit {
                gate: self.clone(),
                armed: true,
            };
            match tx.send(permit) {
                Ok(()) => return,
                Err(mut p) => p.armed = false,
            }
        }
        st.free += 1;
    }

    /// Slots free right now.
    #[cfg(test)]
    fn free(&self) -> usize {
        self.lock().free
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_light_submitter_is_served_between_a_heavy_ones_tasks() {
        let gate = SlotGate::new(1, 1000);
        let coord = PeerId([0; 32]);
        let first = gate.acquire([1; 32], coord).await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        // 20 tasks of A wait, then 3 of B.
        for (who, n) in [(1u8, 20), (2u8, 3)] {
            for i in 0..n {
                let (gate, order) = (gate.clone(), order.clone());
                tasks.push(tokio::spawn(async move {
                    let _p = gate.acquire([who; 32], coord).await.unwrap();
                    order.lock().unwrap().push((who, i));
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }));
                // Queue in a known order.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        // A waiter that gives up does not take a slot with it.
        let quitter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.acquire([3; 32], coord).await.map(|_| ()) }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        quitter.abort();
        drop(first);
        for t in tasks {
            t.await.unwrap();
        }
        let order = order.lock().unwrap().clone();
        let b_done = order.iter().rposition(|(w, _)| *w == 2).unwrap();
        assert!(
            b_done <= 6,
            "B's 3 tasks ran among the first, not after A's 20: {order:?}"
        );
        assert_eq!(order.len(), 23);
        assert_eq!(gate.free(), 1, "every slot came back");
    }
}
