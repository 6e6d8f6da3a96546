//! The durable job queue: enqueue, claim with a lease, heartbeat, finish, release, replay.

use mlc_core::{UnixMillis, now_millis};
use sqlx::AnyConnection;
use uuid::Uuid;

use tokio::sync::oneshot;

use crate::db::{JOB_COLUMNS, Rls, db_err, get, insert_audit, job_from_row, to_i32};
use crate::events::{WriteOp, writer_stopped};
use crate::model::{Backend, Job, JobOutcome, JobState, NewAudit, NewJob, StoreError};
use crate::retry::RetryPolicy;
use crate::scope::{ConnectionScope, ConnectionStore};
use crate::store::Store;

/// Inserts `job` under `id` unless its dedupe key exists. Returns the ID of the job holding the
/// key and whether it was created now.
pub(crate) async fn insert_job(
    conn: &mut AnyConnection,
    scope: &ConnectionScope,
    id: &str,
    job: &NewJob,
    now: UnixMillis,
) -> Result<(String, bool), StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO jobs (id, kind, event_id, payload, dedupe_key, state, attempts, \
         max_attempts, run_at, created_at, updated_at, tenant_id, connection_id) \
         VALUES ($1, $2, $3, $4, $5, 'queued', 0, $6, $7, $8, $8, $9, $10) \
         ON CONFLICT (tenant_id, connection_id, dedupe_key) DO NOTHING",
    )
    .bind(id.to_string())
    .bind(job.kind.clone())
    .bind(job.event_id.clone())
    .bind(job.payload.to_string())
    .bind(job.dedupe_key.clone())
    .bind(i64::from(job.max_attempts.max(1)))
    .bind(job.run_at)
    .bind(now)
    .bind(scope.t())
    .bind(scope.c())
    .execute(&mut *conn)
    .await
    .map_err(db_err)?
    .rows_affected();
    if inserted == 1 {
        return Ok((id.to_string(), true));
    }
    let row = sqlx::query(
        "SELECT id FROM jobs WHERE dedupe_key = $1 AND tenant_id = $2 AND connection_id = $3",
    )
    .bind(job.dedupe_key.clone())
    .bind(scope.t())
    .bind(scope.c())
    .fetch_one(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok((get(&row, "id")?, false))
}

/// Claims up to `n` runnable jobs on `conn` (see [`Store::claim`]), oldest `run_at` first.
pub(crate) async fn claim_in(
    conn: &mut AnyConnection,
    backend: Backend,
    worker_id: &str,
    lease_ms: i64,
    n: usize,
    now: UnixMillis,
) -> Result<Vec<Job>, StoreError> {
    let due = "SELECT id FROM jobs \
            WHERE (state IN ('queued', 'waiting') AND run_at <= $3) \
               OR (state = 'running' AND locked_until < $3 AND attempts < max_attempts) \
            ORDER BY run_at, id LIMIT $4";
    let sql = match backend {
        // SKIP LOCKED: concurrent claimers pass over each other's candidates instead of
        // queueing behind them; the row locks then make the UPDATE exclusive. The candidates are
        // picked once (MATERIALIZED): under row-level security PostgreSQL may otherwise plan the
        // `IN (subquery)` as a loop that re-runs it per row, each run skipping the rows already
        // claimed and taking the next, so LIMIT would not hold.
        Backend::Postgres => format!(
            "WITH picked AS MATERIALIZED ({due} FOR UPDATE SKIP LOCKED) \
             UPDATE jobs SET state = 'running', attempts = attempts + 1, locked_by = $1, \
             locked_until = $2, updated_at = $3 \
             WHERE id IN (SELECT id FROM picked) \
             RETURNING {JOB_COLUMNS}"
        ),
        // SQLite runs one writer at a time, so the single statement is already exclusive.
        Backend::Sqlite => format!(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, locked_by = $1, \
             locked_until = $2, updated_at = $3 \
             WHERE id IN ({due}) \
             RETURNING {JOB_COLUMNS}"
        ),
    };
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(worker_id.to_string())
        .bind(now.saturating_add(lease_ms.max(1)))
        .bind(now)
        .bind(i64::try_from(n).unwrap_or(i64::MAX))
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err)?;
    let mut jobs = rows
        .iter()
        .map(job_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    // RETURNING gives no order; hand them out in the order they were due.
    jobs.sort_by(|a, b| (a.run_at, &a.id).cmp(&(b.run_at, &b.id)));
    Ok(jobs)
}

/// [`Store::finish`] on `conn`, inside the caller's transaction. [`StoreError::LeaseLost`] changes
/// nothing, so the transaction can go on for the other writes it holds.
pub(crate) async fn finish_in(
    conn: &mut AnyConnection,
    backend: Backend,
    retry: &RetryPolicy,
    job_id: &str,
    worker_id: &str,
    outcome: &JobOutcome,
    now: UnixMillis,
) -> Result<JobState, StoreError> {
    let lock = match backend {
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    };
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT attempts, max_attempts, event_id, run_at, tenant_id, connection_id FROM jobs \
         WHERE id = $1 AND locked_by = $2 AND state = 'running'{lock}"
    )))
    .bind(job_id.to_string())
    .bind(worker_id.to_string())
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err)?;
    let Some(row) = row else {
        return Err(StoreError::LeaseLost(job_id.to_string()));
    };
    let attempts = to_i32(get(&row, "attempts")?);
    let max_attempts = to_i32(get(&row, "max_attempts")?);
    let event_id: Option<String> = get(&row, "event_id")?;
    let old_run_at: i64 = get(&row, "run_at")?;
    let scope = ConnectionScope::from_row(
        &get::<String>(&row, "tenant_id")?,
        &get::<String>(&row, "connection_id")?,
    )?;

    let (state, run_at, new_attempts, last_error, step, message, data) = match outcome.clone() {
        JobOutcome::Succeeded => (
            JobState::Succeeded,
            old_run_at,
            attempts,
            None,
            "succeeded",
            format!("Job finished on attempt {attempts}"),
            None,
        ),
        JobOutcome::Retry {
            error,
            class,
            after_ms,
        } => {
            if attempts >= max_attempts {
                (
                    JobState::Failed,
                    old_run_at,
                    attempts,
                    Some(error.clone()),
                    "failed",
                    format!("Gave up after {attempts} of {max_attempts} attempts: {error}"),
                    Some(serde_json::json!({ "class": class.as_str(), "attempts": attempts })),
                )
            } else {
                let delay = after_ms
                    .unwrap_or_else(|| retry.delay(attempts, &mut rand::rng()))
                    .max(0);
                (
                    JobState::Queued,
                    now.saturating_add(delay),
                    attempts,
                    Some(error.clone()),
                    "retried",
                    format!(
                        "Attempt {attempts} of {max_attempts} failed ({class}): {error}; \
                         retrying in {}",
                        secs(delay)
                    ),
                    Some(serde_json::json!({
                        "class": class.as_str(),
                        "attempts": attempts,
                        "retry_in_ms": delay,
                    })),
                )
            }
        }
        JobOutcome::Wait { reason, after_ms } => {
            let delay = after_ms.max(0);
            (
                JobState::Waiting,
                now.saturating_add(delay),
                (attempts - 1).max(0),
                Some(reason.clone()),
                "waiting",
                format!(
                    "Waiting for a person: {reason}; checking again in {}",
                    secs(delay)
                ),
                Some(serde_json::json!({ "check_again_in_ms": delay })),
            )
        }
        JobOutcome::Failed { error } => (
            JobState::Failed,
            old_run_at,
            attempts,
            Some(error.clone()),
            "failed",
            format!("Failed permanently on attempt {attempts}: {error}"),
            None,
        ),
    };

    let n = sqlx::query(
        "UPDATE jobs SET state = $3, run_at = $4, attempts = $5, last_error = $6, \
         locked_by = NULL, locked_until = NULL, updated_at = $7 \
         WHERE id = $1 AND locked_by = $2 AND state = 'running'",
    )
    .bind(job_id.to_string())
    .bind(worker_id.to_string())
    .bind(state.as_str())
    .bind(run_at)
    .bind(i64::from(new_attempts))
    .bind(last_error)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?
    .rows_affected();
    if n == 0 {
        return Err(StoreError::LeaseLost(job_id.to_string()));
    }
    let audit = NewAudit {
        event_id,
        job_id: Some(job_id.to_string()),
        stripe_object_id: None,
        step: step.into(),
        message,
        data,
    };
    insert_audit(&mut *conn, &scope, &audit, now).await?;
    Ok(state)
}

fn secs(ms: i64) -> String {
    if ms % 1000 == 0 {
        format!("{} s", ms / 1000)
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

impl ConnectionStore {
    /// Adds a job unless one with the same dedupe key exists in this connection. Returns the new
    /// job's ID, or `None` when the key was already taken.
    pub async fn enqueue(&self, job: NewJob) -> Result<Option<String>, StoreError> {
        let id = Uuid::now_v7().to_string();
        let now = now_millis();
        let db = &self.store.db;
        let _guard = db.write_guard().await;
        let mut tx = db
            .begin_write_as(Rls::Tenant(self.scope.tenant_id().as_str()))
            .await?;
        let (actual, created) = insert_job(&mut tx, &self.scope, &id, &job, now).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(created.then_some(actual))
    }
}

impl Store {
    /// Claims the next runnable job for `worker_id` with a lease of `lease_ms`: a queued or
    /// waiting job whose `run_at` has come, or a running job whose lease expired (its worker died)
    /// and that has attempts left. Increments `attempts`.
    pub async fn claim(&self, worker_id: &str, lease_ms: i64) -> Result<Option<Job>, StoreError> {
        Ok(self.claim_many(worker_id, lease_ms, 1).await?.pop())
    }

    /// Claims up to `n` runnable jobs (as [`Store::claim`], oldest `run_at` first) in one
    /// statement. The claim goes through the group-commit writer, so on SQLite it shares a commit
    /// (and its fsync) with the intake and the other workers' writes instead of taking one of
    /// its own.
    pub async fn claim_many(
        &self,
        worker_id: &str,
        lease_ms: i64,
        n: usize,
    ) -> Result<Vec<Job>, StoreError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let (reply, rx) = oneshot::channel();
        self.send_op(WriteOp::Claim {
            worker_id: worker_id.to_string(),
            lease_ms,
            n,
            reply,
        })
        .await?;
        rx.await.map_err(|_| writer_stopped())?
    }

    /// Extends the lease of a job this worker runs. [`StoreError::LeaseLost`] when the job is no
    /// longer running under this worker (another worker claimed it after the lease expired).
    pub async fn heartbeat(
        &self,
        job_id: &str,
        worker_id: &str,
        lease_ms: i64,
    ) -> Result<(), StoreError> {
        let now = now_millis();
        let _guard = self.db.write_guard().await;
        let mut tx = self.db.begin_write_as(Rls::AllTenants).await?;
        let n = sqlx::query(
            "UPDATE jobs SET locked_until = $3, updated_at = $4 \
             WHERE id = $1 AND locked_by = $2 AND state = 'running'",
        )
        .bind(job_id.to_string())
        .bind(worker_id.to_string())
        .bind(now.saturating_add(lease_ms.max(1)))
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
        tx.commit().await.map_err(db_err)?;
        if n == 0 {
            return Err(StoreError::LeaseLost(job_id.to_string()));
        }
        Ok(())
    }

    /// Applies a handler's outcome to a job this worker holds and appends an audit entry.
    /// Returns the job's new state.
    ///
    /// - `Succeeded` → succeeded.
    /// - `Retry` → queued after `after_ms` or the retry schedule, or failed when the attempts are
    ///   exhausted.
    /// - `Wait` → waiting until `after_ms` from now; the attempt is given back, since waiting for a
    ///   person is not a failure of the job (the caller decides when waiting becomes failure).
    /// - `Failed` → failed.
    ///
    /// The state change and its audit entry are committed together, by the group-commit writer
    /// (with whatever else is pending), before this returns.
    ///
    /// [`StoreError::LeaseLost`] if the job is no longer running under this worker.
    pub async fn finish(
        &self,
        job_id: &str,
        worker_id: &str,
        outcome: JobOutcome,
    ) -> Result<JobState, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.send_op(WriteOp::Finish {
            job_id: job_id.to_string(),
            worker_id: worker_id.to_string(),
            outcome,
            reply,
        })
        .await?;
        rx.await.map_err(|_| writer_stopped())?
    }

    /// Puts a job this worker runs back in the queue, runnable now, and gives the attempt back
    /// (used at shutdown: the job did not fail, the process is stopping). Returns whether the job
    /// was released (false when this worker no longer held it).
    pub async fn release(&self, job_id: &str, worker_id: &str) -> Result<bool, StoreError> {
        let now = now_millis();
        let _guard = self.db.write_guard().await;
        let mut tx = self.db.begin_write_as(Rls::AllTenants).await?;
        let row = sqlx::query(
            "UPDATE jobs SET state = 'queued', run_at = $3, \
             attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, \
             locked_by = NULL, locked_until = NULL, updated_at = $3 \
             WHERE id = $1 AND locked_by = $2 AND state = 'running' \
             RETURNING event_id, tenant_id, connection_id",
        )
        .bind(job_id.to_string())
        .bind(worker_id.to_string())
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        let Some(row) = row else { return Ok(false) };
        let scope = scope_of(&row)?;
        let audit = NewAudit {
            event_id: get(&row, "event_id")?,
            job_id: Some(job_id.to_string()),
            step: "released".into(),
            message: format!(
                "Worker {worker_id} stopped before finishing; job put back in the queue"
            ),
            ..NewAudit::default()
        };
        insert_audit(&mut tx, &scope, &audit, now).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }

    /// Marks failed the running jobs whose lease expired with no attempts left (their worker died
    /// on the last attempt, possibly because the job itself crashes the process). Returns how many.
    pub async fn fail_abandoned_jobs(&self) -> Result<u64, StoreError> {
        let now = now_millis();
        let _guard = self.db.write_guard().await;
        let mut tx = self.db.begin_write_as(Rls::AllTenants).await?;
        let rows = sqlx::query(
            "UPDATE jobs SET state = 'failed', locked_by = NULL, locked_until = NULL, \
             last_error = 'the worker running the last attempt stopped without finishing', \
             updated_at = $1 \
             WHERE state = 'running' AND locked_until < $1 AND attempts >= max_attempts \
             RETURNING id, event_id, attempts, tenant_id, connection_id",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        for row in &rows {
            let attempts: i64 = get(row, "attempts")?;
            let audit = NewAudit {
                event_id: get(row, "event_id")?,
                job_id: Some(get(row, "id")?),
                step: "failed".into(),
                message: format!(
                    "Gave up after {attempts} attempts: the worker running the last attempt stopped without finishing"
                ),
                ..NewAudit::default()
            };
            insert_audit(&mut tx, &scope_of(row)?, &audit, now).await?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(rows.len() as u64)
    }

    /// Number of jobs in each state across every tenant (every state listed, zeros included):
    /// the service's own gauges, no tenant's data.
    pub async fn job_counts_all(&self) -> Result<Vec<(JobState, i64)>, StoreError> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")
            .fetch_all(&mut *self.db.read_all().await?)
            .await
            .map_err(db_err)?;
        counts_by_state(&rows)
    }

    /// How long the oldest runnable queued job of any tenant has been waiting for a worker, in
    /// milliseconds (`None` when nothing is due). A growing value means workers are not keeping
    /// up. A number about the service, not any tenant's data.
    pub async fn oldest_queued_age_ms(&self) -> Result<Option<i64>, StoreError> {
        let now = now_millis();
        let row = sqlx::query(
            "SELECT MIN(run_at) AS oldest FROM jobs WHERE state = 'queued' AND run_at <= $1",
        )
        .bind(now)
        .fetch_one(&mut *self.db.read_all().await?)
        .await
        .map_err(db_err)?;
        let oldest: Option<i64> = get(&row, "oldest")?;
        Ok(oldest.map(|t| (now - t).max(0)))
    }
}

fn counts_by_state(rows: &[sqlx::any::AnyRow]) -> Result<Vec<(JobState, i64)>, StoreError> {
    let mut counts: Vec<(JobState, i64)> = JobState::ALL.iter().map(|s| (*s, 0)).collect();
    for row in rows {
        let state: String = get(row, "state")?;
        let n: i64 = get(row, "n")?;
        if let Some(slot) = counts.iter_mut().find(|(s, _)| s.as_str() == state) {
            slot.1 = n;
        }
    }
    Ok(counts)
}

fn scope_of(row: &sqlx::any::AnyRow) -> Result<ConnectionScope, StoreError> {
    ConnectionScope::from_row(
        &get::<String>(row, "tenant_id")?,
        &get::<String>(row, "connection_id")?,
    )
}

impl ConnectionStore {
    /// Replays the job(s) of one event: queued now with the attempts reset, audited `replayed`.
    /// A job currently running is left alone. Returns whether anything was requeued.
    pub async fn requeue_event(&self, event_id: &str) -> Result<bool, StoreError> {
        let now = now_millis();
        let db = &self.store.db;
        let _guard = db.write_guard().await;
        let mut tx = db
            .begin_write_as(Rls::Tenant(self.scope.tenant_id().as_str()))
            .await?;
        let rows = sqlx::query(
            "UPDATE jobs SET state = 'queued', run_at = $2, attempts = 0, locked_by = NULL, \
             locked_until = NULL, last_error = NULL, updated_at = $2 \
             WHERE tenant_id = $3 AND connection_id = $4 \
               AND (event_id = $1 OR id = (SELECT job_id FROM events \
                    WHERE event_id = $1 AND tenant_id = $3 AND connection_id = $4)) \
               AND state <> 'running' \
             RETURNING id",
        )
        .bind(event_id.to_string())
        .bind(now)
        .bind(self.scope.t())
        .bind(self.scope.c())
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        for row in &rows {
            let audit = NewAudit {
                event_id: Some(event_id.to_string()),
                job_id: Some(get(row, "id")?),
                step: "replayed".into(),
                message: "Replay requested: job queued again with its attempts reset".into(),
                ..NewAudit::default()
            };
            insert_audit(&mut tx, &self.scope, &audit, now).await?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(!rows.is_empty())
    }

    /// Replays every job in `state` (last changed at or after `since`, when given): queued now with
    /// attempts reset, each audited `replayed`. Running jobs are never requeued (`Running` → 0).
    pub async fn requeue_where(
        &self,
        state: JobState,
        since: Option<UnixMillis>,
    ) -> Result<u64, StoreError> {
        if state == JobState::Running {
            return Ok(0);
        }
        let now = now_millis();
        let db = &self.store.db;
        let _guard = db.write_guard().await;
        let mut tx = db
            .begin_write_as(Rls::Tenant(self.scope.tenant_id().as_str()))
            .await?;
        let rows = sqlx::query(
            "UPDATE jobs SET state = 'queued', run_at = $2, attempts = 0, locked_by = NULL, \
             locked_until = NULL, last_error = NULL, updated_at = $2 \
             WHERE state = $1 AND updated_at >= $3 AND tenant_id = $4 AND connection_id = $5 \
             RETURNING id, event_id",
        )
        .bind(state.as_str())
        .bind(now)
        .bind(since.unwrap_or(i64::MIN))
        .bind(self.scope.t())
        .bind(self.scope.c())
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        for row in &rows {
            let audit = NewAudit {
                event_id: get(row, "event_id")?,
                job_id: Some(get(row, "id")?),
                step: "replayed".into(),
                message: format!(
                    "Replay of {state} jobs requested: job queued again with its attempts reset"
                ),
                ..NewAudit::default()
            };
            insert_audit(&mut tx, &self.scope, &audit, now).await?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(rows.len() as u64)
    }

    /// Makes waiting jobs whose `last_error` contains `matching` (case-sensitive) runnable now,
    /// e.g. after a person added the missing product mapping. Returns how many.
    pub async fn wake_waiting_jobs(&self, matching: &str) -> Result<u64, StoreError> {
        let now = now_millis();
        let db = &self.store.db;
        let contains = match db.backend {
            Backend::Sqlite => "instr(last_error, $2) > 0",
            Backend::Postgres => "strpos(last_error, $2) > 0",
        };
        let sql = format!(
            "UPDATE jobs SET run_at = $1, updated_at = $1 \
             WHERE state = 'waiting' AND run_at > $1 AND {contains} \
               AND tenant_id = $3 AND connection_id = $4"
        );
        let _guard = db.write_guard().await;
        let mut tx = db
            .begin_write_as(Rls::Tenant(self.scope.tenant_id().as_str()))
            .await?;
        let n = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(matching.to_string())
            .bind(self.scope.t())
            .bind(self.scope.c())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
        tx.commit().await.map_err(db_err)?;
        Ok(n)
    }

    /// Number of jobs in each state (every state listed, zeros included).
    pub async fn job_counts(&self) -> Result<Vec<(JobState, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT state, COUNT(*) AS n FROM jobs \
             WHERE tenant_id = $1 AND connection_id = $2 GROUP BY state",
        )
        .bind(self.scope.t())
        .bind(self.scope.c())
        .fetch_all(&mut *self.store.db.read(&self.scope).await?)
        .await
        .map_err(db_err)?;
        counts_by_state(&rows)
    }

    /// One job by ID.
    pub async fn get_job(&self, job_id: &str) -> Result<Option<Job>, StoreError> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1 AND tenant_id = $2 AND connection_id = $3"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(job_id.to_string())
            .bind(self.scope.t())
            .bind(self.scope.c())
            .fetch_optional(&mut *self.store.db.read(&self.scope).await?)
            .await
            .map_err(db_err)?;
        row.as_ref().map(job_from_row).transpose()
    }

    /// The job created with an event (or, failing that, the oldest job naming it).
    pub async fn get_job_for_event(&self, event_id: &str) -> Result<Option<Job>, StoreError> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs \
             WHERE tenant_id = $2 AND connection_id = $3 \
               AND (id = (SELECT job_id FROM events \
                          WHERE event_id = $1 AND tenant_id = $2 AND connection_id = $3) \
                    OR event_id = $1) \
             ORDER BY CASE WHEN id = (SELECT job_id FROM events \
                          WHERE event_id = $1 AND tenant_id = $2 AND connection_id = $3) \
                      THEN 0 ELSE 1 END, created_at, id LIMIT 1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(event_id.to_string())
            .bind(self.scope.t())
            .bind(self.scope.c())
            .fetch_optional(&mut *self.store.db.read(&self.scope).await?)
            .await
            .map_err(db_err)?;
        row.as_ref().map(job_from_row).transpose()
    }
}
