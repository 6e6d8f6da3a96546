//! The append-only audit log. There is deliberately no update or delete: the database refuses
//! both with triggers too.

use mlc_core::now_millis;

use crate::db::{audit_from_row, db_err, insert_audit};
use crate::model::{AuditEntry, NewAudit, StoreError};
use crate::store::Store;

impl Store {
    /// Appends an entry; returns its ID.
    pub async fn append_audit(&self, entry: NewAudit) -> Result<i64, StoreError> {
        let now = now_millis();
        let _guard = self.db.write_guard().await;
        let mut conn = self.db.pool.acquire().await.map_err(db_err)?;
        insert_audit(&mut conn, &entry, now).await
    }

    /// Every entry about an event (including its jobs' entries), oldest first.
    pub async fn audit_for_event(&self, event_id: &str) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at, event_id, job_id, stripe_object_id, step, message, data \
             FROM audit WHERE event_id = $1 ORDER BY id",
        )
        .bind(event_id.to_string())
        .fetch_all(&self.db.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(audit_from_row).collect()
    }

    /// Every entry about a job, oldest first.
    pub async fn audit_for_job(&self, job_id: &str) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at, event_id, job_id, stripe_object_id, step, message, data \
             FROM audit WHERE job_id = $1 ORDER BY id",
        )
        .bind(job_id.to_string())
        .fetch_all(&self.db.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(audit_from_row).collect()
    }
}
