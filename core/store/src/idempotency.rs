//! Idempotency keys: the first answer to a keyed request is kept (24 hours), and a retry with
//! the same key and the same request gets it back instead of acting again. Per tenant: two
//! tenants' keys never meet.

use mlc_core::now_millis;

use crate::db::{Rls, db_err, get};
use crate::model::StoreError;
use crate::scope::TenantStore;

/// How long a key is remembered.
pub const IDEMPOTENCY_TTL_MS: i64 = 24 * 3_600_000;

/// What a keyed request should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyClaim {
    /// First use: act, then [`TenantStore::complete_idempotency_key`] (or release on failure).
    New,
    /// Done before: this was the answer.
    Replay(String),
    /// The first request with this key is still running.
    InProgress,
    /// The key was used for a different request.
    Mismatch,
}

impl TenantStore {
    /// Claims `key` for a request whose fingerprint is `request_hash`.
    pub async fn claim_idempotency_key(
        &self,
        key: &str,
        request_hash: &str,
    ) -> Result<IdempotencyClaim, StoreError> {
        let db = &self.store.db;
        let now = now_millis();
        let tenant = self.scope.tenant_id().as_str();
        let _guard = db.write_guard().await;
        let mut tx = db.begin_write_as(Rls::Tenant(tenant)).await?;
        sqlx::query(
            "DELETE FROM idempotency_keys WHERE tenant_id = $1 AND idem_key = $2 \
             AND created_at < $3",
        )
        .bind(tenant.to_string())
        .bind(key.to_string())
        .bind(now - IDEMPOTENCY_TTL_MS)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (tenant_id, idem_key, request_hash, response, created_at) \
             VALUES ($1, $2, $3, NULL, $4) ON CONFLICT (tenant_id, idem_key) DO NOTHING",
        )
        .bind(tenant.to_string())
        .bind(key.to_string())
        .bind(request_hash.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
        let claim = if inserted == 1 {
            IdempotencyClaim::New
        } else {
            let row = sqlx::query(
                "SELECT request_hash, response FROM idempotency_keys \
                 WHERE tenant_id = $1 AND idem_key = $2",
            )
            .bind(tenant.to_string())
            .bind(key.to_string())
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
            let hash: String = get(&row, "request_hash")?;
            let response: Option<String> = get(&row, "response")?;
            match response {
                _ if hash != request_hash => IdempotencyClaim::Mismatch,
                Some(r) => IdempotencyClaim::Replay(r),
                None => IdempotencyClaim::InProgress,
            }
        };
        tx.commit().await.map_err(db_err)?;
        Ok(claim)
    }

    /// Keeps the answer to a claimed key.
    pub async fn complete_idempotency_key(
        &self,
        key: &str,
        response: &str,
    ) -> Result<(), StoreError> {
        self.idempotency_write(
            "UPDATE idempotency_keys SET response = $3 WHERE tenant_id = $1 AND idem_key = $2",
            key,
            Some(response),
        )
        .await
    }

    /// Forgets a claimed key whose request failed, so a retry acts.
    pub async fn release_idempotency_key(&self, key: &str) -> Result<(), StoreError> {
        self.idempotency_write(
            "DELETE FROM idempotency_keys WHERE tenant_id = $1 AND idem_key = $2 \
             AND response IS NULL",
            key,
            None,
        )
        .await
    }

    async fn idempotency_write(
        &self,
        sql: &'static str,
        key: &str,
        response: Option<&str>,
    ) -> Result<(), StoreError> {
        let db = &self.store.db;
        let tenant = self.scope.tenant_id().as_str();
        let _guard = db.write_guard().await;
        let mut tx = db.begin_write_as(Rls::Tenant(tenant)).await?;
        let mut q = sqlx::query(sql)
            .bind(tenant.to_string())
            .bind(key.to_string());
        if let Some(r) = response {
            q = q.bind(r.to_string());
        }
        q.execute(&mut *tx).await.map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }
}
