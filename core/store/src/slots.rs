//! Slots of the NetSuite concurrency budget. The budget belongs to the NetSuite account: every
//! connection and every instance that posts to one account shares its slots (not tenant-owned
//! rows: two tenants posting to one account share its limit).

use mlc_core::now_millis;

use crate::db::{db_err, get};
use crate::model::{Backend, StoreError};
use crate::store::Store;

impl Store {
    /// Makes the budget exactly `slots` wide (slots above it are removed once free).
    pub async fn ensure_netsuite_slots(
        &self,
        account: &str,
        slots: usize,
    ) -> Result<(), StoreError> {
        let _guard = self.db.write_guard().await;
        for slot in 0..slots as i64 {
            sqlx::query(
                "INSERT INTO netsuite_slots (account, slot, holder, expires_at) \
                 VALUES ($2, $1, NULL, 0) ON CONFLICT (account, slot) DO NOTHING",
            )
            .bind(slot)
            .bind(account.to_string())
            .execute(&self.db.pool)
            .await
            .map_err(db_err)?;
        }
        sqlx::query("DELETE FROM netsuite_slots WHERE slot >= $1 AND account = $2")
            .bind(slots as i64)
            .bind(account.to_string())
            .execute(&self.db.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    /// Takes a free (or expired) slot for `holder` until `lease_ms` from now; `None` when all
    /// are taken.
    pub async fn take_netsuite_slot(
        &self,
        account: &str,
        holder: &str,
        lease_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let now = now_millis();
        let lock = match self.db.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let _guard = self.db.write_guard().await;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE netsuite_slots SET holder = $1, expires_at = $2 WHERE account = $4 AND slot = (\
             SELECT slot FROM netsuite_slots WHERE account = $4 AND (holder IS NULL OR expires_at < $3) \
             ORDER BY slot LIMIT 1{lock}) RETURNING slot"
        )))
        .bind(holder.to_string())
        .bind(now.saturating_add(lease_ms))
        .bind(now)
        .bind(account.to_string())
        .fetch_optional(&self.db.pool)
        .await
        .map_err(db_err)?;
        row.as_ref().map(|r| get::<i64>(r, "slot")).transpose()
    }

    /// Gives a slot back (only if `holder` still holds it).
    pub async fn release_netsuite_slot(
        &self,
        account: &str,
        slot: i64,
        holder: &str,
    ) -> Result<(), StoreError> {
        let _guard = self.db.write_guard().await;
        sqlx::query(
            "UPDATE netsuite_slots SET holder = NULL, expires_at = 0 \
             WHERE slot = $1 AND holder = $2 AND account = $3",
        )
        .bind(slot)
        .bind(holder.to_string())
        .bind(account.to_string())
        .execute(&self.db.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    /// Slots held now (unexpired).
    pub async fn netsuite_slots_in_use(&self, account: &str) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM netsuite_slots \
             WHERE holder IS NOT NULL AND expires_at >= $1 AND account = $2",
        )
        .bind(now_millis())
        .bind(account.to_string())
        .fetch_one(&self.db.pool)
        .await
        .map_err(db_err)?;
        get(&row, "n")
    }
}
