//! Test support for this crate and its users: a fresh database per test, on SQLite always and on
//! PostgreSQL when `TEST_DATABASE_URL` is set.
//!
//! ```ignore
//! for db in mlc_store::testing::backends().await {
//!     let store = db.store().await;
//!     // … same assertions on every backend …
//! }
//! ```
//!
//! Compiled into the library (not behind a feature) so other crates' tests can use it without
//! feature plumbing; it costs one small dependency (`tempfile`).

use crate::model::{Backend, StoreError};
use crate::scope::ConnectionStore;
use crate::store::Store;
use crate::tenants::NewConnection;

/// A fresh, isolated database. SQLite: a file in a temporary directory removed on drop.
/// PostgreSQL: a new database `mlc_t_<uuid>` dropped (best effort) on drop.
pub struct TestDb {
    url: String,
    backend: Backend,
    _dir: Option<tempfile::TempDir>,
    pg: Option<PgCleanup>,
}

struct PgCleanup {
    maintenance_url: String,
    name: String,
}

impl std::fmt::Debug for TestDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDb")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl TestDb {
    /// A new SQLite database file in its own temporary directory.
    pub fn sqlite() -> Result<TestDb, StoreError> {
        let dir = tempfile::tempdir()
            .map_err(|e| StoreError::Database(format!("creating a temp dir: {e}")))?;
        let path = dir.path().join("mlc-test.db");
        Ok(TestDb {
            url: format!("sqlite://{}", path.display()),
            backend: Backend::Sqlite,
            _dir: Some(dir),
            pg: None,
        })
    }

    /// A new, empty PostgreSQL database on the server of `base_url` (any database on it that the
    /// user can connect to, e.g. `postgres://root@127.0.0.1:5432/test`).
    pub async fn postgres(base_url: &str) -> Result<TestDb, StoreError> {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let name = format!("mlc_t_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::AnyConnection::connect(base_url)
            .await
            .map_err(|e| StoreError::Database(format!("connecting to TEST_DATABASE_URL: {e}")))?;
        // The name is generated above (hex only), so formatting it into SQL is safe.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .map_err(|e| StoreError::Database(format!("creating test database: {e}")))?;
        let _ = conn.close().await;
        let mut url = url::Url::parse(base_url)
            .map_err(|e| StoreError::UnsupportedUrl(format!("TEST_DATABASE_URL: {e}")))?;
        url.set_path(&format!("/{name}"));
        Ok(TestDb {
            url: url.to_string(),
            backend: Backend::Postgres,
            _dir: None,
            pg: Some(PgCleanup {
                maintenance_url: base_url.to_string(),
                name,
            }),
        })
    }

    /// The database URL (pass it to [`Store::connect`] or to the app's config).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Opens a new [`Store`] on this database (call again to simulate a restart).
    ///
    /// # Panics
    /// When the database cannot be opened: this is test support, and a test cannot go on.
    pub async fn store(&self) -> Store {
        match Store::connect(&self.url).await {
            Ok(s) => s,
            Err(e) => panic!("opening the {:?} test database failed: {e}", self.backend),
        }
    }
}

/// A tenant and an active connection in it (both created when missing), and the store's view of
/// that connection: what most tests need.
///
/// # Panics
/// On a malformed ID or a database error: this is test support.
pub async fn connection(store: &Store, tenant: &str, connection: &str) -> ConnectionStore {
    let tenant_id = match mlc_core::TenantId::parse(tenant) {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    };
    let connection_id = match mlc_core::ConnectionId::parse(connection) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let tenant_scope = match store.ensure_tenant(&tenant_id, tenant).await {
        Ok(t) => t,
        Err(e) => panic!("creating tenant {tenant}: {e}"),
    };
    let new = NewConnection {
        id: connection_id,
        name: connection.to_string(),
        status: mlc_core::ConnectionStatus::Active,
        settings: serde_json::json!({}),
        netsuite_account: None,
    };
    match store.tenant(&tenant_scope).upsert_connection(&new).await {
        Ok(c) => store.scoped(&c.scope),
        Err(e) => panic!("creating connection {tenant}/{connection}: {e}"),
    }
}

impl TestDb {
    /// Opens the store and returns the view of the `test/main` connection (created).
    pub async fn scoped(&self) -> ConnectionStore {
        let store = self.store().await;
        connection(&store, "test", "main").await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(pg) = self.pg.take() else { return };
        // Drop runs outside async context; use a short-lived thread with its own runtime so this
        // works whether or not the test's runtime is still alive. FORCE ends leftover sessions.
        let handle = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                use sqlx::Connection;
                if let Ok(mut conn) = sqlx::AnyConnection::connect(&pg.maintenance_url).await {
                    let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", pg.name);
                    let _ = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .execute(&mut conn)
                        .await;
                    let _ = conn.close().await;
                }
            });
        });
        let _ = handle.join();
    }
}

/// One fresh database per available backend: SQLite always, plus PostgreSQL when
/// `TEST_DATABASE_URL` is set.
///
/// # Panics
/// When `TEST_DATABASE_URL` is set but unusable, so a misconfigured CI fails loudly instead of
/// silently testing only SQLite.
pub async fn backends() -> Vec<TestDb> {
    let mut dbs = Vec::new();
    match TestDb::sqlite() {
        Ok(db) => dbs.push(db),
        Err(e) => panic!("creating a SQLite test database failed: {e}"),
    }
    if let Ok(url) = std::env::var("TEST_DATABASE_URL")
        && !url.trim().is_empty()
    {
        match TestDb::postgres(url.trim()).await {
            Ok(db) => dbs.push(db),
            Err(e) => panic!("TEST_DATABASE_URL is set but unusable: {e}"),
        }
    }
    dbs
}

/// Starts the next due job of any tenant the way the apalis worker does (its task's
/// [`Store::start`]), for tests of the store on its own: the job due first (oldest `run_at`)
/// among queued and waiting jobs. `None` when nothing is due. Returns the job and the task it
/// runs under (pass that to [`Store::finish`]).
///
/// # Panics
/// On a database error: this is test support.
pub async fn start_next(store: &Store, worker: &str) -> Option<(crate::Job, String)> {
    // apalis hands a task to one worker at a time. Here the pick and the start are two steps, and
    // `start` also re-runs a job left `running` (a dead worker's): two callers picking the same
    // job would both run it. One caller at a time (across every store in the process, which only
    // costs tests a little concurrency) keeps the pick exclusive, as apalis' claim is.
    static PICK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _pick = PICK.lock().await;
    let now = mlc_core::now_millis();
    loop {
        let row = {
            let mut conn = match store.db.read_all().await {
                Ok(c) => c,
                Err(e) => panic!("{e}"),
            };
            let row = sqlx::query(
                "SELECT id, task_id FROM sync_jobs WHERE state IN ('queued', 'waiting') \
                 AND run_at <= $1 ORDER BY run_at, id LIMIT 1",
            )
            .bind(now)
            .fetch_optional(&mut *conn)
            .await;
            let _ = conn.done().await;
            match row {
                Ok(r) => r,
                Err(e) => panic!("{e}"),
            }
        };
        let row = row?;
        let id: String = crate::db::get(&row, "id").unwrap_or_else(|e| panic!("{e}"));
        let task: String = crate::db::get(&row, "task_id").unwrap_or_else(|e| panic!("{e}"));
        match store.start(&id, &task, worker).await {
            Ok(crate::Start::Run(job)) => return Some((job, task)),
            // Moved to another task meanwhile (deferred, replayed): look again.
            Ok(_) => continue,
            Err(e) => panic!("starting job {id}: {e}"),
        }
    }
}

/// A job of kind `test` whose dedupe key and payload are `key`, due now.
pub fn plain_job(key: &str, max_attempts: i32) -> crate::model::NewJob {
    crate::model::NewJob {
        kind: "test".into(),
        event_id: None,
        payload: serde_json::json!({ "key": key }),
        dedupe_key: key.to_string(),
        max_attempts,
        run_at: mlc_core::now_millis(),
    }
}
