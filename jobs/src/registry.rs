//! The connection registry: the worker's job handler for every connection of every tenant.
//!
//! Each job carries its connection's scope. The registry runs it with that connection's own
//! pipeline (its Stripe client, its NetSuite client with its own M2M token, its posting
//! settings), built from the connection's stored settings and sealed credentials and cached, so
//! one process serves thousands of connections. A connection's cache entry is rebuilt when its
//! settings or credentials change (its `updated_at`, its credentials' newest `updated_at`), and
//! its status is read at most every few seconds: a paused connection's jobs wait (its events are
//! stored, nothing is lost) until it is resumed.
//!
//! The configured `default` connection is the exception: it runs with the process
//! configuration (`[stripe]`, `[netsuite]`, `[posting]`, `[reference]`), as a single-company
//! install always has.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mlc_core::ConnectionStatus;
use mlc_store::sealed::MasterKey;
use mlc_store::{ConnectionScope, Job, JobOutcome, Store};
use tokio::sync::Mutex;

use crate::runner::JobHandler;

use mlc_service::connections::{ConnectionHandler, PAUSED_MARKER, stored_connection_handler};
use mlc_service::netsuite_budget::Budgets;

/// How long a connection's status and version are trusted before they are read again.
const RECHECK: Duration = Duration::from_secs(2);
/// The same last error is written to the connection at most this often (a failing connection
/// must not turn every job into a write).
const ERROR_RECORD_EVERY: Duration = Duration::from_secs(60);

/// What was last written to a connection's health, so that only changes are written.
#[derive(Default)]
struct Recorded {
    token_issued_at: Option<i64>,
    error: Option<(String, Instant)>,
}

/// Jobs of one NetSuite account in flight in this process, as a multiple of the account's
/// current concurrency limit, that it may always have before a new job is put off instead of
/// queueing for a slot while holding a worker. Twice the limit keeps the account busy (a job
/// spends part of its time on Stripe and the store, not holding a NetSuite slot).
const ACCOUNT_JOBS_PER_SLOT: usize = 2;
/// Accounts that started a job within this window count as having work.
const ACCOUNTS_BUSY_WINDOW: Duration = Duration::from_secs(5);
/// How long a job of a saturated NetSuite account is put off (plus up to as much again, jittered).
/// About one NetSuite request: a saturated account of limit 5 at 200 ms finishes a job every
/// ~40 ms, so 2–4 s (until 2026-12-07) left its put-off jobs queued long after it had room: the
/// last seconds of `bench pipeline --connections 10` ran at a fifth of the limit. Each put-off is
/// one write, and only jobs over the account's line are put off.
const SATURATED_DEFER: Duration = Duration::from_millis(250);

/// Whether a NetSuite account with `in_flight` jobs of this process under a limit of `limit`
/// concurrent requests takes no more jobs for now, when `busy_accounts` accounts share
/// `worker_slots` workers.
///
/// An account may hold twice its limit, or its fair share of the workers plus its limit,
/// whichever is more. The share matters with many accounts: ten accounts on 100 workers each
/// hold about ten jobs, which is twice a limit of 5; putting off every job over that re-queued
/// more jobs than ran (7,485 put off for 4,954 events in `bench pipeline --connections 10`),
/// and the re-queueing, not NetSuite, set the pace. An account far over its share still gives
/// way, so one flood cannot take every worker.
pub fn account_saturated(
    in_flight: usize,
    limit: usize,
    worker_slots: usize,
    busy_accounts: usize,
) -> bool {
    let limit = limit.max(1);
    let fair_share = worker_slots.div_ceil(busy_accounts.max(1));
    in_flight >= (ACCOUNT_JOBS_PER_SLOT * limit).max(fair_share + limit)
}

/// How long a job of a paused (or draft) connection waits before it is looked at again; resuming
/// the connection wakes it at once.
const PAUSED_WAIT_MS: i64 = 15 * 60 * 1000;

struct Entry {
    /// `None`: the connection could not be built; the reason is in `error`.
    handler: Option<ConnectionHandler>,
    error: Option<String>,
    status: ConnectionStatus,
    version: (i64, i64),
    checked: Instant,
}

/// The worker's handler: dispatches each job to its connection's handler.
#[derive(Clone)]
pub struct Handler {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    budgets: Arc<Budgets>,
    master_key: Option<MasterKey>,
    default_scope: ConnectionScope,
    default_handler: ConnectionHandler,
    entries: Mutex<HashMap<ConnectionScope, Arc<Mutex<Option<Entry>>>>>,
    health: Mutex<HashMap<ConnectionScope, Recorded>>,
    /// This process's jobs in flight per NetSuite budget (one per account: see `Budgets`).
    account_jobs: std::sync::Mutex<HashMap<usize, usize>>,
    /// When each NetSuite budget last started a job here: saturation defers only while several
    /// accounts have work (alone, an account's jobs may as well wait for its slots in place).
    account_seen: std::sync::Mutex<HashMap<usize, Instant>>,
}

/// A job's place in its NetSuite account's count; given back on drop.
struct AccountJob<'a> {
    counts: &'a std::sync::Mutex<HashMap<usize, usize>>,
    key: usize,
}

impl Drop for AccountJob<'_> {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// The identity of a handler's NetSuite budget (shared by every connection posting to the same
/// account) and its current limit.
fn budget_of(handler: &ConnectionHandler) -> Option<(usize, usize)> {
    let budget = handler.pipeline()?.netsuite().budget();
    let key = Arc::as_ptr(budget).cast::<()>() as usize;
    Some((key, budget.current_limit()))
}

impl Handler {
    pub fn new(
        store: Store,
        budgets: Arc<Budgets>,
        master_key: Option<MasterKey>,
        default_scope: ConnectionScope,
        default_handler: ConnectionHandler,
    ) -> Self {
        Handler {
            inner: Arc::new(Inner {
                store,
                budgets,
                master_key,
                default_scope,
                default_handler,
                entries: Mutex::new(HashMap::new()),
                health: Mutex::new(HashMap::new()),
                account_jobs: std::sync::Mutex::new(HashMap::new()),
                account_seen: std::sync::Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The configured default connection's handler.
    pub fn default_handler(&self) -> &ConnectionHandler {
        &self.inner.default_handler
    }

    /// The handler for a connection, built (or rebuilt after a change) when needed, with its
    /// status; `Err` says why the connection cannot post, in words for its operator.
    async fn for_scope(
        &self,
        scope: &ConnectionScope,
    ) -> Result<(ConnectionStatus, ConnectionHandler), String> {
        let slot = {
            let mut entries = self.inner.entries.lock().await;
            entries.entry(scope.clone()).or_default().clone()
        };
        // One connection is (re)built once at a time; other connections are not held up.
        let mut entry = slot.lock().await;
        // A connection that is not active, or could not be built, is read again every time: its
        // jobs are few (they wait), and a resume or a fix must be seen by the very jobs it wakes.
        if let Some(e) = entry.as_ref()
            && e.checked.elapsed() < RECHECK
            && e.status == ConnectionStatus::Active
            && e.handler.is_some()
        {
            return match (&e.handler, &e.error) {
                (Some(h), _) => Ok((e.status, h.clone())),
                (None, err) => Err(err.clone().unwrap_or_default()),
            };
        }
        let connection = self
            .inner
            .store
            .tenant(&scope.tenant())
            .get_connection(scope.connection_id())
            .await
            .map_err(|e| format!("cannot read connection {scope}: {e}"))?
            .ok_or_else(|| format!("connection {scope} no longer exists"))?;
        let scoped = self.inner.store.scoped(scope);
        let newest_credential = scoped
            .list_credential_names()
            .await
            .map_err(|e| format!("cannot read the credentials of {scope}: {e}"))?
            .iter()
            .map(|c| c.updated_at)
            .max()
            .unwrap_or(0);
        let version = (connection.updated_at, newest_credential);
        let unchanged = entry
            .as_ref()
            .is_some_and(|e| e.version == version && e.handler.is_some());
        if unchanged {
            if let Some(e) = entry.as_mut() {
                e.status = connection.status;
                e.checked = Instant::now();
            }
        } else {
            let built = if *scope == self.inner.default_scope {
                Ok(self.inner.default_handler.clone())
            } else {
                stored_connection_handler(
                    &connection,
                    scoped,
                    &self.inner.budgets,
                    self.inner.master_key.as_ref(),
                )
                .await
            };
            if let Err(e) = &built {
                tracing::warn!(connection = %scope, "connection cannot post: {e}");
            }
            *entry = Some(Entry {
                error: built.as_ref().err().cloned(),
                handler: built.ok(),
                status: connection.status,
                version,
                checked: Instant::now(),
            });
        }
        match entry.as_ref() {
            Some(Entry {
                handler: Some(h),
                status,
                ..
            }) => Ok((*status, h.clone())),
            Some(Entry { error, .. }) => Err(error.clone().unwrap_or_default()),
            None => Err(format!("connection {scope} could not be loaded")),
        }
    }
}

impl Handler {
    /// Keeps the connection's health current for its operators (`connections show`, the
    /// dashboard next): its NetSuite token's issue time, and its last error. Best effort: a
    /// failed write is logged and changes nothing about the job.
    async fn note_health(
        &self,
        scope: &ConnectionScope,
        handler: Option<&ConnectionHandler>,
        outcome: &JobOutcome,
    ) {
        let token = handler
            .and_then(ConnectionHandler::pipeline)
            .and_then(|p| p.netsuite().token_status())
            .and_then(|t| t.obtained_at);
        let error = match outcome {
            JobOutcome::Succeeded => None,
            JobOutcome::Retry { error, .. } | JobOutcome::Failed { error } => Some(error.as_str()),
            JobOutcome::Wait { reason, .. } => Some(reason.as_str()),
        };
        let (token, error) = {
            let mut health = self.inner.health.lock().await;
            let seen = health.entry(scope.clone()).or_default();
            let token = token.filter(|t| seen.token_issued_at != Some(*t));
            let error = error.filter(|e| {
                !seen
                    .error
                    .as_ref()
                    .is_some_and(|(last, at)| last == e && at.elapsed() < ERROR_RECORD_EVERY)
            });
            if token.is_some() {
                seen.token_issued_at = token;
            }
            if let Some(e) = error {
                seen.error = Some((e.to_string(), Instant::now()));
            }
            (token, error)
        };
        if token.is_none() && error.is_none() {
            return;
        }
        let tenant = self.inner.store.tenant(&scope.tenant());
        if let Err(e) = tenant
            .record_connection_health(scope.connection_id(), token, error)
            .await
        {
            tracing::warn!(connection = %scope, "cannot record the connection's health: {e}");
        }
    }
}

impl JobHandler for Handler {
    /// While several NetSuite accounts have work here, a job whose account already has
    /// [`ACCOUNT_JOBS_PER_SLOT`] × its limit jobs in flight waits a few seconds, unstarted, so
    /// the other accounts keep workers. With one account busy, its jobs wait for its slots in
    /// place: putting them off would only re-queue them (and leave NetSuite idle meanwhile).
    /// Only a connection already built is looked at (a first job builds it).
    async fn defer_for(&self, scope: &ConnectionScope, worker_slots: usize) -> Option<Duration> {
        let slot = self.inner.entries.lock().await.get(scope).cloned()?;
        let (key, limit) = {
            let entry = slot.lock().await;
            budget_of(entry.as_ref()?.handler.as_ref()?)?
        };
        let accounts_busy = {
            let now = Instant::now();
            let mut seen = self
                .inner
                .account_seen
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            seen.retain(|_, at| now.duration_since(*at) < ACCOUNTS_BUSY_WINDOW);
            seen.len()
        };
        if accounts_busy < 2 {
            return None;
        }
        let in_flight = self
            .inner
            .account_jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .copied()
            .unwrap_or(0);
        account_saturated(in_flight, limit, worker_slots, accounts_busy).then(|| {
            let jitter = rand::random_range(0..=SATURATED_DEFER.as_millis() as u64);
            SATURATED_DEFER + Duration::from_millis(jitter)
        })
    }

    async fn handle(&self, job: Job) -> JobOutcome {
        let scope = job.scope.clone();
        // Onboarding's runs over the Stripe history run on a draft connection too (that is
        // where the dry run is wanted) and hold no NetSuite budget: they only read.
        if job.kind == mlc_store::HISTORY_RUN_JOB {
            return match self.for_scope(&scope).await {
                Ok((_, handler)) => handler.run_history(job).await,
                Err(reason) => {
                    mlc_service::connections::fail_history_run(
                        &self.inner.store.scoped(&scope),
                        &job,
                        &reason,
                    )
                    .await
                }
            };
        }
        match self.for_scope(&scope).await {
            Ok((ConnectionStatus::Active, handler)) => {
                let _counted = budget_of(&handler).map(|(key, _)| {
                    self.inner
                        .account_seen
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(key, Instant::now());
                    let counts = &self.inner.account_jobs;
                    *counts
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry(key)
                        .or_insert(0) += 1;
                    AccountJob { counts, key }
                });
                let outcome = handler.handle(job).await;
                self.note_health(&scope, Some(&handler), &outcome).await;
                outcome
            }
            Ok((status, _)) => JobOutcome::Wait {
                reason: format!(
                    "connection {scope} {PAUSED_MARKER} (it is {status}): its events are stored \
                     and post when it is resumed (`ml-connector connections resume --tenant {} \
                     --connection {}`)",
                    scope.tenant_id(),
                    scope.connection_id()
                ),
                after_ms: PAUSED_WAIT_MS,
            },
            // A connection that cannot be built needs a person (settings or credentials), and is
            // looked at again: a fix is picked up without a replay.
            Err(reason) => {
                let outcome = JobOutcome::Wait {
                    reason,
                    after_ms: 5 * 60 * 1000,
                };
                self.note_health(&scope, None, &outcome).await;
                outcome
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::account_saturated;

    #[test]
    fn an_account_takes_twice_its_limit_in_jobs_then_defers() {
        // Two accounts on 8 workers: a fair share (4) plus the limit is less than twice it.
        assert!(!account_saturated(0, 5, 8, 2));
        assert!(!account_saturated(9, 5, 8, 2));
        assert!(account_saturated(10, 5, 8, 2));
        // A limit halved by 429s to 1 still admits two jobs; a limit of 0 is treated as 1.
        assert!(!account_saturated(1, 1, 2, 2));
        assert!(account_saturated(2, 0, 2, 2));
    }

    #[test]
    fn with_many_workers_an_account_takes_its_share_plus_its_limit() {
        // Ten accounts on 100 workers: a share of 10, so up to 14 in flight before putting off.
        assert!(!account_saturated(10, 5, 100, 10));
        assert!(!account_saturated(14, 5, 100, 10));
        assert!(account_saturated(15, 5, 100, 10));
        // Two accounts on 100 workers: one may hold 54 while the other has the rest.
        assert!(!account_saturated(54, 5, 100, 2));
        assert!(account_saturated(55, 5, 100, 2));
    }
}
