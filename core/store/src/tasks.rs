//! apalis' task rows, written by the store inside its own transactions.
//!
//! apalis (1.0) runs the jobs: its workers claim task rows, heartbeat, re-run a dead worker's
//! tasks, and several processes share one PostgreSQL with `FOR UPDATE SKIP LOCKED`. Our `jobs`
//! table keeps the business state and the schedule (state, attempts, next run, last error), and
//! `jobs.task_id` names the one apalis task that carries a job's next attempt. A task whose ID is
//! no longer its job's `task_id` (the job was replayed, or already finished) does nothing.
//!
//! Why the rows are written here and not with `apalis_*::queries::push_tasks`: that function
//! takes a typed sqlx executor (`Sqlite` or `Postgres`), and the store's hot paths run on sqlx's
//! `Any` driver, whose connection cannot be unwrapped to a typed one. Writing apalis' row with
//! the exact columns of apalis' own `queries/task/sink.sql` keeps the event, our job and its task
//! in one transaction (an acknowledged webhook always has its task; a rollback leaves neither).
//! apalis is pinned to `=1.0.0` for that reason, and `tests/apalis_rows.rs` checks, on both
//! backends, that a row written here is the row `push_tasks` writes and that apalis' worker runs
//! it.

use std::collections::HashMap;

use mlc_core::{UnixMillis, now_millis};
use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;

use crate::db::{db_err, get};
use crate::model::{Backend, StoreError};
use crate::scope::ConnectionScope;

/// The apalis queue (`job_type`) the store writes to unless configured otherwise.
pub const DEFAULT_QUEUE: &str = "mlc.jobs";

/// apalis-level attempts of one task. Our handler returns `Ok` whatever the job's outcome (the
/// schedule is ours), so apalis re-runs a task only when its worker died or the outcome could not
/// be recorded; apalis re-runs those at once, with no back-off, so the budget stays small.
pub const TASK_MAX_ATTEMPTS: i64 = 5;

/// Fair sharing: apalis fetches by `priority DESC, run_at, id`. A task's priority is this base
/// minus its connection's queued backlog when it was pushed, so the n-th waiting job of every
/// connection comes before the (n+1)-th of any: one tenant's flood does not queue the others
/// behind it (see ARCHITECTURE.md, "Fair sharing").
pub const PRIORITY_BASE: i64 = 1_000_000;

/// What an apalis task carries: the job to run and its connection (so a worker can apply the
/// per-connection cap before touching the job). IDs only; no tenant data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobTicket {
    pub job: String,
    pub tenant: String,
    pub connection: String,
}

impl JobTicket {
    /// The connection the job belongs to (a malformed ticket is an error, never another scope).
    pub fn scope(&self) -> Result<ConnectionScope, StoreError> {
        ConnectionScope::from_row(&self.tenant, &self.connection)
    }
}

/// A task to push: its pre-assigned ULID (stored as the job's `task_id`), the job, when, and its
/// fair-share priority.
#[derive(Debug, Clone)]
pub(crate) struct NewTask {
    pub(crate) id: String,
    pub(crate) ticket: JobTicket,
    pub(crate) run_at: UnixMillis,
    pub(crate) priority: i64,
}

impl NewTask {
    pub(crate) fn new(job_id: &str, scope: &ConnectionScope, run_at: UnixMillis) -> NewTask {
        NewTask {
            id: new_task_id(),
            ticket: JobTicket {
                job: job_id.to_string(),
                tenant: scope.t(),
                connection: scope.c(),
            },
            run_at,
            priority: PRIORITY_BASE,
        }
    }
}

/// A fresh apalis task ID (apalis decodes `id` as a ULID: anything else would stop its worker).
pub(crate) fn new_task_id() -> String {
    ulid::Ulid::generate().to_string()
}

/// apalis' `run_at` is whole seconds on SQLite (`run_at <= now`): round a future time up so a
/// task never runs early, and a due one down so it runs at once. PostgreSQL keeps milliseconds.
fn sqlite_run_at(run_at: UnixMillis, now: UnixMillis) -> i64 {
    if run_at <= now {
        run_at.div_euclid(1000)
    } else {
        (run_at + 999).div_euclid(1000)
    }
}

/// Rows per multi-row INSERT (6 parameters each).
const CHUNK: usize = 500;

/// Inserts `tasks` into apalis' table for `queue`, in the caller's transaction. The columns and
/// values are those of apalis 1.0's `push_tasks` (`queries/task/sink.sql`): status `Pending`, no
/// attempts yet, empty metadata, no idempotency key (our `jobs.dedupe_key` is the dedupe).
pub(crate) async fn push_tasks_in(
    conn: &mut AnyConnection,
    backend: Backend,
    queue: &str,
    tasks: &[NewTask],
) -> Result<(), StoreError> {
    let now = now_millis();
    for chunk in tasks.chunks(CHUNK) {
        // The run time in milliseconds; PostgreSQL's column is a timestamp (`to_timestamp` takes
        // seconds, and milliseconds keep sub-second schedules). The empty metadata is an empty
        // hstore there, as `push_tasks` writes it.
        let (table, run_at, metadata) = match backend {
            Backend::Sqlite => ("Jobs", "?", "'{}'"),
            Backend::Postgres => ("apalis.jobs", "to_timestamp(? / 1000.0)", "''"),
        };
        let rows = crate::events::values_sql(
            backend,
            chunk.len(),
            &[
                "?",
                "?",
                "?",
                "'Pending'",
                "0",
                "?",
                run_at,
                "?",
                metadata,
                "NULL",
            ],
        );
        let sql = format!(
            "INSERT INTO {table} (job, id, job_type, status, attempts, max_attempts, run_at, \
             priority, metadata, idempotency_key) VALUES {rows}"
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for t in chunk {
            let body = serde_json::to_vec(&t.ticket)
                .map_err(|e| StoreError::Database(format!("encoding a task: {e}")))?;
            let run_at = match backend {
                Backend::Sqlite => sqlite_run_at(t.run_at, now),
                Backend::Postgres => t.run_at,
            };
            q = q
                .bind(body)
                .bind(t.id.clone())
                .bind(queue.to_string())
                .bind(TASK_MAX_ATTEMPTS)
                .bind(run_at)
                .bind(t.priority.clamp(0, PRIORITY_BASE));
        }
        q.execute(&mut *conn).await.map_err(db_err)?;
    }
    Ok(())
}

/// Makes pending tasks due now (a mapping arrived, a connection was resumed): the worker picks
/// them up at its next poll. Tasks already claimed are left alone.
pub(crate) async fn pull_forward_in(
    conn: &mut AnyConnection,
    backend: Backend,
    queue: &str,
    task_ids: &[String],
) -> Result<u64, StoreError> {
    let mut n = 0;
    for chunk in task_ids.chunks(CHUNK) {
        let list = crate::events::numbered_params(2, chunk.len(), false);
        let sql = match backend {
            Backend::Sqlite => format!(
                "UPDATE Jobs SET run_at = strftime('%s', 'now') \
                 WHERE job_type = $1 AND status = 'Pending' AND lock_by IS NULL AND id IN ({list})"
            ),
            Backend::Postgres => format!(
                "UPDATE apalis.jobs SET run_at = now() \
                 WHERE job_type = $1 AND status = 'Pending' AND id IN ({list})"
            ),
        };
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(queue.to_string());
        for id in chunk {
            q = q.bind(id.clone());
        }
        n += q.execute(&mut *conn).await.map_err(db_err)?.rows_affected();
    }
    Ok(n)
}

/// Deletes this queue's finished apalis tasks (`Done`, `Killed`, and `Failed` with no attempts
/// left) older than `older_than_secs`. Our `sync_jobs` rows and the audit log keep each job's
/// history; apalis' rows are only its dispatch, and would otherwise grow by one per attempt
/// forever. Returns how many were deleted.
pub(crate) async fn vacuum_in(
    conn: &mut AnyConnection,
    backend: Backend,
    queue: &str,
    older_than_secs: i64,
) -> Result<u64, StoreError> {
    let sql = match backend {
        Backend::Sqlite => {
            "DELETE FROM Jobs WHERE job_type = $1 \
             AND (status IN ('Done', 'Killed') OR (status = 'Failed' AND attempts >= max_attempts)) \
             AND done_at IS NOT NULL AND done_at < strftime('%s', 'now') - $2"
        }
        Backend::Postgres => {
            "DELETE FROM apalis.jobs WHERE job_type = $1 \
             AND (status IN ('Done', 'Killed') OR (status = 'Failed' AND attempts >= max_attempts)) \
             AND done_at IS NOT NULL AND done_at < now() - make_interval(secs => $2)"
        }
    };
    let n = sqlx::query(sql)
        .bind(queue.to_string())
        .bind(older_than_secs.max(0))
        .execute(&mut *conn)
        .await
        .map_err(db_err)?
        .rows_affected();
    Ok(n)
}

/// How far a connection's backlog is counted for the fair-share priority. Counting is a walk of
/// the connection's queued jobs in the index, inside the intake's write transaction: uncapped,
/// it cost 1.4 ms of every group commit with 20,000 jobs queued, more than the commit's inserts.
/// Past this, connections are all "far behind" and their new tasks share a priority (they run
/// in arrival order among themselves), still behind every connection with less queued.
pub const BACKLOG_COUNTED: i64 = 1_000;

/// Each connection's queued backlog (jobs waiting for a worker, due or not), counted up to
/// [`BACKLOG_COUNTED`], for the fair-share priority of the tasks about to be pushed. One
/// statement for every connection asked about.
pub(crate) async fn backlogs_in(
    conn: &mut AnyConnection,
    backend: Backend,
    scopes: &[&ConnectionScope],
) -> Result<HashMap<ConnectionScope, i64>, StoreError> {
    let mut out = HashMap::new();
    let mut distinct: Vec<&ConnectionScope> = scopes.to_vec();
    distinct.sort_by_key(|s| (s.t(), s.c()));
    distinct.dedup();
    for chunk in distinct.chunks(200) {
        // Each connection's count stops at the cap (the LIMIT in the innermost query), so its
        // cost does not grow with the backlog.
        let sql = format!(
            "WITH asked (t, c) AS (VALUES {}) \
             SELECT t AS tenant_id, c AS connection_id, \
               (SELECT COUNT(*) FROM (SELECT 1 FROM sync_jobs \
                  WHERE tenant_id = asked.t AND connection_id = asked.c AND state = 'queued' \
                  LIMIT {BACKLOG_COUNTED}) AS queued) AS n \
             FROM asked",
            crate::events::values_sql(backend, chunk.len(), &["?", "?"])
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for s in chunk {
            q = q.bind(s.t()).bind(s.c());
        }
        for row in q.fetch_all(&mut *conn).await.map_err(db_err)? {
            let scope = ConnectionScope::from_row(
                &get::<String>(&row, "tenant_id")?,
                &get::<String>(&row, "connection_id")?,
            )?;
            out.insert(scope, get::<i64>(&row, "n")?);
        }
    }
    Ok(out)
}

/// Sets each task's fair-share priority from its connection's backlog: the k-th task of a
/// connection with `b` queued jobs (its own counted, up to [`BACKLOG_COUNTED`]) gets
/// `PRIORITY_BASE - (b + k)`.
pub(crate) async fn prioritise_in(
    conn: &mut AnyConnection,
    backend: Backend,
    tasks: &mut [NewTask],
) -> Result<(), StoreError> {
    let scopes: Vec<ConnectionScope> = tasks
        .iter()
        .map(|t| ConnectionScope::from_row(&t.ticket.tenant, &t.ticket.connection))
        .collect::<Result<_, _>>()?;
    let refs: Vec<&ConnectionScope> = scopes.iter().collect();
    let mut backlog = backlogs_in(conn, backend, &refs).await?;
    for (task, scope) in tasks.iter_mut().zip(&scopes) {
        let b = backlog.entry(scope.clone()).or_insert(0);
        task.priority = PRIORITY_BASE - (*b).min(PRIORITY_BASE);
        *b += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_run_at_never_runs_early() {
        assert_eq!(sqlite_run_at(10_500, 20_000), 10);
        assert_eq!(sqlite_run_at(20_001, 20_000), 21);
        assert_eq!(sqlite_run_at(21_000, 20_000), 21);
    }
}
