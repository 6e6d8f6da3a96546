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
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 8,
            sqlite_busy_timeout_ms: 5_000,
            max_batch: 256,
            postgres_writers: 4,
            retry: RetryPolicy::default(),
        }
    }
}

/// Handle to the database: events, job queue and audit log. Cheap to clone; all clones share one
/// pool and one intake writer.
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

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl Store {
    /// Opens `sqlite://PATH` (the file is created when missing) or `postgres://…` and applies
    /// pending migrations. Must be called inside a Tokio runtime (it spawns the intake writer).
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Store::connect_with(url, StoreOptions::default()).await
    }

    /// [`Store::connect`] with explicit tuning.
    pub async fn connect_with(url: &str, options: StoreOptions) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let (backend, url) = normalise_url(url)?;
        let busy_ms = options.sqlite_busy_timeout_ms;
        let pool_options = AnyPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(Duration::from_secs(30));
        let pool_options = match backend {
            Backend::Sqlite => pool_options.after_connect(move |conn, _meta| {
                Box::pin(async move {
                    // WAL lets readers run beside the writer; synchronous=FULL fsyncs the WAL at
                    // every commit, so a 2xx to Stripe means the event survives a power cut.
                    sqlx::query("PRAGMA journal_mode = WAL")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA synchronous = FULL")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "PRAGMA busy_timeout = {busy_ms}"
                    )))
                    .execute(&mut *conn)
                    .await?;
                    sqlx::query("PRAGMA foreign_keys = ON")
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            }),
            Backend::Postgres => pool_options,
        };
        let pool = pool_options.connect(&url).await.map_err(db_err)?;
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATOR,
            Backend::Postgres => &POSTGRES_MIGRATOR,
        };
        migrator
            .run(&pool)
            .await
            .map_err(|e| StoreError::Migration(e.to_string()))?;

        let db = Arc::new(Db::new(pool, backend));
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
        self.db.pool.close().await;
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
            assert_eq!((mode.as_str(), sync, busy), ("wal", 2, 5_000));
        }
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
