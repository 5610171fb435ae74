//! Single-flight fetches: at most one fetch per key at a time (the others
//! wait for it and then find its result cached), different keys in
//! parallel, a bound on the fetches in flight at once, and a timeout on the
//! whole wait.
//!
//! A worker fetches bundles and job terms from the peers that send it
//! batches. One global lock would let one slow or silent sender hold up
//! every other job's fetch; no lock at all would let a hundred batches of
//! one job fetch the same bundle a hundred times.

use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use tokio::sync::{Mutex, Semaphore};

/// Why a flight gave no value.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FlightError<E> {
    /// The fetch itself failed.
    #[error(transparent)]
    Failed(E),
    /// Waiting for a turn, a fetch permit and the fetch took longer than the
    /// timeout.
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
}

/// Single-flight fetches keyed by `K`.
pub(crate) struct Flights<K> {
    /// One gate per key being fetched right now (removed when its last
    /// waiter is done, so the map holds only keys in flight).
    gates: DashMap<K, Arc<Mutex<()>>>,
    /// Fetches in flight at once, over every key.
    permits: Semaphore,
    timeout: Duration,
}

impl<K: Eq + Hash + Clone> Flights<K> {
    /// At most `concurrent` fetches at once, each wait bounded by `timeout`.
    pub(crate) fn new(concurrent: usize, timeout: Duration) -> Self {
        Flights {
            gates: DashMap::new(),
            permits: Semaphore::new(concurrent.max(1)),
            timeout,
        }
    }

    /// The value of `key`: from `cached` if it has it, else from `fetch`,
    /// run by one caller per key at a time (the others wait and then ask
    /// `cached` again). `fetch` must cache what it gets.
    pub(crate) async fn get<T, E, F>(
        &self,
        key: K,
        cached: impl Fn() -> Option<T>,
        fetch: impl FnOnce() -> F,
    ) -> Result<T, FlightError<E>>
    where
        F: Future<Output = Result<T, E>>,
    {
        if let Some(v) = cached() {
            return Ok(v);
        }
        let gate = self.gates.entry(key.clone()).or_default().clone();
        let flight = async {
            let _turn = gate.lock().await;
            if let Some(v) = cached() {
                return Ok(v);
            }
            let Ok(_permit) = self.permits.acquire().await else {
                // The semaphore is never closed; treat it as a timeout.
                return Err(FlightError::TimedOut(self.timeout));
            };
            fetch().await.map_err(FlightError::Failed)
        };
        let r = match tokio::time::timeout(self.timeout, flight).await {
            Ok(r) => r,
            Err(_) => Err(FlightError::TimedOut(self.timeout)),
        };
        // The map and this caller hold the gate: nobody else waits for it.
        self.gates.remove_if(&key, |_, g| {
            Arc::ptr_eq(g, &gate) && Arc::strong_count(g) <= 2
        });
        r
    }

    /// Keys with a fetch in flight or waiters (for tests).
    #[cfg(test)]
    fn in_flight(&self) -> usize {
        self.gates.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn one_fetch_per_key_keys_in_parallel_and_a_timeout() {
        let flights = Arc::new(Flights::<u32>::new(4, Duration::from_millis(500)));
        let cache = Arc::new(DashMap::<u32, u32>::new());
        let fetches = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..20u32 {
            let (flights, cache, fetches) = (flights.clone(), cache.clone(), fetches.clone());
            tasks.push(tokio::spawn(async move {
                let key = i % 2;
                flights
                    .get(
                        key,
                        || cache.get(&key).map(|v| *v),
                        || async {
                            fetches.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            cache.insert(key, key + 100);
                            Ok::<u32, String>(key + 100)
                        },
                    )
                    .await
            }));
        }
        for (i, t) in tasks.into_iter().enumerate() {
            assert_eq!(t.await.unwrap().unwrap(), (i as u32 % 2) + 100);
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 2, "one fetch per key");
        assert_eq!(flights.in_flight(), 0, "no gate left behind");
        // A fetch that never answers ends at the timeout, and the next one runs.
        let r = flights
            .get(7, || None, std::future::pending::<Result<u32, String>>)
            .await;
        assert!(matches!(r, Err(FlightError::TimedOut(_))));
        let r = flights
            .get(7, || None, || async { Ok::<u32, String>(1) })
            .await;
        assert_eq!(r.unwrap(), 1);
        assert_eq!(flights.in_flight(), 0);
    }
}
