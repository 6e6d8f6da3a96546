//! One NetSuite concurrency budget for every instance on a shared PostgreSQL store.
//!
//! NetSuite's limit is per account, so three instances each allowed 5 requests would send 15 at
//! an account that takes 5. Each request holds a slot row in the store (leased, so a crashed
//! instance's slots come back) on top of the in-process adaptive limit, which still halves
//! itself on a 429.

use std::sync::Arc;
use std::time::Duration;

use mlc_netsuite::{AdaptiveLimit, BoxFuture, BudgetPermit, ConcurrencyBudget};
use mlc_store::Store;
use rand::Rng;

/// Longer than any request (the client times out at 120 s) including its retries.
const LEASE_MS: i64 = 10 * 60 * 1000;

pub struct SharedBudget {
    store: Store,
    local: AdaptiveLimit,
    instance: String,
}

impl SharedBudget {
    /// A budget of `slots` requests shared through `store` (slots are created or trimmed).
    pub async fn new(store: Store, slots: usize) -> Result<Arc<Self>, mlc_store::StoreError> {
        store.ensure_netsuite_slots(slots).await?;
        Ok(Arc::new(SharedBudget {
            store,
            local: AdaptiveLimit::new(slots),
            instance: uuid::Uuid::new_v4().simple().to_string(),
        }))
    }
}

impl ConcurrencyBudget for SharedBudget {
    fn acquire(&self) -> BoxFuture<'_, BudgetPermit> {
        Box::pin(async move {
            let local = self.local.acquire().await;
            let holder = format!("{}:{}", self.instance, uuid::Uuid::new_v4().simple());
            let mut wait_ms = 10u64;
            loop {
                match self.store.take_netsuite_slot(&holder, LEASE_MS).await {
                    Ok(Some(slot)) => {
                        let store = self.store.clone();
                        let epoch = local.epoch();
                        return BudgetPermit::new(epoch, move || {
                            drop(local);
                            // Release off the caller's path; if it is lost, the lease expires.
                            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                                rt.spawn(async move {
                                    if let Err(e) = store.release_netsuite_slot(slot, &holder).await
                                    {
                                        tracing::warn!("cannot release NetSuite slot {slot}: {e}");
                                    }
                                });
                            }
                        });
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!("cannot take a shared NetSuite slot: {e}"),
                }
                let jitter = rand::rng().random_range(0..=wait_ms / 2);
                tokio::time::sleep(Duration::from_millis(wait_ms + jitter)).await;
                wait_ms = (wait_ms * 2).min(200);
            }
        })
    }

    fn on_throttled(&self, permit: &BudgetPermit) {
        self.local.on_throttled(permit);
    }

    fn on_success(&self) {
        self.local.on_success();
    }

    fn current_limit(&self) -> usize {
        self.local.current_limit()
    }

    fn in_flight(&self) -> usize {
        self.local.in_flight()
    }
}
