//! Opening the database: URL → backend, pool settings, migrations, the intake writer task.

use std::sync::Arc;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use tokio::sync::{mpsc, oneshot};

use crate::db::{Db, db_err};
use crate::events::{WriterMsg, writer_loop};
use crate::model::{Backend, StoreError};
use crate::retry::RetryPolicy;

/// Tuning for [`Store::connect_with`]. `Default` suits production.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Pool size. SQLite serialises writes anyway; extra connections serve concurrent reads.
    pub max_connections: u32,
    /// How long a SQLite connection waits for another process's write lock.
    pub sqlite_busy_timeout_ms: u64,
    /// Most deliveries committed in one group-commit transaction.
    pub max_batch: usize,
    /// Intake writer tasks on PostgreSQL (SQLite always uses one: it has a single writer).
    pub postgres_writers: usize,
    /// Schedule for [`crate::JobOutcome::Retry`] without an explicit delay.
    pub retry: RetryPolicy,
    /// Size of the sea-orm pool (tenants, connections, API keys: the admin paths and API-key
    /// checks; migrations).
    pub orm_max_connections: u32,
    /// The apalis queue (`job_type`) the store pushes job tasks to and the worker takes them
    /// from. Instances sharing a database share it.
    pub job_queue: String,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 8,
            sqlite_busy_timeout_ms: 5_000,
            max_batch: 256,
            postgres_writers: 4,
            retry: RetryPolicy::default(),
            orm_max_connections: 4,
            job_queue: crate::tasks::DEFAULT_QUEUE.to_string(),
        }
    }
}

/// Handle to the database: events, job queue and audit log. Cheap to clone; all clones share the
/// same pools (the raw sqlx pool and the sea-orm one) and one intake writer.
#[derive(Clone)]
pub struct Store {
    pub(crate) db: Arc<Db>,
    pub(crate) retry: RetryPolicy,
    pub(crate) writer: mpsc::Sender<WriterMsg>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password, so it is deliberately not kept or shown.
        f.debug_struct("Store")
            .field("backend", &self.db.backend)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens `sqlite://PATH` (the file is created when missing) or `postgres://…` and applies
    /// pending migrations (`mlc-migrations`, through sea-orm). Must be called inside a Tokio
    /// runtime (it spawns the intake writer).
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Store::connect_with(url, StoreOptions::default()).await
    }

    /// [`Store::connect`] with explicit tuning.
    pub async fn connect_with(url: &str, options: StoreOptions) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let (backend, url) = normalise_url(url)?;
        let orm = open_orm(backend, &url, &options).await?;
        let orm = migrate(backend, &url, &options, orm).await?;
        let busy_ms = options.sqlite_busy_timeout_ms;
        let pool_options = AnyPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(Duration::from_secs(30));
        let pool_options = match backend {
            Backend::Sqlite => pool_options.after_connect(move |conn, _meta| {
                Box::pin(async move {
                    // WAL lets readers run beside the writer; synchronous=FULL fsyncs the WAL at
                    // every commit, so a 2xx to Stripe means the event survives a power cut.
                    // (The sea-orm pool gets the same settings: see `open_orm`.)
                    // The busy timeout first, so the pragmas after it wait for a lock too.
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "PRAGMA busy_timeout = {busy_ms}"
                    )))
                    .execute(&mut *conn)
                    .await?;
                    sqlx::query("PRAGMA journal_mode = WAL")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA synchronous = FULL")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA foreign_keys = ON")
                        .execute(&mut *conn)
                        .await?;
                    // SQLite's temporary files (such as statement journals and sorts) went to
                    // /var/tmp inside the write lock: 25 files in 1.5 s of a burst.
                    sqlx::query("PRAGMA temp_store = MEMORY")
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            }),
            Backend::Postgres => pool_options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    // Row-level security binds every role but superusers and BYPASSRLS roles:
                    // when the connecting role may act as `mlc_service` (migration 0002 makes it
                    // and grants it), act as it, so RLS holds even for a superuser's URL.
                    let member = sqlx::query(SERVICE_ROLE_MEMBER)
                        .fetch_optional(&mut *conn)
                        .await?;
                    if member.is_some() {
                        sqlx::query("SET ROLE mlc_service")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            }),
        };
        let pool = pool_options.connect(&url).await.map_err(db_err)?;
        if backend == Backend::Postgres {
            warn_if_rls_bypassed(&pool).await;
        } else if let Ok(false) = sqlite_plans_are_stable(&pool).await {
            // Only a known lack warns: a failed query says nothing either way.
            tracing::warn!(
                "this build's SQLite lacks SQLITE_ENABLE_QPSG: apalis' fetch is prepared again \
                 at every poll (the queue runs about a fifth slower); build with cargo from the \
                 repository root, whose .cargo/config.toml sets LIBSQLITE3_FLAGS"
            );
        }

        let intake = Arc::new(crate::db::IntakeWaiting::default());
        let (write_lock, worker_pool) = match backend {
            Backend::Sqlite => {
                let lock = Arc::new(tokio::sync::Mutex::new(()));
                let worker = WorkerPool::open(&url, busy_ms, lock.clone(), intake.clone())?;
                (Some(lock), Some(worker))
            }
            Backend::Postgres => (None, None),
        };
        let db = Arc::new(Db::new(
            pool,
            orm,
            backend,
            options.job_queue.clone(),
            write_lock,
            worker_pool,
            intake,
        ));
        // Bounded so that a stalled disk pushes back on the intake instead of growing memory.
        let (tx, rx) = mpsc::channel(options.max_batch.max(1) * 4);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let inflight = Arc::new(tokio::sync::RwLock::new(()));
        let writers = match backend {
            Backend::Sqlite => 1,
            Backend::Postgres => options.postgres_writers.max(1),
        };
        for _ in 0..writers {
            tokio::spawn(writer_loop(
                db.clone(),
                options.retry.clone(),
                rx.clone(),
                options.max_batch.max(1),
                inflight.clone(),
            ));
        }
        Ok(Store {
            db,
            retry: options.retry,
            writer: tx,
        })
    }

    /// The store's sea-orm connection (its own small pool, same per-connection settings as the
    /// raw pool: WAL, `synchronous=FULL`, `busy_timeout`, foreign keys on SQLite; `mlc_service`
    /// on PostgreSQL). For tests and tools; tenant-owned tables must be reached through the
    /// scoped API ([`Store::tenant`], [`Store::scoped`]), which sets the row-level security
    /// context and filters on the scope. A query made here directly sees, on PostgreSQL, no
    /// tenant-owned row at all (nothing set, nothing seen), and on SQLite every row.
    pub fn orm(&self) -> &sea_orm::DatabaseConnection {
        &self.db.orm
    }

    /// Which database this store runs on.
    pub fn backend(&self) -> Backend {
        self.db.backend
    }

    /// The retry schedule `finish` applies.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// Checks that the database answers (for readiness probes).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.db.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    /// Waits for every write already handed to the writer to be committed, then closes
    /// the pool. Further calls on any clone fail with a database error.
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.writer.send(WriterMsg::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
        if let Some(worker) = &self.db.worker_pool {
            worker.close().await;
        }
        self.db.pool.close().await;
        let _ = self.db.orm.close_by_ref().await;
    }

    /// The pool apalis' worker runs on, on SQLite: one connection whose every use waits its turn
    /// on this process's write lock (see [`WorkerPool`]). `None` on PostgreSQL, where the worker
    /// runs on the sea-orm pool ([`Store::orm`]).
    pub fn sqlite_worker_pool(&self) -> Option<&sqlx::SqlitePool> {
        self.db.worker_pool.as_ref().map(|w| &w.pool)
    }

    /// Tells the SQLite worker pool that its worker starts: apalis' uses of it, and this
    /// process's writers, queue on the write lock again (after [`Store::worker_stopping`]).
    /// No-op on PostgreSQL.
    pub fn worker_starting(&self) {
        if let Some(worker) = &self.db.worker_pool {
            worker.queue_on_lock(true);
        }
    }

    /// The first step of stopping apalis' worker (SQLite; `None` at once on PostgreSQL): waits,
    /// at most `within`, until apalis has no use of the worker pool under way, and returns the
    /// write lock held. Tell apalis to stop next, and call [`Store::worker_stopping`] once it
    /// has taken that in; keep the guard until its worker is gone.
    ///
    /// Once told to stop, apalis waits for its in-flight jobs before it polls its fetch again, so
    /// a fetch it had begun stays where it was, holding SQLite's own write lock if its statement
    /// had run: the jobs it waited for could not record their outcome and were left `running`.
    /// Told while nothing is under way, apalis has begun nothing that touches SQLite: a use it
    /// starts meanwhile waits on the lock held here.
    pub async fn quiesce_worker_pool(
        &self,
        within: Duration,
    ) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        match &self.db.worker_pool {
            Some(worker) => worker.quiesce(within).await,
            None => None,
        }
    }

    /// Once apalis' worker has taken in that it stops (after [`Store::quiesce_worker_pool`]):
    /// its uses of the worker pool and this process's writers no longer queue on the write lock
    /// (SQLite's busy handler serialises them), until [`Store::worker_starting`]. Those already
    /// waiting go on at once: apalis' acknowledgements and heartbeat as it closes, and the
    /// in-flight jobs' outcomes. No-op on PostgreSQL.
    pub fn worker_stopping(&self) {
        if let Some(worker) = &self.db.worker_pool {
            worker.queue_on_lock(false);
        }
    }
}

/// The per-connection settings of the sea-orm pool and the worker pool on SQLite, the same as the
/// raw pool's pragmas (`connect_with`): WAL, `synchronous = FULL` (an acknowledged webhook
/// survives a power cut), the busy timeout, foreign keys, temporary files in memory.
fn sqlite_settings(
    o: sqlx::sqlite::SqliteConnectOptions,
    busy: Duration,
) -> sqlx::sqlite::SqliteConnectOptions {
    o.journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
        .busy_timeout(busy)
        .foreign_keys(true)
        .pragma("temp_store", "MEMORY")
}

/// The pool apalis' worker runs on, on SQLite: one connection, and each use of it holds the
/// store's write lock, the async mutex every writer of this process queues on.
///
/// apalis' fetch, lock, acknowledgement and heartbeat are each a write transaction. On the
/// store's pool they waited for the group-commit writer in SQLite's busy handler, whose sleeps
/// grow to 100 ms: during a burst of deliveries the writer commits batch after batch, the
/// worker's fetch sleeps through each gap, and once the burst was over the worker fetched up to
/// 100 ms after the lock was free (a newly busy tenant's first job in `bench fairness`: p99
/// 2.1–4×, now 1.4–1.6×). Queued on the same mutex they take turns with the writer, first come
/// first served, except that each use first gives way to webhook deliveries waiting for their
/// commit, for at most [`GIVE_WAY`] ([`crate::db::IntakeWaiting`]). apalis uses the pool one
/// call at a time, so one connection is enough.
pub(crate) struct WorkerPool {
    pub(crate) pool: sqlx::SqlitePool,
    /// The store's write lock.
    write_lock: Arc<tokio::sync::Mutex<()>>,
    /// The write lock while apalis holds the connection (taken before it is handed out, given
    /// back when it is returned), and when it was taken.
    held: HeldWriteLock,
    /// Whether apalis has the connection past the lock: its use is under way.
    in_use: Arc<std::sync::atomic::AtomicBool>,
    /// Off once the worker is stopping (see [`Store::worker_stopping`]); a watch, so that
    /// whoever waits for the lock hears it.
    queue_on_lock: tokio::sync::watch::Sender<bool>,
}

type HeldWriteLock =
    Arc<std::sync::Mutex<Option<(tokio::sync::OwnedMutexGuard<()>, std::time::Instant)>>>;

/// How long one of apalis' uses of the write lock waits for the webhook deliveries waiting
/// for it, at most (see [`crate::db::IntakeWaiting`]).
const GIVE_WAY: Duration = Duration::from_millis(10);

/// Longer than any of apalis' transactions takes: a lock the worker pool has held this long is
/// let go when a writer waits for it (see [`WorkerPool::let_go_if_stale`]).
const WORKER_LOCK_STALE: Duration = Duration::from_secs(2);

fn let_go(held: &HeldWriteLock) {
    let taken = held.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some((guard, at)) = taken {
        drop(guard);
        crate::db::LockHolder::Worker.count(at.elapsed());
    }
}

impl WorkerPool {
    pub(crate) fn open(
        url: &str,
        busy_ms: u64,
        write_lock: Arc<tokio::sync::Mutex<()>>,
        intake: Arc<crate::db::IntakeWaiting>,
    ) -> Result<WorkerPool, StoreError> {
        use std::str::FromStr as _;
        let held: HeldWriteLock = Arc::default();
        let (take, give_back) = (held.clone(), held.clone());
        let in_use = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (using, done) = (in_use.clone(), in_use.clone());
        let queue_on_lock = tokio::sync::watch::Sender::new(true);
        let on = queue_on_lock.subscribe();
        let lock_for_pool = write_lock.clone();
        let options = sqlite_settings(
            sqlx::sqlite::SqliteConnectOptions::from_str(url).map_err(db_err)?,
            Duration::from_millis(busy_ms),
        );
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            // Kept open, so every use goes through `before_acquire` (a new connection skips it).
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(30))
            .before_acquire(move |_conn, _meta| {
                let lock = lock_for_pool.clone();
                let held = take.clone();
                let on = on.clone();
                let using = using.clone();
                let intake = intake.clone();
                Box::pin(async move {
                    // One connection: a guard still held here belongs to a use whose connection
                    // was closed without being returned, so it is let go first.
                    let_go(&held);
                    let mut on = on;
                    if *on.borrow_and_update() {
                        // Deliveries first (see `IntakeWaiting`), but never for long: apalis
                        // still gets a turn at least every `GIVE_WAY`.
                        tokio::select! {
                            () = intake.give_way(GIVE_WAY) => {}
                            _ = on.wait_for(|on| !*on) => {}
                        }
                    }
                    if *on.borrow_and_update() {
                        tokio::select! {
                            guard = lock.lock_owned() => {
                                *held.lock().unwrap_or_else(|p| p.into_inner()) =
                                    Some((guard, std::time::Instant::now()));
                            }
                            // The worker is stopping: what apalis still does as it closes must
                            // not wait for the lock held until it is gone.
                            _ = on.wait_for(|on| !*on) => {}
                        }
                    }
                    using.store(true, std::sync::atomic::Ordering::Relaxed);
                    Ok(true)
                })
            })
            .after_release(move |_conn, _meta| {
                let held = give_back.clone();
                let done = done.clone();
                Box::pin(async move {
                    done.store(false, std::sync::atomic::Ordering::Relaxed);
                    let_go(&held);
                    Ok(true)
                })
            })
            .connect_lazy_with(options);
        Ok(WorkerPool {
            pool,
            write_lock,
            held,
            in_use,
            queue_on_lock,
        })
    }

    /// Whether apalis' use of the connection is under way: past the lock and not yet returned
    /// (a connection back in the pool, or closed, is not in use whatever the flag says: an
    /// acquire cancelled after `before_acquire` never runs the release hook).
    fn in_use(&self) -> bool {
        self.in_use.load(std::sync::atomic::Ordering::Relaxed)
            && self.pool.num_idle() == 0
            && self.pool.size() > 0
    }

    /// See [`Store::quiesce_worker_pool`].
    async fn quiesce(&self, within: Duration) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        let deadline = tokio::time::Instant::now() + within;
        // apalis is still polled: its use under way ends and gives the lock back, and its next
        // use waits behind this one.
        let guard = tokio::time::timeout_at(deadline, self.write_lock.clone().lock_owned())
            .await
            .ok();
        // A use whose lock was let go as stale may still be under way.
        while self.in_use() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if guard.is_none() || self.in_use() {
            tracing::warn!(
                waited_ms = within.as_millis() as u64,
                "the job worker's database use did not end in time; stopping it all the same"
            );
        }
        guard
    }

    /// Whether apalis' uses of the pool, and this process's writers, queue on the write lock:
    /// a receiver, to wait for it to turn off.
    pub(crate) fn queueing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.queue_on_lock.subscribe()
    }

    /// Lets the write lock go when the pool has kept it by mistake: the connection is back in
    /// the pool (or gone) with the lock still taken, which happens when sqlx's acquire is
    /// cancelled after `before_acquire` ran (the release hook then never runs); or it was taken
    /// longer ago than any of apalis' transactions takes (a started call apalis no longer
    /// polls). Letting go early only costs the turn-taking: SQLite's own lock still holds.
    pub(crate) fn let_go_if_stale(&self) {
        let kept_too_long = self
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|(_, since)| since.elapsed() >= WORKER_LOCK_STALE);
        if kept_too_long || self.pool.num_idle() > 0 || self.pool.size() == 0 {
            let_go(&self.held);
        }
    }

    /// Whether apalis' uses of the pool take the write lock (see [`Store::worker_stopping`]).
    pub(crate) fn queue_on_lock(&self, on: bool) {
        self.queue_on_lock.send_replace(on);
        if !on {
            let_go(&self.held);
        }
    }

    /// Closes the pool, and lets the write lock go even if a use was cut short by it.
    pub(crate) async fn close(&self) {
        self.pool.close().await;
        self.in_use
            .store(false, std::sync::atomic::Ordering::Relaxed);
        let_go(&self.held);
    }
}

/// Whether the connecting role may act as `mlc_service` (the role exists and it is a member):
/// then every pooled connection does `SET ROLE mlc_service`, so row-level security binds it.
/// The role is named by the row's OID: `pg_has_role` by name raises an error when the role does
/// not exist (a fresh server, before migration 0002 made it), and PostgreSQL may evaluate it
/// before the `rolname` filter.
const SERVICE_ROLE_MEMBER: &str = "SELECT 1 AS m FROM pg_roles r WHERE r.rolname = 'mlc_service' \
     AND pg_has_role(current_user, r.oid, 'MEMBER')";

/// Opens the store's sea-orm pool (`Database::connect` picks the driver from the URL) with the
/// same per-connection settings as the raw pool. sea-orm's own `ConnectOptions::after_connect`
/// runs once for the whole pool, not per connection, so the PostgreSQL role is set through the
/// sqlx pool options' `after_connect`, which runs on every new connection.
async fn open_orm(
    backend: Backend,
    url: &str,
    options: &StoreOptions,
) -> Result<sea_orm::DatabaseConnection, StoreError> {
    let mut orm = sea_orm::ConnectOptions::new(url);
    // Quiet: sea-orm would log every statement at INFO.
    orm.sqlx_logging(false)
        .max_connections(options.orm_max_connections.max(1))
        .acquire_timeout(Duration::from_secs(30));
    match backend {
        Backend::Sqlite => {
            let busy = Duration::from_millis(options.sqlite_busy_timeout_ms);
            orm.map_sqlx_sqlite_opts(move |o| sqlite_settings(o, busy));
        }
        Backend::Postgres => {
            orm.map_sqlx_postgres_pool_opts(|pool| {
                pool.after_connect(|conn, _meta| {
                    Box::pin(async move {
                        let member = sqlx::query(SERVICE_ROLE_MEMBER)
                            .fetch_optional(&mut *conn)
                            .await?;
                        if member.is_some() {
                            sqlx::query("SET ROLE mlc_service")
                                .execute(&mut *conn)
                                .await?;
                        }
                        Ok(())
                    })
                })
            });
        }
    }
    // Processes opening one new SQLite file together: switching it to WAL takes an exclusive
    // lock, and SQLite answers "locked" at once there rather than wait (its busy handler is
    // skipped where waiting could deadlock). Try again within the busy timeout.
    let deadline =
        std::time::Instant::now() + Duration::from_millis(options.sqlite_busy_timeout_ms);
    loop {
        match sea_orm::Database::connect(orm.clone()).await {
            Err(e)
                if backend == Backend::Sqlite
                    && e.to_string().contains("database is locked")
                    && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            other => {
                return other.map_err(|e| {
                    // sea-orm quotes an unparseable URL whole: keep any password out of the error.
                    StoreError::Database(e.to_string().replace(url, &redact_url(url)))
                });
            }
        }
    }
}

/// Applies `mlc-migrations` on the store's sea-orm connection. Refuses a database made by a
/// pre-release build, whose single-tenant tables the tenancy schema cannot take over.
///
/// On PostgreSQL the migrations run as the connecting role, not as `mlc_service` (which may not
/// create or alter tables): inside one transaction that drops the pooled connection's role with
/// `SET LOCAL ROLE NONE` (sea-orm-migration's per-migration transactions become savepoints, so
/// the whole run is all-or-nothing; a migration that must run outside a transaction, such as
/// `CREATE INDEX CONCURRENTLY`, would need its own connection). When the run is what made
/// `mlc_service` available (a first start on a server without it), the pool's connections were
/// opened before and act as the connecting role: the connection is then opened afresh, so every
/// connection acts as `mlc_service`.
async fn migrate(
    backend: Backend,
    url: &str,
    options: &StoreOptions,
    db: sea_orm::DatabaseConnection,
) -> Result<sea_orm::DatabaseConnection, StoreError> {
    use mlc_migrations::MigratorTrait as _;
    use sea_orm::{ConnectionTrait as _, TransactionTrait as _};
    let mig = |e: sea_orm::DbErr| StoreError::Migration(e.to_string());
    refuse_pre_release(&db, backend).await?;
    match backend {
        Backend::Sqlite => {
            // Nothing pending (the usual start, or a CLI command beside a running server): no
            // write lock taken at all.
            let pending = mlc_migrations::Migrator::get_pending_migrations_read_only(&db)
                .await
                .map(|p| !p.is_empty())
                .unwrap_or(true);
            if !pending {
                return migrate_apalis_sqlite(backend, url, options, db).await;
            }
            // In one IMMEDIATE transaction: processes starting together on one file take turns
            // (SQLite's write lock, `busy_timeout`) instead of racing to create the same tables.
            let txn = db
                .begin_with_options(sea_orm::TransactionOptions {
                    sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
                    ..sea_orm::TransactionOptions::default()
                })
                .await
                .map_err(mig)?;
            mlc_migrations::Migrator::up(&txn, None)
                .await
                .map_err(mig)?;
            txn.commit().await.map_err(mig)?;
            migrate_apalis_sqlite(backend, url, options, db).await
        }
        Backend::Postgres => {
            // Instances starting together take turns: a session lock on a connection of its own
            // (as the connecting role), held over both migration lists and the grants.
            use sqlx::Connection as _;
            let mut admin = sqlx::PgConnection::connect(url)
                .await
                .map_err(|e| StoreError::Database(e.to_string().replace(url, &redact_url(url))))?;
            sqlx::query("SELECT pg_advisory_lock(hashtext('ml-connector migrations'))")
                .execute(&mut admin)
                .await
                .map_err(db_err)?;
            let result = async {
                let member_before = service_role_member(&db).await?;
                let txn = db.begin().await.map_err(mig)?;
                txn.execute_unprepared("SET LOCAL ROLE NONE")
                    .await
                    .map_err(mig)?;
                mlc_migrations::Migrator::up(&txn, None)
                    .await
                    .map_err(mig)?;
                txn.commit().await.map_err(mig)?;
                migrate_apalis_postgres(&mut admin).await?;
                Ok::<_, StoreError>(member_before)
            }
            .await;
            let _ = admin.close().await; // ends the session, and with it the lock
            let member_before = result?;
            if !member_before && service_role_member(&db).await? {
                let _ = db.close().await;
                open_orm(backend, url, options).await
            } else {
                Ok(db)
            }
        }
    }
}

/// apalis' own migrations, right after ours (ours rename our `jobs` table first: on SQLite it
/// would collide with apalis' `Jobs`). Their history is sqlx's (`_sqlx_migrations`;
/// `apalis._sqlx_migrations` on PostgreSQL), ours is sea-orm's. `SqliteStorage::setup` is never
/// called: it would also turn `synchronous` OFF on a pooled connection, and an acknowledged
/// webhook must survive a power cut (the pools run `synchronous = FULL`). On PostgreSQL they run
/// on a connection of their own as the connecting role (`CREATE SCHEMA apalis`, the `hstore`
/// extension), not as `mlc_service`, which is then granted apalis' schema (idempotent: every
/// start, so tables a newer apalis adds are covered too).
async fn migrate_apalis_sqlite(
    backend: Backend,
    url: &str,
    options: &StoreOptions,
    db: sea_orm::DatabaseConnection,
) -> Result<sea_orm::DatabaseConnection, StoreError> {
    // sqlx takes no lock on SQLite: a process racing another to the same migration fails, and
    // finds it applied when it runs the list again.
    let mut last = None;
    let mut applied = false;
    for attempt in 0..5u64 {
        match apalis_sqlite::SqliteStorage::<()>::migrations()
            .run(db.get_sqlite_connection_pool())
            .await
        {
            Ok(()) => {
                applied = true;
                break;
            }
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100 * (attempt + 1))).await;
    }
    if !applied {
        return Err(StoreError::Migration(format!(
            "apalis' job-queue migrations: {}",
            last.map(|e| e.to_string()).unwrap_or_default()
        )));
    }
    if steer_apalis_plans(&db).await? {
        // A connection reads the planner's statistics when it loads the schema: the pool's
        // connections opened before they were written would keep the slow plan.
        let _ = db.close().await;
        return open_orm(backend, url, options).await;
    }
    Ok(db)
}

/// Planner statistics that keep apalis' per-task statements cheap on SQLite, whatever the
/// queue's size. Without statistics SQLite guesses that an equality on any index matches about
/// ten rows, and two of apalis 1.0's statements then walk far more than the tasks they touch,
/// under the write lock:
/// - the acknowledgement (`UPDATE Jobs … FROM json_each(?) WHERE Jobs.id = … AND Jobs.lock_by =
///   ?`) walked every task the worker ever locked (index `LIdx`; finished tasks keep their
///   `lock_by`): 25 ms at 20,000 tasks, which capped ten companies on one SQLite instance at a
///   quarter of their NetSuite limits;
/// - the claim of fetched tasks (`UPDATE Jobs SET status = 'Running' … WHERE id IN (SELECT value
///   FROM json_each(?)) AND (status = 'Queued' OR status = 'Pending' OR …)`, once per task) walked
///   every pending task three times (`idx_jobs_status_run_at`, a multi-index OR): 2.5 ms a task
///   with 12,000 queued, so the queue drained at 212 jobs/s with 20,000 queued against 525 with
///   5,000.
///
/// The statistics say what is true (one worker locks very many tasks; a status is shared by very
/// many), so both look each task up by `id`. apalis' other statements keep their plans: the
/// orphan check still finds running tasks by status.
const APALIS_PLANNER_STATS: [(&str, &str, &str); 2] = [
    ("Jobs", "LIdx", "1000000 100000"),
    ("Jobs", "idx_jobs_status_run_at", "1000000 20000 2"),
];

/// Writes each of [`APALIS_PLANNER_STATS`] that is missing (so a database of an older release
/// gets the new ones at its next start); a later `ANALYZE` replaces them with measured ones,
/// which say the same. `true` when any was written: the pool must reopen to load them.
async fn steer_apalis_plans(db: &sea_orm::DatabaseConnection) -> Result<bool, StoreError> {
    let pool = db.get_sqlite_connection_pool();
    let stat_table: Option<(String,)> =
        sqlx::query_as("SELECT name FROM sqlite_schema WHERE name = 'sqlite_stat1'")
            .fetch_optional(pool)
            .await
            .map_err(db_err)?;
    let mut missing = Vec::new();
    for (tbl, idx, stat) in APALIS_PLANNER_STATS {
        let present: Option<(String,)> = if stat_table.is_some() {
            sqlx::query_as("SELECT stat FROM sqlite_stat1 WHERE tbl = ? AND idx = ?")
                .bind(tbl)
                .bind(idx)
                .fetch_optional(pool)
                .await
                .map_err(db_err)?
        } else {
            None
        };
        if present.is_none() {
            missing.push((tbl, idx, stat));
        }
    }
    if missing.is_empty() {
        return Ok(false);
    }
    let mut tx = pool.begin().await.map_err(db_err)?;
    if stat_table.is_none() {
        // `ANALYZE sqlite_schema` creates `sqlite_stat1` (and analyses nothing else).
        sqlx::query("ANALYZE sqlite_schema")
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
    }
    for (tbl, idx, stat) in missing {
        sqlx::query(
            "INSERT INTO sqlite_stat1 (tbl, idx, stat) SELECT ?, ?, ? \
             WHERE NOT EXISTS (SELECT 1 FROM sqlite_stat1 WHERE tbl = ? AND idx = ?)",
        )
        .bind(tbl)
        .bind(idx)
        .bind(stat)
        .bind(tbl)
        .bind(idx)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    }
    tx.commit().await.map_err(db_err)?;
    Ok(true)
}

async fn migrate_apalis_postgres(conn: &mut sqlx::PgConnection) -> Result<(), StoreError> {
    apalis_postgres::PostgresStorage::<()>::migrations()
        .run(&mut *conn)
        .await
        .map_err(|e| StoreError::Migration(format!("apalis' job-queue migrations: {e}")))?;
    sqlx::raw_sql(APALIS_GRANTS)
        .execute(&mut *conn)
        .await
        .map_err(|e| StoreError::Migration(format!("granting apalis' schema: {e}")))?;
    Ok(())
}

/// The service role runs apalis' worker and writes the intake's task rows. apalis' tables hold no
/// tenant data (a task names a job and its connection), so they carry no row-level policy.
const APALIS_GRANTS: &str = "DO $$ BEGIN \
     IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'mlc_service') THEN \
       GRANT USAGE ON SCHEMA apalis TO mlc_service; \
       GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA apalis TO mlc_service; \
       GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA apalis TO mlc_service; \
     END IF; END $$";

/// See [`SERVICE_ROLE_MEMBER`].
async fn service_role_member(db: &sea_orm::DatabaseConnection) -> Result<bool, StoreError> {
    use sea_orm::ConnectionTrait as _;
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            SERVICE_ROLE_MEMBER,
        ))
        .await
        .map_err(crate::db::orm_err)?;
    Ok(row.is_some())
}

async fn refuse_pre_release(
    db: &impl sea_orm::ConnectionTrait,
    backend: Backend,
) -> Result<(), StoreError> {
    let probe = match backend {
        Backend::Sqlite => {
            "SELECT (SELECT COUNT(*) FROM sqlite_master WHERE name = 'events') AS events, \
             (SELECT COUNT(*) FROM sqlite_master WHERE name = 'seaql_migrations') AS seaql"
        }
        Backend::Postgres => {
            "SELECT (to_regclass('events') IS NOT NULL)::int::bigint AS events, \
             (to_regclass('seaql_migrations') IS NOT NULL)::int::bigint AS seaql"
        }
    };
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            probe,
        ))
        .await
        .map_err(|e| StoreError::Migration(e.to_string()))?;
    if let Some(row) = row {
        let events: i64 = row.try_get("", "events").unwrap_or(0);
        let seaql: i64 = row.try_get("", "seaql").unwrap_or(0);
        if events > 0 && seaql == 0 {
            return Err(StoreError::Migration(
                "this database was created by a pre-release, single-tenant ml-connector; the \
                 multi-tenant schema starts from an empty database: point `database.url` at a \
                 new SQLite file or PostgreSQL database (nothing was released, so no data \
                 migration exists)"
                    .into(),
            ));
        }
    }
    Ok(())
}

/// Whether the linked SQLite was compiled with `SQLITE_ENABLE_QPSG` (`.cargo/config.toml`):
/// without it SQLite 3.51 plans a bound `LIMIT ?` with its value, so each new value expires the
/// statement and its next step prepares it again (apalis' fetch has three).
pub(crate) async fn sqlite_plans_are_stable(pool: &sqlx::AnyPool) -> Result<bool, StoreError> {
    let row = sqlx::query(
        "SELECT 1 AS stable FROM pragma_compile_options WHERE compile_options = 'ENABLE_QPSG'",
    )
    .fetch_optional(pool)
    .await
    .map_err(db_err)?;
    Ok(row.is_some())
}

/// Row-level security is defence in depth; say so loudly when it cannot hold (the service runs
/// as a superuser or a BYPASSRLS role and `mlc_service` could not be created).
async fn warn_if_rls_bypassed(pool: &sqlx::AnyPool) {
    let row = sqlx::query(
        "SELECT (rolsuper OR rolbypassrls)::int::bigint AS bypass FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_optional(pool)
    .await;
    if let Ok(Some(row)) = row
        && crate::db::get::<i64>(&row, "bypass").unwrap_or(0) != 0
    {
        tracing::warn!(
            "PostgreSQL row-level security does not bind this database role (superuser or \
             BYPASSRLS) and role mlc_service is not available to it: tenant isolation rests on \
             the store's scoped queries alone; run migrations as a role that may create roles, \
             or connect as a role without BYPASSRLS"
        );
    }
}

/// Picks the backend from the scheme and makes SQLite create a missing file.
fn normalise_url(url: &str) -> Result<(Backend, String), StoreError> {
    let redacted = || redact_url(url);
    if let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        if rest.is_empty() {
            return Err(StoreError::UnsupportedUrl(redacted()));
        }
        let has_mode = rest
            .split_once('?')
            .map(|(_, q)| q.split('&').any(|kv| kv.starts_with("mode=")))
            .unwrap_or(false);
        let url = if has_mode {
            url.to_string()
        } else if rest.contains('?') {
            format!("{url}&mode=rwc")
        } else {
            format!("{url}?mode=rwc")
        };
        Ok((Backend::Sqlite, url))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok((Backend::Postgres, url.to_string()))
    } else {
        Err(StoreError::UnsupportedUrl(redacted()))
    }
}

/// The URL without any password, for error messages.
fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("REDACTED"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        // Unparseable: show only the scheme-ish prefix, never the rest (it may be a secret).
        Err(_) => url.chars().take_while(|c| *c != ':').collect::<String>() + ":…",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_get_create_mode() {
        let (b, u) = normalise_url("sqlite:///tmp/x.db").unwrap();
        assert_eq!(b, Backend::Sqlite);
        assert_eq!(u, "sqlite:///tmp/x.db?mode=rwc");
        let (_, u) = normalise_url("sqlite://x.db?mode=ro").unwrap();
        assert_eq!(u, "sqlite://x.db?mode=ro");
    }

    /// apalis' worker pool takes turns with this process's writers on the write lock instead of
    /// sleeping in SQLite's busy handler: while a writer holds the lock its connection is not
    /// handed out, and while apalis holds the connection no writer gets the lock.
    #[tokio::test]
    async fn the_worker_pool_queues_on_the_write_lock() {
        let db = crate::testing::TestDb::sqlite().unwrap();
        let store = db.store().await;
        let pool = store
            .sqlite_worker_pool()
            .expect("SQLite has a worker pool")
            .clone();
        let writer = store.db.write_guard().await;
        let acquire = tokio::spawn({
            let pool = pool.clone();
            async move { pool.acquire().await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !acquire.is_finished(),
            "handed out while a writer held the lock"
        );
        drop(writer);
        let mut conn = tokio::time::timeout(Duration::from_secs(10), acquire)
            .await
            .expect("handed out once the writer let go")
            .unwrap()
            .unwrap();
        // The same database as the store's: apalis' table is there.
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM Jobs")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(n, 0);
        let lock = store.db.write_lock.clone().unwrap();
        assert!(
            lock.try_lock().is_err(),
            "a writer got the lock while apalis held the connection"
        );
        drop(conn);
        // Given back by the release hook (spawned by sqlx).
        tokio::time::timeout(Duration::from_secs(10), store.db.write_guard())
            .await
            .expect("the lock is given back with the connection");
        // A connection given back after the pool began closing is closed without its release
        // hook: closing still leaves no writer locked out.
        let held = pool.acquire().await.unwrap();
        let store2 = store.clone();
        let closing =
            tokio::spawn(async move { store2.db.worker_pool.as_ref().unwrap().close().await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(held);
        tokio::time::timeout(Duration::from_secs(10), closing)
            .await
            .expect("the pool closed")
            .unwrap();
        assert!(
            lock.try_lock().is_ok(),
            "closing the pool kept the write lock"
        );
    }

    /// apalis' use of the write lock waits while a webhook delivery waits for its commit, but
    /// never past [`GIVE_WAY`]: a burst of webhooks gets the lock first, and the worker still
    /// gets its turn.
    #[tokio::test]
    async fn the_worker_pool_gives_way_to_waiting_deliveries_for_a_while() {
        let db = crate::testing::TestDb::sqlite().unwrap();
        let store = db.store().await;
        let pool = store.sqlite_worker_pool().unwrap().clone();
        let intake = store.db.intake.clone();
        let waiting = intake.enter();
        let acquire = tokio::spawn({
            let pool = pool.clone();
            async move { pool.acquire().await }
        });
        // A timer never fires early: within GIVE_WAY / 2 the pool has not handed it out.
        tokio::time::sleep(GIVE_WAY / 2).await;
        assert!(
            !acquire.is_finished(),
            "handed out at once while a delivery waited"
        );
        // The delivery is never answered: the worker gets its turn all the same.
        let conn = tokio::time::timeout(Duration::from_secs(10), acquire)
            .await
            .expect("handed out after GIVE_WAY")
            .unwrap()
            .unwrap();
        drop(conn);
        drop(waiting);
        // With no delivery waiting, it is handed out without waiting (well within GIVE_WAY
        // would be a timing claim; that it comes at all, promptly, is what is checked).
        tokio::time::timeout(Duration::from_secs(10), pool.acquire())
            .await
            .expect("handed out with nothing waiting")
            .unwrap();
    }

    /// An acquire cancelled once the lock is taken (apalis drops its futures at shutdown) does
    /// not lock the writers out: sqlx returns the connection without the release hook, and a
    /// waiting writer finds the lock kept by an unused connection and lets it go.
    #[tokio::test]
    async fn a_cancelled_worker_acquire_does_not_lock_writers_out() {
        let db = crate::testing::TestDb::sqlite().unwrap();
        let store = db.store().await;
        let pool = store.sqlite_worker_pool().unwrap().clone();
        let worker = store.db.worker_pool.as_ref().unwrap();
        // The state a cancelled acquire leaves: the lock taken for a connection that is idle.
        tokio::time::timeout(Duration::from_secs(10), async {
            while pool.num_idle() == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the worker pool opens its connection");
        let lock = store.db.write_lock.clone().unwrap();
        *worker.held.lock().unwrap() =
            Some((lock.clone().lock_owned().await, std::time::Instant::now()));
        let guard = tokio::time::timeout(Duration::from_secs(10), store.db.write_guard())
            .await
            .expect("a writer gets the lock a cancelled acquire kept");
        drop(guard);
        // And a write through the store goes through.
        let scoped = crate::testing::connection(&store, "acme", "main").await;
        tokio::time::timeout(
            Duration::from_secs(10),
            scoped.enqueue(crate::testing::plain_job("after", 3)),
        )
        .await
        .expect("the intake writes")
        .unwrap();
    }

    /// The workspace's `.cargo/config.toml` reaches the SQLite the store links: without
    /// `SQLITE_ENABLE_QPSG` apalis' fetch is prepared again at every poll.
    #[tokio::test]
    async fn sqlite_is_built_with_stable_query_plans() {
        let db = crate::testing::TestDb::sqlite().unwrap();
        let store = db.store().await;
        assert!(sqlite_plans_are_stable(&store.db.pool).await.unwrap());
    }

    /// The durability promise (a 2xx to Stripe means the event is on disk) rests on these.
    #[tokio::test]
    async fn sqlite_connections_use_wal_and_full_sync() {
        use sqlx::Row;
        let db = crate::testing::TestDb::sqlite().unwrap();
        let store = db.store().await;
        let mut conns = Vec::new();
        // Check more than one pooled connection: the pragmas are per connection.
        for _ in 0..3 {
            conns.push(store.db.pool.acquire().await.unwrap());
        }
        for conn in &mut conns {
            let mode: String = sqlx::query("PRAGMA journal_mode")
                .fetch_one(&mut **conn)
                .await
                .unwrap()
                .get(0);
            let sync: i64 = sqlx::query("PRAGMA synchronous")
                .fetch_one(&mut **conn)
                .await
                .unwrap()
                .get(0);
            let busy: i64 = sqlx::query("PRAGMA busy_timeout")
                .fetch_one(&mut **conn)
                .await
                .unwrap()
                .get(0);
            let temp: i64 = sqlx::query("PRAGMA temp_store")
                .fetch_one(&mut **conn)
                .await
                .unwrap()
                .get(0);
            assert_eq!((mode.as_str(), sync, busy, temp), ("wal", 2, 5_000, 2));
        }
        // apalis' worker pool too: its acknowledgements are writes like any other.
        let mut worker = store.sqlite_worker_pool().unwrap().acquire().await.unwrap();
        let mut pragma = async |name: &str| -> String {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA {name}")))
                .fetch_one(&mut *worker)
                .await
                .unwrap();
            row.try_get::<String, _>(0)
                .unwrap_or_else(|_| row.get::<i64, _>(0).to_string())
        };
        assert_eq!(
            [
                pragma("journal_mode").await,
                pragma("synchronous").await,
                pragma("busy_timeout").await,
                pragma("foreign_keys").await,
                pragma("temp_store").await
            ],
            ["wal", "2", "5000", "1", "2"]
        );
    }

    #[tokio::test]
    async fn missing_sqlite_file_is_created_and_bad_urls_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.db");
        assert!(!path.exists());
        let store = Store::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        assert_eq!(store.backend(), Backend::Sqlite);
        store.ping().await.unwrap();
        assert!(path.exists());
        store.close().await;
        let err = Store::connect("redis://localhost").await.unwrap_err();
        assert!(matches!(err, StoreError::UnsupportedUrl(_)), "{err}");
    }

    #[test]
    fn unsupported_url_hides_password() {
        let e = normalise_url("mysql://u:hunter2@h/db").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("mysql://"), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
    }
}
