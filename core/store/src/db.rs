//! The connection pool plus the few helpers every query module shares.

use sqlx::AnyConnection;
use sqlx::any::AnyRow;
use sqlx::{Any, AnyPool, Row, Transaction};
use tokio::sync::{Mutex, MutexGuard};

use crate::model::{AuditEntry, Backend, Job, JobState, NewAudit, StoreError};
use mlc_core::UnixMillis;

/// The pool and what is needed to write safely on either backend.
pub(crate) struct Db {
    pub(crate) pool: AnyPool,
    pub(crate) backend: Backend,
    /// SQLite allows one writer at a time. Serialising this process's writes on an async mutex
    /// makes them queue fairly instead of sleeping in SQLite's busy handler (whose back-off would
    /// dominate tail latency). Other processes are still handled by `busy_timeout`.
    write_lock: Option<Mutex<()>>,
}

impl Db {
    pub(crate) fn new(pool: AnyPool, backend: Backend) -> Self {
        let write_lock = match backend {
            Backend::Sqlite => Some(Mutex::new(())),
            Backend::Postgres => None,
        };
        Db {
            pool,
            backend,
            write_lock,
        }
    }

    /// Held for the duration of any write on SQLite; a no-op on PostgreSQL.
    pub(crate) async fn write_guard(&self) -> Option<MutexGuard<'_, ()>> {
        match &self.write_lock {
            Some(m) => Some(m.lock().await),
            None => None,
        }
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

pub(crate) const JOB_COLUMNS: &str = "id, kind, event_id, payload, dedupe_key, state, attempts, \
     max_attempts, run_at, locked_by, locked_until, last_error, created_at, updated_at";

pub(crate) fn job_from_row(row: &AnyRow) -> Result<Job, StoreError> {
    let payload: String = get(row, "payload")?;
    let payload = serde_json::from_str(&payload)
        .map_err(|e| StoreError::Database(format!("stored job payload is not JSON: {e}")))?;
    let state: String = get(row, "state")?;
    let state = JobState::parse(&state)
        .ok_or_else(|| StoreError::Database(format!("unknown job state `{state}`")))?;
    Ok(Job {
        id: get(row, "id")?,
        kind: get(row, "kind")?,
        event_id: get(row, "event_id")?,
        payload,
        dedupe_key: get(row, "dedupe_key")?,
        state,
        attempts: to_i32(get(row, "attempts")?),
        max_attempts: to_i32(get(row, "max_attempts")?),
        run_at: get(row, "run_at")?,
        locked_by: get(row, "locked_by")?,
        locked_until: get(row, "locked_until")?,
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

/// Appends one audit entry on the given connection (usually inside a caller's transaction).
pub(crate) async fn insert_audit(
    conn: &mut AnyConnection,
    entry: &NewAudit,
    at: UnixMillis,
) -> Result<i64, StoreError> {
    let data = entry.data.as_ref().map(|d| d.to_string());
    let row = sqlx::query(
        "INSERT INTO audit (at, event_id, job_id, stripe_object_id, step, message, data) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(at)
    .bind(entry.event_id.clone())
    .bind(entry.job_id.clone())
    .bind(entry.stripe_object_id.clone())
    .bind(entry.step.clone())
    .bind(entry.message.clone())
    .bind(data)
    .fetch_one(&mut *conn)
    .await
    .map_err(db_err)?;
    get(&row, "id")
}
