//! Read models for the operator console (admin API, dashboard, `status`): activity over time,
//! the latest error of each kind, and what was posted for one Stripe object. The console shows
//! one connection, so every read model here is of one [`ConnectionStore`].

use mlc_core::UnixMillis;
use serde::Serialize;

use crate::db::{audit_from_row, db_err, get};
use crate::links::Posting;
use crate::model::{AuditEntry, Backend, StoreError};
use crate::scope::ConnectionStore;

/// Events received and NetSuite records posted in one time bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ActivityBucket {
    /// Start of the bucket, unix milliseconds.
    pub start: UnixMillis,
    pub received: i64,
    pub posted: i64,
}

impl ConnectionStore {
    /// This connection's events received and records posted per `bucket_ms` from `since` up to
    /// `until`, every bucket listed (zeros included), oldest first. Buckets are aligned to
    /// multiples of `bucket_ms`.
    pub async fn activity(
        &self,
        since: UnixMillis,
        until: UnixMillis,
        bucket_ms: i64,
    ) -> Result<Vec<ActivityBucket>, StoreError> {
        let bucket_ms = bucket_ms.max(1);
        let first = since.div_euclid(bucket_ms);
        let last = until.div_euclid(bucket_ms);
        let mut out: Vec<ActivityBucket> = (first..=last)
            .map(|b| ActivityBucket {
                start: b * bucket_ms,
                received: 0,
                posted: 0,
            })
            .collect();
        let mut conn = self.store.db.read(&self.scope).await?;
        // Integer division is floor for the non-negative timestamps stored here, on both backends.
        // Both tables carry the scope columns (and index them ahead of the timestamp).
        for (table, column, is_received) in [
            ("events", "received_at", true),
            ("postings", "created_at", false),
        ] {
            let sql = format!(
                "SELECT {column} / $1 AS b, COUNT(*) AS n FROM {table} \
                 WHERE {column} >= $2 AND {column} <= $3 \
                   AND tenant_id = $4 AND connection_id = $5 \
                 GROUP BY {column} / $1"
            );
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(bucket_ms)
                .bind(first * bucket_ms)
                .bind(until)
                .bind(self.scope.t())
                .bind(self.scope.c())
                .fetch_all(&mut *conn)
                .await
                .map_err(db_err)?;
            for row in &rows {
                let b: i64 = get(row, "b")?;
                let n: i64 = get(row, "n")?;
                if let Some(slot) = usize::try_from(b - first).ok().and_then(|i| out.get_mut(i)) {
                    if is_received {
                        slot.received = n;
                    } else {
                        slot.posted = n;
                    }
                }
            }
        }
        Ok(out)
    }

    /// This connection's newest `retried`, `waiting` or `failed` audit entry whose message
    /// contains `needle` (e.g. `"NetSuite: "` or `"Stripe: "`, the prefixes the pipeline gives
    /// its errors).
    pub async fn last_error_containing(
        &self,
        needle: &str,
    ) -> Result<Option<AuditEntry>, StoreError> {
        let contains = match self.store.db.backend {
            Backend::Sqlite => "instr(message, $1) > 0",
            Backend::Postgres => "strpos(message, $1) > 0",
        };
        let mut newest: Option<AuditEntry> = None;
        let mut conn = self.store.db.read(&self.scope).await?;
        // One indexed scan per step (newest first), so a long log of successes is never read.
        for step in ["retried", "waiting", "failed"] {
            let sql = format!(
                "SELECT id, at, event_id, job_id, stripe_object_id, step, message, data \
                 FROM audit WHERE step = $2 AND {contains} \
                   AND tenant_id = $3 AND connection_id = $4 \
                 ORDER BY id DESC LIMIT 1"
            );
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(needle.to_string())
                .bind(step)
                .bind(self.scope.t())
                .bind(self.scope.c())
                .fetch_optional(&mut *conn)
                .await
                .map_err(db_err)?;
            if let Some(entry) = row.as_ref().map(audit_from_row).transpose()?
                && newest.as_ref().is_none_or(|n| n.id < entry.id)
            {
                newest = Some(entry);
            }
        }
        Ok(newest)
    }

    /// This connection's succeeded jobs whose last run only recorded the event (step
    /// `processed`, written by the accept-only handler of an instance without Stripe and NetSuite
    /// credentials): done, but nothing went to NetSuite. A job replayed later through the
    /// pipeline no longer counts.
    pub async fn count_accepted_only_jobs(&self) -> Result<i64, StoreError> {
        // The runner's own `succeeded` entry follows the handler's last step; skip it.
        // The subquery reads the job's own audit entries: same tenant and connection as the job.
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM sync_jobs j \
             WHERE j.state = 'succeeded' AND j.tenant_id = $1 AND j.connection_id = $2 AND \
             (SELECT a.step FROM audit a WHERE a.job_id = j.id AND a.step <> 'succeeded' \
                AND a.tenant_id = j.tenant_id AND a.connection_id = j.connection_id \
              ORDER BY a.id DESC LIMIT 1) = 'processed'",
        )
        .bind(self.scope.t())
        .bind(self.scope.c())
        .fetch_one(&mut *self.store.db.read(&self.scope).await?)
        .await
        .map_err(db_err)?;
        get(&row, "n")
    }

    /// The NetSuite records this connection posted for a Stripe object (invoice, payment, fee
    /// journal).
    pub async fn postings_for_object(
        &self,
        stripe_object_id: &str,
    ) -> Result<Vec<Posting>, StoreError> {
        self.postings_where("stripe_object_id = $1", stripe_object_id)
            .await
    }
}
