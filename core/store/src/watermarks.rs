//! Sync watermarks: how far each periodic sync of a connection got, kept across restarts.

use mlc_core::now_millis;

use crate::db::{db_err, get};
use crate::model::StoreError;
use crate::scope::ConnectionStore;

impl ConnectionStore {
    /// The stored value of this connection's watermark `name`, if the sync ever set it.
    pub async fn get_watermark(&self, name: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT value FROM sync_watermarks \
             WHERE name = $1 AND tenant_id = $2 AND connection_id = $3",
        )
        .bind(name.to_string())
        .bind(self.scope.t())
        .bind(self.scope.c())
        .fetch_optional(&mut *self.store.db.read(&self.scope).await?)
        .await
        .map_err(db_err)?;
        row.as_ref().map(|r| get(r, "value")).transpose()
    }

    /// Sets this connection's watermark `name` to `value` (the caller decides what "later"
    /// means; the value is opaque text here).
    pub async fn set_watermark(&self, name: &str, value: &str) -> Result<(), StoreError> {
        let _guard = self.store.db.write_guard().await;
        let mut conn = self.store.db.write_one(&self.scope).await?;
        sqlx::query(
            "INSERT INTO sync_watermarks (name, value, updated_at, tenant_id, connection_id) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (tenant_id, connection_id, name) DO UPDATE SET value = excluded.value, \
             updated_at = excluded.updated_at",
        )
        .bind(name.to_string())
        .bind(value.to_string())
        .bind(now_millis())
        .bind(self.scope.t())
        .bind(self.scope.c())
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
        conn.done().await?;
        Ok(())
    }
}
