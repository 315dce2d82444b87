//! Request coalescing (singleflight): while an answer for a key is being fetched, every other
//! request for that key waits for it instead of asking the downstream again. Should the fetching
//! request be dropped (its client went away), the next waiter takes the fetch over, so one
//! cancelled request never leaves the others hanging.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

/// Whether a request led its flight or waited for another's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// It ran the fetch.
    Leader,
    /// It got the leader's answer.
    Follower,
}

/// In-flight fetches by key.
pub struct Coalescer<V> {
    flights: Mutex<HashMap<String, Arc<OnceCell<V>>>>,
}

impl<V: Clone> Default for Coalescer<V> {
    fn default() -> Self {
        Coalescer { flights: Mutex::new(HashMap::new()) }
    }
}

impl<V: Clone> Coalescer<V> {
    /// The answer for `key`: from the flight in progress, or from `fetch` run here.
    pub async fn run<F, Fut>(&self, key: &str, fetch: F) -> (V, Role)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
    {
        let cell = {
            let mut flights = self.flights.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            flights.entry(key.to_string()).or_default().clone()
        };
        let mut led = false;
        let value = cell
            .get_or_init(|| {
                led = true;
                fetch()
            })
            .await
            .clone();
        if led {
            // The flight is over: later requests start a new one (or find the answer cached).
            let mut flights = self.flights.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if flights.get(key).is_some_and(|current| Arc::ptr_eq(current, &cell)) {
                flights.remove(key);
            }
        }
        (value, if led { Role::Leader } else { Role::Follower })
    }

    /// Keys being fetched now.
    pub fn in_flight_count(&self) -> usize {
        self.flights.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn concurrent_requests_share_one_fetch() {
        let coalescer = Arc::new(Coalescer::<u64>::default());
        let fetches = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..1_000 {
            let coalescer = coalescer.clone();
            let fetches = fetches.clone();
            tasks.push(tokio::spawn(async move {
                coalescer
                    .run("k", || async move {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        7
                    })
                    .await
            }));
        }
        let mut leaders = 0;
        for task in tasks {
            let (value, role) = task.await.unwrap();
            assert_eq!(value, 7);
            leaders += usize::from(role == Role::Leader);
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        assert_eq!(leaders, 1);
        assert_eq!(coalescer.in_flight_count(), 0);
        // The next request after the flight fetches again.
        let (_, role) = coalescer.run("k", || async { 8 }).await;
        assert_eq!(role, Role::Leader);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_leader_hands_over() {
        let coalescer = Arc::new(Coalescer::<u64>::default());
        let leader = {
            let coalescer = coalescer.clone();
            tokio::spawn(async move {
                coalescer
                    .run("k", || async {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        1
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(1)).await;
        let follower = {
            let coalescer = coalescer.clone();
            tokio::spawn(async move { coalescer.run("k", || async { 2 }).await })
        };
        tokio::time::sleep(Duration::from_millis(1)).await;
        leader.abort();
        let (value, role) = follower.await.unwrap();
        assert_eq!((value, role), (2, Role::Leader));
    }
}
