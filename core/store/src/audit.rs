//! The append-only audit log. There is deliberately no update or delete: the database refuses
//! both with triggers too.

use crate::db::{audit_from_row, db_err};
use crate::events::WriteOp;
use crate::model::{AuditEntry, NewAudit, StoreError};
use crate::scope::ConnectionStore;

impl ConnectionStore {
    /// Appends an entry; returns its ID. Committed before this returns, by the group-commit
    /// writer together with whatever else is pending (a handler's entries cost no commit of
    /// their own). One caller's entries keep their order: each waits for the one before.
    pub async fn append_audit(&self, entry: NewAudit) -> Result<i64, StoreError> {
        self.store
            .write_op(|reply| WriteOp::Audit {
                scope: self.scope.clone(),
                entry,
                reply,
            })
            .await
    }

    /// Every entry about an event (including its jobs' entries), oldest first.
    pub async fn audit_for_event(&self, event_id: &str) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at, event_id, job_id, stripe_object_id, step, message, data \
             FROM audit WHERE event_id = $1 AND tenant_id = $2 AND connection_id = $3 ORDER BY id",
        )
        .bind(event_id.to_string())
        .bind(self.scope.t())
        .bind(self.scope.c())
        .fetch_all(&mut *self.store.db.read(&self.scope).await?)
        .await
        .map_err(db_err)?;
        rows.iter().map(audit_from_row).collect()
    }

    /// Every entry about a Stripe object (a product's mapping changes, …), oldest first.
    pub async fn audit_for_object(&self, object_id: &str) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at, event_id, job_id, stripe_object_id, step, message, data \
             FROM audit WHERE stripe_object_id = $1 AND tenant_id = $2 AND connection_id = $3 \
             ORDER BY id",
        )
        .bind(object_id.to_string())
        .bind(self.scope.t())
        .bind(self.scope.c())
        .fetch_all(&mut *self.store.db.read(&self.scope).await?)
        .await
        .map_err(db_err)?;
        rows.iter().map(audit_from_row).collect()
    }

    /// Every entry about a job, oldest first.
    pub async fn audit_for_job(&self, job_id: &str) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at, event_id, job_id, stripe_object_id, step, message, data \
             FROM audit WHERE job_id = $1 AND tenant_id = $2 AND connection_id = $3 ORDER BY id",
        )
        .bind(job_id.to_string())
        .bind(self.scope.t())
        .bind(self.scope.c())
        .fetch_all(&mut *self.store.db.read(&self.scope).await?)
        .await
        .map_err(db_err)?;
        rows.iter().map(audit_from_row).collect()
    }
}
