//! One NetSuite concurrency budget per NetSuite account: for every connection posting to that
//! account (two tenants, or a sandbox and a production connection, may post to one account) and,
//! on a shared PostgreSQL store, for every instance.
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
use std::collections::HashMap;
use std::sync::Mutex;

/// Longer than any request (the client times out at 120 s) including its retries.
const LEASE_MS: i64 = 10 * 60 * 1000;

pub struct SharedBudget {
    store: Store,
    /// The NetSuite account whose slots these are.
    account: String,
    local: AdaptiveLimit,
    instance: String,
}

impl SharedBudget {
    /// A budget of `slots` requests shared through `store` (slots are created or trimmed).
    pub async fn new(
        store: Store,
        account: &str,
        slots: usize,
    ) -> Result<Arc<Self>, mlc_store::StoreError> {
        store.ensure_netsuite_slots(account, slots).await?;
        Ok(Arc::new(SharedBudget {
            store,
            account: account.to_string(),
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
                match self
                    .store
                    .take_netsuite_slot(&self.account, &holder, LEASE_MS)
                    .await
                {
                    Ok(Some(slot)) => {
                        let store = self.store.clone();
                        let account = self.account.clone();
                        let epoch = local.epoch();
                        return BudgetPermit::new(epoch, move || {
                            // Release off the caller's path; if it is lost, the lease expires.
                            // The local permit goes only once the row is free: the job it lets
                            // in then finds a slot at once, instead of backing off 10–200 ms.
                            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                                rt.spawn(async move {
                                    if let Err(e) =
                                        store.release_netsuite_slot(&account, slot, &holder).await
                                    {
                                        tracing::warn!("cannot release NetSuite slot {slot}: {e}");
                                    }
                                    drop(local);
                                });
                            } else {
                                drop(local);
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

/// The budgets of this process, one per NetSuite account, so that every connection posting to an
/// account shares one: rows in the store on PostgreSQL (shared with the other instances), an
/// in-process adaptive limit on SQLite (one process owns a SQLite store).
pub struct Budgets {
    store: Store,
    by_account: Mutex<HashMap<String, Arc<dyn ConcurrencyBudget>>>,
}

impl Budgets {
    pub fn new(store: Store) -> Arc<Self> {
        Arc::new(Budgets {
            store,
            by_account: Mutex::new(HashMap::new()),
        })
    }

    /// The account's budget, made with `slots` on first use (the first connection to name the
    /// account sets its width; `netsuite.concurrency` should agree across its connections).
    pub async fn for_account(
        &self,
        account: &str,
        slots: usize,
    ) -> Result<Arc<dyn ConcurrencyBudget>, mlc_store::StoreError> {
        let key = account.to_ascii_uppercase();
        if let Some(b) = self.lock().get(&key) {
            return Ok(b.clone());
        }
        let made: Arc<dyn ConcurrencyBudget> = match self.store.backend() {
            mlc_store::Backend::Postgres => {
                SharedBudget::new(self.store.clone(), &key, slots).await?
            }
            mlc_store::Backend::Sqlite => Arc::new(AdaptiveLimit::new(slots)),
        };
        // Two first uses at once: whichever is inserted first is the account's budget.
        Ok(self.lock().entry(key).or_insert(made).clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<dyn ConcurrencyBudget>>> {
        // A poisoned map still holds valid budgets: a panic elsewhere must not stop posting.
        self.by_account
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
