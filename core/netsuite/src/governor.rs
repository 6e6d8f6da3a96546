//! The concurrency governor. NetSuite governs *concurrent* requests per account (shared by SOAP,
//! REST and RESTlets, as few as 5 in total), answering 429 `CONCURRENCY_LIMIT_EXCEEDED` beyond it.
//!
//! Every request holds a [`BudgetPermit`] while in flight. The in-process [`AdaptiveLimit`] starts
//! at the configured limit, halves it (at least 1) on a 429 and adds one back after a run of
//! successes, never above the configured limit.
//!
//! The seam: [`ConcurrencyBudget`] is a trait so several connector instances can later share one
//! budget (e.g. rows in PostgreSQL with leases, or advisory locks). A shared implementation only
//! needs to hand out permits whose drop releases the slot and to react to `on_throttled`.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// A slot of the concurrency budget; the slot is released when this is dropped.
pub struct BudgetPermit {
    epoch: u64,
    release: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl BudgetPermit {
    /// Makes a permit; `release` runs exactly once, on drop. `epoch` identifies the limit the
    /// permit was granted under (see [`ConcurrencyBudget::on_throttled`]).
    pub fn new(epoch: u64, release: impl FnOnce() + Send + Sync + 'static) -> Self {
        BudgetPermit {
            epoch,
            release: Some(Box::new(release)),
        }
    }

    /// The limit epoch this permit was granted under.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
}

impl Drop for BudgetPermit {
    fn drop(&mut self) {
        if let Some(f) = self.release.take() {
            f();
        }
    }
}

impl std::fmt::Debug for BudgetPermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BudgetPermit(epoch {})", self.epoch)
    }
}

/// A boxed future, so the trait stays object-safe without extra crates.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A budget of concurrent NetSuite requests. Implement it to share the budget across processes.
pub trait ConcurrencyBudget: Send + Sync + 'static {
    /// Waits for a free slot.
    fn acquire(&self) -> BoxFuture<'_, BudgetPermit>;
    /// NetSuite answered 429 to a request holding `permit`: lower the limit. Implementations
    /// should lower it once per epoch, so a burst of 429s from requests started under the old
    /// limit does not collapse it to 1.
    fn on_throttled(&self, permit: &BudgetPermit);
    /// A request holding a permit succeeded.
    fn on_success(&self);
    /// The current limit.
    fn current_limit(&self) -> usize;
    /// Slots in use now.
    fn in_flight(&self) -> usize;
}

#[derive(Debug)]
struct LimitState {
    limit: usize,
    max: usize,
    in_flight: usize,
    successes: u32,
    epoch: u64,
}

/// The in-process adaptive limit (halve on 429, +1 after `recover_after` successes).
#[derive(Debug, Clone)]
pub struct AdaptiveLimit {
    inner: Arc<AdaptiveInner>,
}

#[derive(Debug)]
struct AdaptiveInner {
    state: Mutex<LimitState>,
    notify: Notify,
    recover_after: u32,
}

impl AdaptiveInner {
    fn lock(&self) -> std::sync::MutexGuard<'_, LimitState> {
        // Plain counters: a panic elsewhere cannot leave them in a state worse than slightly off.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl AdaptiveLimit {
    /// Successes needed before the limit grows by one again.
    pub const DEFAULT_RECOVER_AFTER: u32 = 20;

    /// A limit of `max` (at least 1) concurrent requests.
    pub fn new(max: usize) -> Self {
        Self::with_recovery(max, Self::DEFAULT_RECOVER_AFTER)
    }

    /// As [`Self::new`], growing back by one after `recover_after` successes.
    pub fn with_recovery(max: usize, recover_after: u32) -> Self {
        let max = max.max(1);
        AdaptiveLimit {
            inner: Arc::new(AdaptiveInner {
                state: Mutex::new(LimitState {
                    limit: max,
                    max,
                    in_flight: 0,
                    successes: 0,
                    epoch: 0,
                }),
                notify: Notify::new(),
                recover_after: recover_after.max(1),
            }),
        }
    }

    /// A permit if a slot is free now.
    pub fn try_acquire(&self) -> Option<BudgetPermit> {
        let mut st = self.inner.lock();
        if st.in_flight < st.limit {
            st.in_flight += 1;
            let epoch = st.epoch;
            drop(st);
            let inner = Arc::clone(&self.inner);
            Some(BudgetPermit::new(epoch, move || {
                inner.lock().in_flight -= 1;
                inner.notify.notify_waiters();
            }))
        } else {
            None
        }
    }
}

impl ConcurrencyBudget for AdaptiveLimit {
    fn acquire(&self) -> BoxFuture<'_, BudgetPermit> {
        Box::pin(async move {
            loop {
                // Register for wake-ups before checking, so a release in between is not missed.
                let notified = self.inner.notify.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if let Some(p) = self.try_acquire() {
                    return p;
                }
                notified.await;
            }
        })
    }

    fn on_throttled(&self, permit: &BudgetPermit) {
        let mut st = self.inner.lock();
        st.successes = 0;
        if permit.epoch == st.epoch {
            st.limit = (st.limit / 2).max(1);
            st.epoch += 1;
            tracing::warn!(
                limit = st.limit,
                "NetSuite concurrency limit hit; lowering our limit"
            );
        }
    }

    fn on_success(&self) {
        let mut st = self.inner.lock();
        if st.limit >= st.max {
            return;
        }
        st.successes += 1;
        if st.successes >= self.inner.recover_after {
            st.successes = 0;
            st.limit += 1;
            st.epoch += 1;
            drop(st);
            self.inner.notify.notify_waiters();
        }
    }

    fn current_limit(&self) -> usize {
        self.inner.lock().limit
    }

    fn in_flight(&self) -> usize {
        self.inner.lock().in_flight
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_holds_the_limit_and_releases_on_drop() {
        let g = AdaptiveLimit::new(2);
        let a = g.try_acquire().unwrap();
        let _b = g.try_acquire().unwrap();
        assert!(g.try_acquire().is_none());
        assert_eq!(g.in_flight(), 2);
        drop(a);
        assert_eq!(g.in_flight(), 1);
        assert!(g.try_acquire().is_some());
    }

    #[test]
    fn halves_once_per_epoch_and_recovers_slowly() {
        let g = AdaptiveLimit::with_recovery(8, 3);
        let permits: Vec<_> = (0..8).map(|_| g.try_acquire().unwrap()).collect();
        // A burst of 429s from requests started under the same limit halves it once.
        for p in &permits {
            g.on_throttled(p);
        }
        assert_eq!(g.current_limit(), 4);
        drop(permits);
        // A 429 under the new limit halves again; never below 1.
        for _ in 0..5 {
            let p = g.try_acquire().unwrap();
            g.on_throttled(&p);
        }
        assert_eq!(g.current_limit(), 1);
        let _p = g.try_acquire().unwrap();
        assert!(g.try_acquire().is_none());
        // Three successes per step back up, capped at the configured maximum.
        for _ in 0..3 {
            g.on_success();
        }
        assert_eq!(g.current_limit(), 2);
        for _ in 0..100 {
            g.on_success();
        }
        assert_eq!(g.current_limit(), 8);
    }

    #[tokio::test]
    async fn waiters_wake_when_a_slot_frees() {
        let g = AdaptiveLimit::new(1);
        let p = g.acquire().await;
        let g2 = g.clone();
        let waiter = tokio::spawn(async move {
            let _p = g2.acquire().await;
            "got it"
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(p);
        assert_eq!(waiter.await.unwrap(), "got it");
    }
}
