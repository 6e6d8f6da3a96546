//! Sync watermarks: how far each periodic sync got, kept across restarts.

use mlc_core::now_millis;

use crate::db::{db_err, get};
use crate::model::StoreError;
use crate::store::Store;

impl Store {
    /// The stored value of watermark `name`, if the sync ever set it.
    pub async fn get_watermark(&self, name: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT value FROM sync_watermarks WHERE name = $1")
            .bind(name.to_string())
            .fetch_optional(&self.db.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(|r| get(r, "value")).transpose()
    }

    /// Sets watermark `name` to `value` (the caller decides what "later" means; the value is
    /// opaque text here).
    pub async fn set_watermark(&self, name: &str, value: &str) -> Result<(), StoreError> {
        let _guard = self.db.write_guard().await;
        sqlx::query(
            "INSERT INTO sync_watermarks (name, value, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value, \
             updated_at = excluded.updated_at",
        )
        .bind(name.to_string())
        .bind(value.to_string())
        .bind(now_millis())
        .execute(&self.db.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }
}
