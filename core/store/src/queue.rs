//! The job queue's business state: enqueue, start, finish, defer, replay, wake. apalis runs the
//! jobs (see [`crate::tasks`]); every state change that needs another attempt pushes that attempt's
//! apalis task in the same transaction.

use mlc_core::{UnixMillis, now_millis};
use sqlx::AnyConnection;
use uuid::Uuid;

use crate::db::{JOB_COLUMNS, Rls, db_err, get, insert_audit, job_from_row, to_i32};
use crate::events::{WriteOp, numbered_params};
use crate::model::{Backend, Job, JobOutcome, JobState, NewAudit, NewJob, StoreError};
use crate::retry::RetryPolicy;
use crate::scope::{ConnectionScope, ConnectionStore};
use crate::store::Store;
use crate::tasks::{
    NewTask, new_task_id, prioritise_in, pull_forward_in, push_tasks_in, vacuum_in,
};

/// Inserts `job` under `id` unless its dedupe key exists, with its apalis task. Returns the ID of
/// the job holding the key and whether it was created now.
pub(crate) async fn insert_job(
    conn: &mut AnyConnection,
    backend: Backend,
    queue: &str,
    scope: &ConnectionScope,
    id: &str,
    job: &NewJob,
    now: UnixMillis,
) -> Result<(String, bool), StoreError> {
    let mut task = NewTask::new(id, scope, job.run_at);
    let inserted = sqlx::query(
        "INSERT INTO sync_jobs (id, kind, event_id, payload, dedupe_key, state, attempts, \
         max_attempts, run_at, created_at, updated_at, tenant_id, connection_id, task_id) \
         VALUES ($1, $2, $3, $4, $5, 'queued', 0, $6, $7, $8, $8, $9, $10, $11) \
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
    .bind(task.id.clone())
    .execute(&mut *conn)
    .await
    .map_err(db_err)?
    .rows_affected();
    if inserted == 1 {
        prioritise_in(&mut *conn, backend, std::slice::from_mut(&mut task)).await?;
        push_tasks_in(&mut *conn, backend, queue, &[task]).await?;
        return Ok((id.to_string(), true));
    }
    let row = sqlx::query(
        "SELECT id FROM sync_jobs WHERE dedupe_key = $1 AND tenant_id = $2 AND connection_id = $3",
    )
    .bind(job.dedupe_key.clone())
    .bind(scope.t())
    .bind(scope.c())
    .fetch_one(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok((get(&row, "id")?, false))
}

/// What [`Store::start`] found.
#[derive(Debug)]
// Returned once per attempt through a oneshot; boxing the job would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Start {
    /// The job is now running under this task: run it.
    Run(Job),
    /// Nothing to run: the task is not (or no longer) the one carrying the job (the job was
    /// replayed, finished, or re-scheduled), or the job is gone.
    Stale,
    /// The job had used its last attempt in a worker that died without finishing it (possibly
    /// because the job itself crashes the process): it is now failed, not run again.
    GaveUp,
}

/// Marks the job running under `task_id` (one more attempt) on `conn`. A job left `running` by a
/// worker that died is started again by the task apalis re-runs, while attempts remain.
/// [`Store::defer`] inside the writer's transaction.
pub(crate) async fn defer_in(
    conn: &mut AnyConnection,
    backend: Backend,
    queue: &str,
    job_id: &str,
    task_id: &str,
    after_ms: i64,
    now: UnixMillis,
) -> Result<Option<String>, StoreError> {
    let next_id = new_task_id();
    let run_at = now.saturating_add(after_ms.max(0));
    let row = sqlx::query(
        "UPDATE sync_jobs SET task_id = $3, state = 'queued', run_at = $5, locked_by = NULL, \
         updated_at = $4 \
         WHERE id = $1 AND task_id = $2 AND state IN ('queued', 'waiting', 'running') \
         RETURNING tenant_id, connection_id",
    )
    .bind(job_id.to_string())
    .bind(task_id.to_string())
    .bind(next_id.clone())
    .bind(now)
    .bind(run_at)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err)?;
    let Some(row) = row else { return Ok(None) };
    let mut task = NewTask::new(job_id, &scope_of(&row)?, run_at);
    task.id = next_id.clone();
    prioritise_in(&mut *conn, backend, std::slice::from_mut(&mut task)).await?;
    push_tasks_in(&mut *conn, backend, queue, &[task]).await?;
    Ok(Some(next_id))
}

pub(crate) async fn start_in(
    conn: &mut AnyConnection,
    job_id: &str,
    task_id: &str,
    worker: &str,
    now: UnixMillis,
) -> Result<Start, StoreError> {
    let sql = format!(
        "UPDATE sync_jobs SET state = 'running', attempts = attempts + 1, locked_by = $3, \
         updated_at = $4 \
         WHERE id = $1 AND task_id = $2 \
           AND (state IN ('queued', 'waiting') OR (state = 'running' AND attempts < max_attempts)) \
         RETURNING {JOB_COLUMNS}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(job_id.to_string())
        .bind(task_id.to_string())
        .bind(worker.to_string())
        .bind(now)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)?;
    if let Some(row) = row {
        return Ok(Start::Run(job_from_row(&row)?));
    }
    // Out of attempts while running: its last worker died mid-run.
    let row = sqlx::query(
        "UPDATE sync_jobs SET state = 'failed', locked_by = NULL, updated_at = $3, \
         last_error = 'the worker running the last attempt stopped without finishing' \
         WHERE id = $1 AND task_id = $2 AND state = 'running' AND attempts >= max_attempts \
         RETURNING event_id, attempts, tenant_id, connection_id",
    )
    .bind(job_id.to_string())
    .bind(task_id.to_string())
    .bind(now)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err)?;
    let Some(row) = row else {
        return Ok(Start::Stale);
    };
    let attempts: i64 = get(&row, "attempts")?;
    let audit = NewAudit {
        event_id: get(&row, "event_id")?,
        job_id: Some(job_id.to_string()),
        step: "failed".into(),
        message: format!(
            "Gave up after {attempts} attempts: the worker running the last attempt stopped without finishing"
        ),
        ..NewAudit::default()
    };
    insert_audit(&mut *conn, &scope_of(&row)?, &audit, now).await?;
    Ok(Start::GaveUp)
}

/// [`Store::finish`] on `conn`, inside the caller's transaction. [`StoreError::NotRunning`]
/// changes nothing, so the transaction can go on for the other writes it holds.
#[allow(clippy::too_many_arguments)] // the writer's op fields, passed through as they are
pub(crate) async fn finish_in(
    conn: &mut AnyConnection,
    backend: Backend,
    queue: &str,
    retry: &RetryPolicy,
    job_id: &str,
    task_id: &str,
    outcome: &JobOutcome,
    now: UnixMillis,
) -> Result<JobState, StoreError> {
    let lock = match backend {
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    };
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT attempts, max_attempts, event_id, run_at, tenant_id, connection_id FROM sync_jobs \
         WHERE id = $1 AND task_id = $2 AND state = 'running'{lock}"
    )))
    .bind(job_id.to_string())
    .bind(task_id.to_string())
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err)?;
    let Some(row) = row else {
        return Err(StoreError::NotRunning(job_id.to_string()));
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

    // Another attempt to come: its apalis task, due at `run_at`, pushed in this transaction.
    let next = matches!(state, JobState::Queued | JobState::Waiting)
        .then(|| NewTask::new(job_id, &scope, run_at));
    let n = sqlx::query(
        "UPDATE sync_jobs SET state = $3, run_at = $4, attempts = $5, last_error = $6, \
         locked_by = NULL, task_id = $8, updated_at = $7 \
         WHERE id = $1 AND task_id = $2 AND state = 'running'",
    )
    .bind(job_id.to_string())
    .bind(task_id.to_string())
    .bind(state.as_str())
    .bind(run_at)
    .bind(i64::from(new_attempts))
    .bind(last_error)
    .bind(now)
    .bind(
        next.as_ref()
            .map_or_else(|| task_id.to_string(), |t| t.id.clone()),
    )
    .execute(&mut *conn)
    .await
    .map_err(db_err)?
    .rows_affected();
    if n == 0 {
        return Err(StoreError::NotRunning(job_id.to_string()));
    }
    if let Some(mut task) = next {
        prioritise_in(&mut *conn, backend, std::slice::from_mut(&mut task)).await?;
        push_tasks_in(&mut *conn, backend, queue, &[task]).await?;
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
        let (actual, created) =
            insert_job(&mut tx, db.backend, &db.queue, &self.scope, &id, &job, now).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(created.then_some(actual))
    }
}

impl Store {
    /// The apalis queue (`job_type`) this store's tasks go to.
    pub fn queue(&self) -> &str {
        &self.db.queue
    }

    /// Deletes finished apalis tasks older than `older_than_secs` (see `tasks::vacuum_in`); the
    /// worker schedules it hourly. Returns how many.
    pub async fn vacuum_tasks(&self, older_than_secs: i64) -> Result<u64, StoreError> {
        let _guard = self.db.write_guard().await;
        let mut tx = self.db.begin_write_as(Rls::AllTenants).await?;
        let n = vacuum_in(&mut tx, self.db.backend, &self.db.queue, older_than_secs).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(n)
    }

    /// Starts the job an apalis task carries: running under `task_id`, one more attempt, with
    /// `worker` (the apalis worker's name) recorded. Goes through the group-commit writer, so on
    /// SQLite it shares a commit with the intake and the other workers' writes.
    pub async fn start(
        &self,
        job_id: &str,
        task_id: &str,
        worker: &str,
    ) -> Result<Start, StoreError> {
        self.write_op(|reply| WriteOp::Start {
            job_id: job_id.to_string(),
            task_id: task_id.to_string(),
            worker: worker.to_string(),
            reply,
        })
        .await
    }

    /// Applies a handler's outcome to a job running under `task_id` and appends an audit entry.
    /// Returns the job's new state.
    ///
    /// - `Succeeded` → succeeded.
    /// - `Retry` → queued after `after_ms` or the retry schedule (a new apalis task, due then), or
    ///   failed when the attempts are exhausted.
    /// - `Wait` → waiting until `after_ms` from now (a new task, due then); the attempt is given
    ///   back, since waiting for a person is not a failure of the job (the caller decides when
    ///   waiting becomes failure).
    /// - `Failed` → failed.
    ///
    /// The state change, its next task and its audit entry are committed together, by the
    /// group-commit writer (with whatever else is pending), before this returns.
    ///
    /// [`StoreError::NotRunning`] if the job is no longer running under this task (it was
    /// replayed meanwhile, or a re-run of the task already finished it).
    pub async fn finish(
        &self,
        job_id: &str,
        task_id: &str,
        outcome: JobOutcome,
    ) -> Result<JobState, StoreError> {
        self.write_op(|reply| WriteOp::Finish {
            job_id: job_id.to_string(),
            task_id: task_id.to_string(),
            outcome,
            reply,
        })
        .await
    }

    /// Moves a job that was not started (its connection is at its cap of jobs in flight, or its
    /// NetSuite account at its concurrency limit) to a new task due `after_ms` from now. No
    /// attempt is used and no audit entry written: nothing happened to the job. A job still
    /// `running` under `task_id` is one whose worker died (apalis re-ran its task): it moves too,
    /// or nothing would ever run it again. Returns the new task, or `None` when `task_id` no
    /// longer carried the job.
    pub async fn defer(
        &self,
        job_id: &str,
        task_id: &str,
        after_ms: i64,
    ) -> Result<Option<String>, StoreError> {
        // Through the group-commit writer: on SQLite a deferral of its own was a commit under the
        // one write lock, taking turns with the jobs' writes it made way for.
        self.write_op(|reply| WriteOp::Defer {
            job_id: job_id.to_string(),
            task_id: task_id.to_string(),
            after_ms,
            reply,
        })
        .await
    }

    /// Makes a task put off by [`Store::defer`] due now, e.g. once its connection has a slot
    /// again. Returns whether it was still waiting to be claimed (one already claimed, or gone,
    /// is left alone).
    pub async fn pull_forward(&self, task_id: &str) -> Result<bool, StoreError> {
        self.write_op(|reply| WriteOp::PullForward {
            task_id: task_id.to_string(),
            reply,
        })
        .await
    }

    /// Number of jobs in each state across every tenant (every state listed, zeros included):
    /// the service's own gauges, no tenant's data.
    pub async fn job_counts_all(&self) -> Result<Vec<(JobState, i64)>, StoreError> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM sync_jobs GROUP BY state")
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
            "SELECT MIN(run_at) AS oldest FROM sync_jobs WHERE state = 'queued' AND run_at <= $1",
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

impl crate::scope::TenantStore {
    /// Jobs by state for each of `connections` (this tenant's; others' IDs count nothing), in
    /// one query: what a page of connections shows, loaded once per page.
    pub async fn job_counts_by_connection(
        &self,
        connections: &[mlc_core::ConnectionId],
    ) -> Result<std::collections::HashMap<mlc_core::ConnectionId, Vec<(JobState, i64)>>, StoreError>
    {
        let mut out = std::collections::HashMap::new();
        for chunk in connections.chunks(500) {
            let list = numbered_params(2, chunk.len(), false);
            let sql = format!(
                "SELECT connection_id, state, COUNT(*) AS n FROM sync_jobs \
                 WHERE tenant_id = $1 AND connection_id IN ({list}) GROUP BY connection_id, state"
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(self.scope.tenant_id().as_str().to_string());
            for c in chunk {
                q = q.bind(c.as_str().to_string());
            }
            let rows = q
                .fetch_all(
                    &mut *self
                        .store
                        .db
                        .read_tenant(self.scope.tenant_id().as_str())
                        .await?,
                )
                .await
                .map_err(db_err)?;
            for c in chunk {
                let mine: Vec<_> = rows
                    .iter()
                    .filter(|r| get::<String>(r, "connection_id").is_ok_and(|id| id == c.as_str()))
                    .cloned()
                    .collect();
                out.insert(c.clone(), counts_by_state(&mine)?);
            }
        }
        Ok(out)
    }
}

fn scope_of(row: &sqlx::any::AnyRow) -> Result<ConnectionScope, StoreError> {
    ConnectionScope::from_row(
        &get::<String>(row, "tenant_id")?,
        &get::<String>(row, "connection_id")?,
    )
}

impl ConnectionStore {
    /// Replays the job(s) of one event: queued now with the attempts reset, on a fresh apalis
    /// task, audited `replayed` (the job's history stays in the audit log). A job currently
    /// running is left alone. Returns whether anything was requeued.
    pub async fn requeue_event(&self, event_id: &str) -> Result<bool, StoreError> {
        let n = self
            .requeue(
                "(event_id = $1 OR id = (SELECT job_id FROM events \
                  WHERE event_id = $1 AND tenant_id = $2 AND connection_id = $3))",
                vec![event_id.to_string()],
                "Replay requested: job queued again with its attempts reset".into(),
                None,
            )
            .await?;
        Ok(n > 0)
    }

    /// Replays the jobs of `event_ids` as one batch (see [`ConnectionStore::requeue_event`]):
    /// each is marked with `batch`, so [`ConnectionStore::replay_progress`] follows it. Jobs
    /// running now are left alone. Returns how many were queued.
    pub async fn requeue_events_in_batch(
        &self,
        event_ids: &[String],
        batch: &str,
    ) -> Result<u64, StoreError> {
        let mut queued = 0;
        // Bounded statements: one chunk's IDs are bound as parameters.
        for chunk in event_ids.chunks(500) {
            let list = numbered_params(1, chunk.len(), false);
            let (t, c) = (chunk.len() + 1, chunk.len() + 2);
            queued += self
                .requeue(
                    &format!(
                        "id IN (SELECT job_id FROM events WHERE tenant_id = ${t} \
                         AND connection_id = ${c} AND event_id IN ({list}))"
                    ),
                    chunk.to_vec(),
                    format!(
                        "Replay requested (batch {batch}): job queued again with its attempts reset"
                    ),
                    Some(batch),
                )
                .await?;
        }
        Ok(queued)
    }

    /// The jobs of a replay batch by state (every state listed, zeros included); all zeros for
    /// a batch this connection does not have.
    pub async fn replay_progress(&self, batch: &str) -> Result<Vec<(JobState, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT state, COUNT(*) AS n FROM sync_jobs \
             WHERE tenant_id = $1 AND connection_id = $2 AND replay_batch = $3 GROUP BY state",
        )
        .bind(self.scope.t())
        .bind(self.scope.c())
        .bind(batch.to_string())
        .fetch_all(&mut *self.store.db.read(&self.scope).await?)
        .await
        .map_err(db_err)?;
        counts_by_state(&rows)
    }

    /// Replays every job in `state` (last changed at or after `since`, when given): queued now with
    /// attempts reset, on fresh apalis tasks, each audited `replayed`. Running jobs are never
    /// requeued (`Running` → 0).
    pub async fn requeue_where(
        &self,
        state: JobState,
        since: Option<UnixMillis>,
    ) -> Result<u64, StoreError> {
        if state == JobState::Running {
            return Ok(0);
        }
        let since = since.unwrap_or(i64::MIN);
        self.requeue(
            &format!("state = '{}' AND updated_at >= {since}", state.as_str()),
            Vec::new(),
            format!("Replay of {state} jobs requested: job queued again with its attempts reset"),
            None,
        )
        .await
    }

    /// Requeues this connection's jobs matching `condition` (SQL over `jobs`; `binds` are
    /// `$1`…`$n`, then the tenant and connection) that are not running, marked with `batch`
    /// (or with none).
    async fn requeue(
        &self,
        condition: &str,
        binds: Vec<String>,
        message: String,
        batch: Option<&str>,
    ) -> Result<u64, StoreError> {
        let now = now_millis();
        let db = &self.store.db;
        let _guard = db.write_guard().await;
        let mut tx = db
            .begin_write_as(Rls::Tenant(self.scope.tenant_id().as_str()))
            .await?;
        let (t, c) = (
            format!("${}", binds.len() + 1),
            format!("${}", binds.len() + 2),
        );
        let sql = format!(
            "SELECT id, event_id FROM sync_jobs WHERE tenant_id = {t} AND connection_id = {c} \
             AND state <> 'running' AND {condition}"
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for b in binds {
            q = q.bind(b);
        }
        let rows = q
            .bind(self.scope.t())
            .bind(self.scope.c())
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?;
        let mut tasks = Vec::with_capacity(rows.len());
        for row in &rows {
            let job_id: String = get(row, "id")?;
            let task = NewTask::new(&job_id, &self.scope, now);
            sqlx::query(
                "UPDATE sync_jobs SET state = 'queued', run_at = $2, attempts = 0, locked_by = NULL, \
                 last_error = NULL, task_id = $3, updated_at = $2, replay_batch = $6 \
                 WHERE id = $1 AND tenant_id = $4 AND connection_id = $5",
            )
            .bind(job_id.clone())
            .bind(now)
            .bind(task.id.clone())
            .bind(self.scope.t())
            .bind(self.scope.c())
            .bind(batch.map(str::to_string))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            let audit = NewAudit {
                event_id: get(row, "event_id")?,
                job_id: Some(job_id),
                step: "replayed".into(),
                message: message.clone(),
                ..NewAudit::default()
            };
            insert_audit(&mut tx, &self.scope, &audit, now).await?;
            tasks.push(task);
        }
        prioritise_in(&mut tx, db.backend, &mut tasks).await?;
        push_tasks_in(&mut tx, db.backend, &db.queue, &tasks).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(rows.len() as u64)
    }

    /// Whether any job of this connection waits (one indexed read): lets a caller skip a wake-up
    /// write when nothing could be woken.
    pub async fn has_waiting_jobs(&self) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT 1 AS one FROM sync_jobs WHERE tenant_id = $1 AND connection_id = $2 \
             AND state = 'waiting' LIMIT 1",
        )
        .bind(self.scope.t())
        .bind(self.scope.c())
        .fetch_optional(&mut *self.store.db.read(&self.scope).await?)
        .await
        .map_err(db_err)?;
        Ok(row.is_some())
    }

    /// Makes waiting jobs whose `last_error` contains `matching` (case-sensitive) runnable now,
    /// e.g. after a person added the missing product mapping: queued again, their apalis tasks
    /// pulled forward in the same transaction, so a worker takes them at its next poll. Returns
    /// how many.
    pub async fn wake_waiting_jobs(&self, matching: &str) -> Result<u64, StoreError> {
        let now = now_millis();
        let db = &self.store.db;
        let contains = match db.backend {
            Backend::Sqlite => "instr(last_error, $2) > 0",
            Backend::Postgres => "strpos(last_error, $2) > 0",
        };
        let sql = format!(
            "UPDATE sync_jobs SET state = 'queued', run_at = $1, updated_at = $1 \
             WHERE state = 'waiting' AND run_at > $1 AND {contains} \
               AND tenant_id = $3 AND connection_id = $4 \
             RETURNING task_id"
        );
        let _guard = db.write_guard().await;
        let mut tx = db
            .begin_write_as(Rls::Tenant(self.scope.tenant_id().as_str()))
            .await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(matching.to_string())
            .bind(self.scope.t())
            .bind(self.scope.c())
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?;
        let tasks: Vec<String> = rows
            .iter()
            .filter_map(|r| get::<Option<String>>(r, "task_id").ok().flatten())
            .collect();
        pull_forward_in(&mut tx, db.backend, &db.queue, &tasks).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(rows.len() as u64)
    }

    /// Number of jobs in each state (every state listed, zeros included).
    pub async fn job_counts(&self) -> Result<Vec<(JobState, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT state, COUNT(*) AS n FROM sync_jobs \
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
            "SELECT {JOB_COLUMNS} FROM sync_jobs WHERE id = $1 AND tenant_id = $2 AND connection_id = $3"
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
            "SELECT {JOB_COLUMNS} FROM sync_jobs \
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
