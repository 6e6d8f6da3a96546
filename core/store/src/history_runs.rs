//! Onboarding runs over a connection's Stripe history (`history_runs`): the dry run ("see if we
//! fit": what the last days would post, written nowhere but here) and the go-live backfill
//! (those days queued as events). Each run is a job of the connection; this row is its progress
//! (`scanned`, `queued`) and, once done, its report, so any instance can run it and any page
//! can follow it.

use mlc_core::now_millis;
use uuid::Uuid;

use crate::db::{Rls, db_err, get};
use crate::model::{NewJob, StoreError};
use crate::scope::ConnectionStore;

/// The job kind that runs a history run (its payload names the run).
pub const HISTORY_RUN_JOB: &str = "history_run";

/// What a run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryRunKind {
    /// Nothing posted: a report of what would be.
    DryRun,
    /// The days queued as events, posted as live ones are.
    Backfill,
    /// Stripe's balance against NetSuite's records for a period (`since`, `days`).
    Reconcile,
}

impl HistoryRunKind {
    pub fn as_str(self) -> &'static str {
        match self {
            HistoryRunKind::DryRun => "dry_run",
            HistoryRunKind::Backfill => "backfill",
            HistoryRunKind::Reconcile => "reconcile",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "dry_run" => Some(HistoryRunKind::DryRun),
            "backfill" => Some(HistoryRunKind::Backfill),
            "reconcile" => Some(HistoryRunKind::Reconcile),
            _ => None,
        }
    }
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryRunState {
    Queued,
    Running,
    Succeeded,
    Failed,
}

impl HistoryRunState {
    pub fn as_str(self) -> &'static str {
        match self {
            HistoryRunState::Queued => "queued",
            HistoryRunState::Running => "running",
            HistoryRunState::Succeeded => "succeeded",
            HistoryRunState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "queued" => HistoryRunState::Queued,
            "running" => HistoryRunState::Running,
            "succeeded" => HistoryRunState::Succeeded,
            "failed" => HistoryRunState::Failed,
            other => {
                return Err(StoreError::Database(format!(
                    "unknown history run state `{other}`"
                )));
            }
        })
    }

    pub fn is_done(self) -> bool {
        matches!(self, HistoryRunState::Succeeded | HistoryRunState::Failed)
    }
}

/// One run, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRun {
    pub id: String,
    pub kind: HistoryRunKind,
    pub state: HistoryRunState,
    pub days: i64,
    /// The start of the window (Unix ms).
    pub since: i64,
    /// Stripe objects looked at so far.
    pub scanned: i64,
    /// Events queued (a backfill).
    pub queued: i64,
    /// The report (JSON), once done.
    pub report: Option<String>,
    pub error: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

const COLUMNS: &str = "id, kind, state, days, since, scanned, queued, report, error, created_at, \
    started_at, finished_at";

fn from_row(row: &sqlx::any::AnyRow) -> Result<HistoryRun, StoreError> {
    let kind: String = get(row, "kind")?;
    let state: String = get(row, "state")?;
    Ok(HistoryRun {
        id: get(row, "id")?,
        kind: HistoryRunKind::parse(&kind)
            .ok_or_else(|| StoreError::Database(format!("unknown history run kind `{kind}`")))?,
        state: HistoryRunState::parse(&state)?,
        days: get(row, "days")?,
        since: get(row, "since")?,
        scanned: get(row, "scanned")?,
        queued: get(row, "queued")?,
        report: get(row, "report")?,
        error: get(row, "error")?,
        created_at: get(row, "created_at")?,
        started_at: get(row, "started_at")?,
        finished_at: get(row, "finished_at")?,
    })
}

impl ConnectionStore {
    /// Records a new run and queues its job (one transaction: a run always has its job).
    pub async fn start_history_run(
        &self,
        kind: HistoryRunKind,
        days: i64,
        since: i64,
        max_attempts: i32,
    ) -> Result<HistoryRun, StoreError> {
        let id = Uuid::now_v7().to_string();
        let now = now_millis();
        let db = &self.store.db;
        {
            let _guard = db.write_guard().await;
            let mut tx = db
                .begin_write_as(Rls::Tenant(self.scope.tenant_id().as_str()))
                .await?;
            sqlx::query(
                "INSERT INTO history_runs (id, tenant_id, connection_id, kind, state, days, since, \
                 scanned, queued, report, error, created_at, started_at, finished_at, updated_at) \
                 VALUES ($1, $2, $3, $4, 'queued', $5, $6, 0, 0, NULL, NULL, $7, NULL, NULL, $7)",
            )
            .bind(id.clone())
            .bind(self.scope.t())
            .bind(self.scope.c())
            .bind(kind.as_str().to_string())
            .bind(days)
            .bind(since)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            let job = NewJob {
                kind: HISTORY_RUN_JOB.to_string(),
                event_id: None,
                payload: serde_json::json!({"run_id": id, "kind": kind.as_str()}),
                dedupe_key: format!("history_run:{id}"),
                max_attempts: max_attempts.max(1),
                run_at: now,
            };
            let job_id = Uuid::now_v7().to_string();
            crate::queue::insert_job(
                &mut tx,
                db.backend,
                &db.queue,
                &self.scope,
                &job_id,
                &job,
                now,
            )
            .await?;
            tx.commit().await.map_err(db_err)?;
        }
        self.get_history_run(&id)
            .await?
            .ok_or_else(|| StoreError::Database("the new history run is not readable".into()))
    }

    /// One run of this connection.
    pub async fn get_history_run(&self, id: &str) -> Result<Option<HistoryRun>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM history_runs WHERE id = $1 AND tenant_id = $2 AND connection_id = $3"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.to_string())
            .bind(self.scope.t())
            .bind(self.scope.c())
            .fetch_optional(&mut *self.store.db.read(&self.scope).await?)
            .await
            .map_err(db_err)?;
        row.as_ref().map(from_row).transpose()
    }

    /// The connection's latest run of a kind.
    pub async fn latest_history_run(
        &self,
        kind: HistoryRunKind,
    ) -> Result<Option<HistoryRun>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM history_runs WHERE tenant_id = $1 AND connection_id = $2 \
             AND kind = $3 ORDER BY created_at DESC, id DESC LIMIT 1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(self.scope.t())
            .bind(self.scope.c())
            .bind(kind.as_str().to_string())
            .fetch_optional(&mut *self.store.db.read(&self.scope).await?)
            .await
            .map_err(db_err)?;
        row.as_ref().map(from_row).transpose()
    }

    /// Marks a run running (again, after a crash: its counters start over) and says whether it
    /// should run: `false` once it is done.
    pub async fn begin_history_run(&self, id: &str) -> Result<bool, StoreError> {
        let now = now_millis();
        let changed = self
            .history_write(
                "UPDATE history_runs SET state = 'running', scanned = 0, queued = 0, \
                 started_at = $4, updated_at = $4 \
                 WHERE id = $1 AND tenant_id = $2 AND connection_id = $3 \
                 AND state IN ('queued', 'running')",
                id,
                |q| q.bind(now),
            )
            .await?;
        Ok(changed == 1)
    }

    /// Progress: how many objects looked at and events queued so far.
    pub async fn history_run_progress(
        &self,
        id: &str,
        scanned: i64,
        queued: i64,
    ) -> Result<(), StoreError> {
        let now = now_millis();
        self.history_write(
            "UPDATE history_runs SET scanned = $4, queued = $5, updated_at = $6 \
             WHERE id = $1 AND tenant_id = $2 AND connection_id = $3",
            id,
            |q| q.bind(scanned).bind(queued).bind(now),
        )
        .await?;
        Ok(())
    }

    /// The end of a run: its report (succeeded) or what went wrong (failed).
    pub async fn finish_history_run(
        &self,
        id: &str,
        outcome: Result<&serde_json::Value, &str>,
    ) -> Result<(), StoreError> {
        let now = now_millis();
        let (state, report, error) = match outcome {
            Ok(report) => ("succeeded", Some(report.to_string()), None),
            Err(e) => ("failed", None, Some(e.to_string())),
        };
        self.history_write(
            "UPDATE history_runs SET state = $4, report = $5, error = $6, finished_at = $7, \
             updated_at = $7 WHERE id = $1 AND tenant_id = $2 AND connection_id = $3",
            id,
            |q| q.bind(state).bind(report).bind(error).bind(now),
        )
        .await?;
        Ok(())
    }

    async fn history_write(
        &self,
        sql: &'static str,
        id: &str,
        bind: impl FnOnce(
            sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments>,
        ) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments>,
    ) -> Result<u64, StoreError> {
        let db = &self.store.db;
        let _guard = db.write_guard().await;
        let mut tx = db
            .begin_write_as(Rls::Tenant(self.scope.tenant_id().as_str()))
            .await?;
        let q = sqlx::query(sql)
            .bind(id.to_string())
            .bind(self.scope.t())
            .bind(self.scope.c());
        let changed = bind(q)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
        tx.commit().await.map_err(db_err)?;
        Ok(changed)
    }
}
