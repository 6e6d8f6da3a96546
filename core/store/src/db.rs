//! The connection pools plus the few helpers every query module shares.

use sea_orm::{
    ConnectionTrait as _, DatabaseConnection, DatabaseExecutor, DatabaseTransaction, DbBackend,
    DbErr, SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait as _,
};
use sqlx::AnyConnection;
use sqlx::any::AnyRow;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyPool, Row, Transaction};
use std::sync::Arc;
use tokio::sync::{Mutex, MutexGuard};

use crate::model::{AuditEntry, Backend, Job, JobState, NewAudit, StoreError};
use crate::scope::ConnectionScope;
use crate::store::WorkerPool;
use mlc_core::UnixMillis;

/// Which rows a PostgreSQL transaction may see under row-level security (migration 0002).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Rls<'a> {
    /// One tenant's rows (every tenant-scoped call).
    Tenant(&'a str),
    /// Every tenant's rows: only the store's own cross-tenant paths (the group-commit writer,
    /// whose batches hold several tenants' deliveries; the worker's claims; the registry).
    AllTenants,
}

/// Sets what the current transaction may see. Transaction-local (`set_config(…, true)`), so a
/// pooled connection never carries one tenant's setting into the next use. No-op on SQLite.
pub(crate) async fn set_rls(
    conn: &mut AnyConnection,
    backend: Backend,
    rls: Rls<'_>,
) -> Result<(), StoreError> {
    if backend != Backend::Postgres {
        return Ok(());
    }
    let (tenant, all) = match rls {
        Rls::Tenant(t) => (t, "off"),
        Rls::AllTenants => ("", "on"),
    };
    sqlx::query(
        "SELECT set_config('app.tenant_id', $1, true), set_config('app.all_tenants', $2, true)",
    )
    .bind(tenant.to_string())
    .bind(all)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// A connection for tenant-scoped reads: on PostgreSQL a transaction with the tenant set for
/// row-level security; on SQLite a plain pooled connection (no RLS there, and no BEGIN to pay).
pub(crate) enum ReadConn {
    Plain(PoolConnection<Any>),
    Tx(Transaction<'static, Any>),
}

impl ReadConn {
    /// Commits what was written (PostgreSQL); a no-op for a plain connection. Dropping a
    /// `ReadConn` without calling this rolls a PostgreSQL transaction back.
    pub(crate) async fn done(self) -> Result<(), StoreError> {
        match self {
            ReadConn::Plain(_) => Ok(()),
            ReadConn::Tx(t) => t.commit().await.map_err(db_err),
        }
    }
}

impl std::ops::Deref for ReadConn {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        match self {
            ReadConn::Plain(c) => c,
            ReadConn::Tx(t) => t,
        }
    }
}

impl std::ops::DerefMut for ReadConn {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self {
            ReadConn::Plain(c) => c,
            ReadConn::Tx(t) => t,
        }
    }
}

/// How often a writer waiting for the SQLite write lock checks for one the worker pool kept by
/// mistake ([`Db::write_guard`]).
const STALE_LOCK_CHECK: std::time::Duration = std::time::Duration::from_millis(250);

/// Who holds SQLite's write lock, the label of [`WRITE_LOCK_HELD`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum LockHolder {
    /// The group-commit writer: deliveries and the jobs' writes, batched.
    Writer,
    /// apalis: fetching, locking and acknowledging tasks.
    Worker,
    /// Every other write (settings, mappings, replays, …), each a commit of its own.
    Other,
}

impl LockHolder {
    fn label(self) -> &'static str {
        match self {
            LockHolder::Writer => "writer",
            LockHolder::Worker => "worker",
            LockHolder::Other => "other",
        }
    }

    /// Counts `held` against this holder.
    pub(crate) fn count(self, held: std::time::Duration) {
        metrics::counter!(WRITE_LOCK_HELD, "holder" => self.label())
            .increment(u64::try_from(held.as_micros()).unwrap_or(u64::MAX));
    }
}

/// Counter (SQLite): microseconds the store's one write lock was held, by `holder` (writer,
/// worker, other). Its rate over all holders near 1,000,000 per second means writes queue for
/// the lock: the instance has reached what one SQLite file can write (OPERATIONS.md).
pub const WRITE_LOCK_HELD: &str = "mlc_store_write_lock_held_microseconds_total";

/// The write lock, held; its hold time is counted when it is let go.
pub(crate) struct WriteGuard<'a> {
    _guard: MutexGuard<'a, ()>,
    taken: std::time::Instant,
    holder: LockHolder,
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        self.holder.count(self.taken.elapsed());
    }
}

/// Webhook deliveries between their hand-over to the group-commit writer and their answer, so
/// that apalis' turns at SQLite's write lock can give way to them (see [`WorkerPool`]).
///
/// On SQLite the writer and apalis take turns at the one write lock, first come first served.
/// apalis always has a fetch, claim or acknowledgement waiting, so during a burst of webhooks it
/// took every other turn: a quarter of the lock (`bench intake`, BENCHMARKS.md fourteenth pass),
/// which the deliveries waited for. A delivery waits for its commit before Stripe gets its
/// answer; a job's dispatch can wait a few milliseconds.
///
/// [`WorkerPool`]: crate::store::WorkerPool
#[derive(Default)]
pub(crate) struct IntakeWaiting {
    deliveries: std::sync::atomic::AtomicUsize,
    drained: tokio::sync::Notify,
}

/// A delivery counted in [`IntakeWaiting`]; uncounted on drop (answered, failed or cancelled
/// alike), so the count cannot leak.
pub(crate) struct WaitingDelivery<'a>(&'a IntakeWaiting);

impl Drop for WaitingDelivery<'_> {
    fn drop(&mut self) {
        if self
            .0
            .deliveries
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel)
            == 1
        {
            self.0.drained.notify_waiters();
        }
    }
}

impl IntakeWaiting {
    /// Counts a delivery until the guard is dropped.
    pub(crate) fn enter(&self) -> WaitingDelivery<'_> {
        self.deliveries
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        WaitingDelivery(self)
    }

    /// Returns once no delivery is waiting, or after `at_most`.
    pub(crate) async fn give_way(&self, at_most: std::time::Duration) {
        let drained = self.drained.notified();
        tokio::pin!(drained);
        // Registered before the count is read: a drain in between still wakes it.
        drained.as_mut().enable();
        if self.deliveries.load(std::sync::atomic::Ordering::Acquire) == 0 {
            return;
        }
        let _ = tokio::time::timeout(at_most, drained).await;
    }
}

/// The pools and what is needed to write safely on either backend.
pub(crate) struct Db {
    /// Every hot path (intake, claims, the queue, audit, links, …): raw SQL.
    pub(crate) pool: AnyPool,
    /// The admin paths (tenants, connections, API keys) through sea-orm's entities, and the
    /// migrations. A small pool of its own with the same per-connection settings.
    pub(crate) orm: DatabaseConnection,
    pub(crate) backend: Backend,
    /// The apalis queue (`job_type`) this store pushes its tasks to.
    pub(crate) queue: String,
    /// SQLite allows one writer at a time. Serialising this process's writes on an async mutex
    /// makes them queue fairly instead of sleeping in SQLite's busy handler (whose back-off would
    /// dominate tail latency). Other processes are still handled by `busy_timeout`.
    pub(crate) write_lock: Option<Arc<Mutex<()>>>,
    /// SQLite: the pool apalis' worker runs on, whose every use holds `write_lock` (see
    /// [`WorkerPool`]). `None` on PostgreSQL: the worker uses `orm`'s pool.
    pub(crate) worker_pool: Option<WorkerPool>,
    /// Deliveries waiting for their commit (shared with `worker_pool`).
    pub(crate) intake: Arc<IntakeWaiting>,
}

impl Db {
    pub(crate) fn new(
        pool: AnyPool,
        orm: DatabaseConnection,
        backend: Backend,
        queue: String,
        write_lock: Option<Arc<Mutex<()>>>,
        worker_pool: Option<WorkerPool>,
        intake: Arc<IntakeWaiting>,
    ) -> Self {
        Db {
            pool,
            orm,
            backend,
            queue,
            write_lock,
            worker_pool,
            intake,
        }
    }

    /// Held for the duration of any write on SQLite; a no-op on PostgreSQL.
    ///
    /// While it waits it looks, now and then, for a lock the worker pool kept by mistake
    /// ([`WorkerPool::let_go_if_stale`]), which would otherwise never be given back. The lock
    /// only spares SQLite's busy handler; SQLite's own locking keeps writes correct.
    ///
    /// Once the worker is stopping ([`crate::Store::worker_stopping`]) the lock is held until
    /// apalis has stopped, so writers no longer queue on it, and those waiting go on.
    pub(crate) async fn write_guard(&self) -> Option<WriteGuard<'_>> {
        self.write_guard_as(LockHolder::Other).await
    }

    /// [`Db::write_guard`] for `holder`, whose hold time is counted under its name.
    pub(crate) async fn write_guard_as(&self, holder: LockHolder) -> Option<WriteGuard<'_>> {
        let guard = self.wait_for_write_lock().await?;
        Some(WriteGuard {
            _guard: guard,
            taken: std::time::Instant::now(),
            holder,
        })
    }

    async fn wait_for_write_lock(&self) -> Option<MutexGuard<'_, ()>> {
        let m = self.write_lock.as_ref()?;
        let mut queueing = self.worker_pool.as_ref().map(WorkerPool::queueing);
        if queueing.as_mut().is_some_and(|q| !*q.borrow_and_update()) {
            return None;
        }
        let stopping = async {
            match queueing.as_mut() {
                Some(q) => {
                    let _ = q.wait_for(|on| !*on).await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::pin!(stopping);
        // Pinned across the checks, so the writer keeps its place in the queue.
        let lock = m.lock();
        tokio::pin!(lock);
        loop {
            tokio::select! {
                guard = &mut lock => return Some(guard),
                () = &mut stopping => return None,
                () = tokio::time::sleep(STALE_LOCK_CHECK) => {
                    if let Some(worker) = &self.worker_pool {
                        worker.let_go_if_stale();
                    }
                }
            }
        }
    }

    /// A connection that sees `scope`'s tenant only (see [`ReadConn`]).
    pub(crate) async fn read(&self, scope: &ConnectionScope) -> Result<ReadConn, StoreError> {
        self.read_tenant(scope.tenant_id().as_str()).await
    }

    /// [`Db::read`] for a tenant (its connections, API keys).
    pub(crate) async fn read_tenant(&self, tenant: &str) -> Result<ReadConn, StoreError> {
        match self.backend {
            Backend::Sqlite => Ok(ReadConn::Plain(self.pool.acquire().await.map_err(db_err)?)),
            Backend::Postgres => {
                let mut tx = self.pool.begin().await.map_err(db_err)?;
                set_rls(&mut tx, self.backend, Rls::Tenant(tenant)).await?;
                Ok(ReadConn::Tx(tx))
            }
        }
    }

    /// A connection for a single tenant-scoped write statement (the caller holds the write
    /// guard): on PostgreSQL a transaction with the tenant set, so row-level security's WITH
    /// CHECK admits the row; call [`ReadConn::done`] to commit.
    pub(crate) async fn write_one(&self, scope: &ConnectionScope) -> Result<ReadConn, StoreError> {
        self.read(scope).await
    }

    /// A connection that sees every tenant: the store's own cross-tenant reads only.
    pub(crate) async fn read_all(&self) -> Result<ReadConn, StoreError> {
        match self.backend {
            Backend::Sqlite => Ok(ReadConn::Plain(self.pool.acquire().await.map_err(db_err)?)),
            Backend::Postgres => {
                let mut tx = self.pool.begin().await.map_err(db_err)?;
                set_rls(&mut tx, self.backend, Rls::AllTenants).await?;
                Ok(ReadConn::Tx(tx))
            }
        }
    }

    /// [`Db::begin_write`] with what the transaction may see set for row-level security.
    pub(crate) async fn begin_write_as(
        &self,
        rls: Rls<'_>,
    ) -> Result<Transaction<'static, Any>, StoreError> {
        let mut tx = self.begin_write().await?;
        set_rls(&mut tx, self.backend, rls).await?;
        Ok(tx)
    }

    /// Begins a transaction that will write. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`): a deferred transaction that reads first and then writes can fail with
    /// SQLITE_BUSY_SNAPSHOT without the busy handler ever being consulted.
    pub(crate) async fn begin_write(&self) -> Result<Transaction<'static, Any>, StoreError> {
        let tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        };
        tx.map_err(db_err)
    }
}

impl Db {
    /// A sea-orm transaction that sees what `rls` allows (PostgreSQL row-level security), for
    /// reads and writes alike. With `write`, SQLite begins it IMMEDIATE (the write lock up front,
    /// as [`Db::begin_write`] does); the caller holds [`Db::write_guard`] around it so this
    /// process's writers queue on the mutex instead of in SQLite's busy handler.
    pub(crate) async fn orm_begin(
        &self,
        rls: Rls<'_>,
        write: bool,
    ) -> Result<DatabaseTransaction, StoreError> {
        let options = TransactionOptions {
            sqlite_transaction_mode: write.then_some(SqliteTransactionMode::Immediate),
            ..TransactionOptions::default()
        };
        let txn = self
            .orm
            .begin_with_options(options)
            .await
            .map_err(orm_err)?;
        orm_set_rls(&txn, rls).await?;
        Ok(txn)
    }

    /// A sea-orm connection for reads that sees what `rls` allows: on PostgreSQL a transaction
    /// with the row-level security context set; on SQLite the pool itself (no RLS there, and no
    /// BEGIN to pay). Finish with [`orm_done`].
    pub(crate) async fn orm_read(&self, rls: Rls<'_>) -> Result<DatabaseExecutor<'_>, StoreError> {
        match self.backend {
            Backend::Sqlite => Ok(DatabaseExecutor::Connection(&self.orm)),
            Backend::Postgres => Ok(DatabaseExecutor::OwnedTransaction(
                self.orm_begin(rls, false).await?,
            )),
        }
    }
}

/// Ends what [`Db::orm_read`] began (commits a PostgreSQL transaction; nothing on SQLite).
pub(crate) async fn orm_done(conn: DatabaseExecutor<'_>) -> Result<(), StoreError> {
    match conn {
        DatabaseExecutor::OwnedTransaction(txn) => txn.commit().await.map_err(orm_err),
        DatabaseExecutor::Connection(_) | DatabaseExecutor::Transaction(_) => Ok(()),
    }
}

/// [`set_rls`] for a sea-orm transaction: the same statement, transaction-local. No-op on SQLite.
pub(crate) async fn orm_set_rls(txn: &DatabaseTransaction, rls: Rls<'_>) -> Result<(), StoreError> {
    if txn.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    let (tenant, all) = match rls {
        Rls::Tenant(t) => (t, "off"),
        Rls::AllTenants => ("", "on"),
    };
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT set_config('app.tenant_id', $1, true), set_config('app.all_tenants', $2, true)",
        [tenant.into(), all.into()],
    ))
    .await
    .map_err(orm_err)?;
    Ok(())
}

/// sea-orm errors, like sqlx's, are reported by their message (it wraps sqlx's: neither the URL
/// nor bound values).
pub(crate) fn orm_err(e: DbErr) -> StoreError {
    StoreError::Database(e.to_string())
}

/// Database errors are reported by their message; sqlx messages carry neither the URL nor bound
/// values, so no secret leaks through them.
pub(crate) fn db_err(e: sqlx::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

pub(crate) fn get<'r, T>(row: &'r AnyRow, col: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, Any> + sqlx::Type<Any>,
{
    row.try_get::<T, _>(col)
        .map_err(|e| StoreError::Database(format!("reading column `{col}`: {e}")))
}

pub(crate) const JOB_COLUMNS: &str = "id, tenant_id, connection_id, kind, event_id, payload, dedupe_key, state, attempts, \
     max_attempts, run_at, locked_by, task_id, last_error, created_at, updated_at";

pub(crate) fn job_from_row(row: &AnyRow) -> Result<Job, StoreError> {
    let payload: String = get(row, "payload")?;
    let payload = serde_json::from_str(&payload)
        .map_err(|e| StoreError::Database(format!("stored job payload is not JSON: {e}")))?;
    let state: String = get(row, "state")?;
    let state = JobState::parse(&state)
        .ok_or_else(|| StoreError::Database(format!("unknown job state `{state}`")))?;
    let tenant: String = get(row, "tenant_id")?;
    let connection: String = get(row, "connection_id")?;
    Ok(Job {
        id: get(row, "id")?,
        scope: ConnectionScope::from_row(&tenant, &connection)?,
        kind: get(row, "kind")?,
        event_id: get(row, "event_id")?,
        payload,
        dedupe_key: get(row, "dedupe_key")?,
        state,
        attempts: to_i32(get(row, "attempts")?),
        max_attempts: to_i32(get(row, "max_attempts")?),
        run_at: get(row, "run_at")?,
        locked_by: get(row, "locked_by")?,
        task_id: get(row, "task_id")?,
        last_error: get(row, "last_error")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    })
}

/// Counters are stored as 64-bit on both backends; they never exceed i32 in practice.
pub(crate) fn to_i32(v: i64) -> i32 {
    i32::try_from(v).unwrap_or(if v < 0 { i32::MIN } else { i32::MAX })
}

pub(crate) fn audit_from_row(row: &AnyRow) -> Result<AuditEntry, StoreError> {
    let data: Option<String> = get(row, "data")?;
    let data = match data {
        Some(s) => Some(
            serde_json::from_str(&s)
                .map_err(|e| StoreError::Database(format!("stored audit data is not JSON: {e}")))?,
        ),
        None => None,
    };
    Ok(AuditEntry {
        id: get(row, "id")?,
        at: get(row, "at")?,
        event_id: get(row, "event_id")?,
        job_id: get(row, "job_id")?,
        stripe_object_id: get(row, "stripe_object_id")?,
        step: get(row, "step")?,
        message: get(row, "message")?,
        data,
    })
}

/// Appends one audit entry of `scope` on the given connection (usually inside a caller's
/// transaction).
pub(crate) async fn insert_audit(
    conn: &mut AnyConnection,
    scope: &ConnectionScope,
    entry: &NewAudit,
    at: UnixMillis,
) -> Result<i64, StoreError> {
    let data = entry.data.as_ref().map(|d| d.to_string());
    let row = sqlx::query(
        "INSERT INTO audit (at, event_id, job_id, stripe_object_id, step, message, data, \
         tenant_id, connection_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
    )
    .bind(at)
    .bind(entry.event_id.clone())
    .bind(entry.job_id.clone())
    .bind(entry.stripe_object_id.clone())
    .bind(entry.step.clone())
    .bind(entry.message.clone())
    .bind(data)
    .bind(scope.t())
    .bind(scope.c())
    .fetch_one(&mut *conn)
    .await
    .map_err(db_err)?;
    get(&row, "id")
}

#[cfg(test)]
mod tests {
    use super::IntakeWaiting;
    use std::time::Duration;

    const LONG: Duration = Duration::from_secs(60);
    const BOUND: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn giving_way_to_no_delivery_returns_at_once() {
        let intake = IntakeWaiting::default();
        tokio::time::timeout(BOUND, intake.give_way(LONG))
            .await
            .expect("nothing waits, so nothing to give way to");
        // A delivery answered before the worker looks leaves nothing behind either.
        drop(intake.enter());
        tokio::time::timeout(BOUND, intake.give_way(LONG))
            .await
            .expect("the count went back to zero");
    }

    #[tokio::test]
    async fn giving_way_lasts_until_the_last_delivery_is_answered() {
        let intake = std::sync::Arc::new(IntakeWaiting::default());
        let first = intake.enter();
        let second = intake.enter();
        let waiter = tokio::spawn({
            let intake = intake.clone();
            async move { intake.give_way(LONG).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "gave up while two deliveries waited");
        drop(first);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiter.is_finished(),
            "gave up while one delivery still waited"
        );
        drop(second);
        tokio::time::timeout(BOUND, waiter)
            .await
            .expect("woken when the last delivery was answered")
            .unwrap();
    }

    #[tokio::test]
    async fn giving_way_ends_after_its_bound_even_if_deliveries_keep_waiting() {
        let intake = IntakeWaiting::default();
        let _stuck = intake.enter();
        tokio::time::timeout(BOUND, intake.give_way(Duration::from_millis(20)))
            .await
            .expect("the worker's turn is not held back past its bound");
    }
}
