//! The credentials table: each connection's secrets, sealed under its tenant's data key, which is
//! itself wrapped by the master key (see [`crate::sealed`]).

use std::collections::BTreeMap;

use mlc_core::now_millis;
use secrecy::SecretString;
use serde::Serialize;

use crate::db::{Rls, db_err, get};
use crate::model::StoreError;
use crate::scope::ConnectionStore;
use crate::sealed::{self, DataKey, FieldAad, MasterKey, SealError};
use crate::store::Store;

/// A stored credential's name and when it was last set (never its value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CredentialInfo {
    pub name: String,
    pub updated_at: i64,
}

impl ConnectionStore {
    fn aad<'a>(&'a self, field: &'a str) -> FieldAad<'a> {
        FieldAad {
            tenant_id: self.scope.tenant_id().as_str(),
            connection_id: self.scope.connection_id().as_str(),
            field,
        }
    }

    /// Stores (or replaces) a sealed credential as it is (no key involved: tests and tools).
    pub async fn put_credential(&self, name: &str, sealed: Vec<u8>) -> Result<(), StoreError> {
        let db = &self.store.db;
        let _guard = db.write_guard().await;
        let mut conn = db.write_one(&self.scope).await?;
        sqlx::query(
            "INSERT INTO credentials (tenant_id, connection_id, name, ciphertext, updated_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (tenant_id, connection_id, name) DO UPDATE SET \
             ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
        )
        .bind(self.scope.t())
        .bind(self.scope.c())
        .bind(name.to_string())
        .bind(sealed)
        .bind(now_millis())
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
        conn.done().await
    }

    /// The sealed bytes of a credential, if stored.
    pub async fn get_credential(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let row = sqlx::query(
            "SELECT ciphertext FROM credentials \
             WHERE tenant_id = $1 AND connection_id = $2 AND name = $3",
        )
        .bind(self.scope.t())
        .bind(self.scope.c())
        .bind(name.to_string())
        .fetch_optional(&mut *self.store.db.read(&self.scope).await?)
        .await
        .map_err(db_err)?;
        row.as_ref().map(|r| get(r, "ciphertext")).transpose()
    }

    /// Names and update times of this connection's credentials.
    pub async fn list_credential_names(&self) -> Result<Vec<CredentialInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, updated_at FROM credentials \
             WHERE tenant_id = $1 AND connection_id = $2 ORDER BY name",
        )
        .bind(self.scope.t())
        .bind(self.scope.c())
        .fetch_all(&mut *self.store.db.read(&self.scope).await?)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok(CredentialInfo {
                    name: get(r, "name")?,
                    updated_at: get(r, "updated_at")?,
                })
            })
            .collect()
    }

    /// The tenant's data key, unwrapped; made (and stored wrapped) when the tenant has none.
    /// A master key that does not unwrap it is [`SealError::WrongKey`].
    async fn data_key(&self, master: &MasterKey, create: bool) -> Result<DataKey, SealError> {
        let tenant = self.scope.tenant_id().as_str();
        if let Some(wrapped) = self.wrapped_data_key().await? {
            return sealed::unwrap_data_key(master, tenant, &wrapped);
        }
        if !create {
            return Err(SealError::Malformed(format!(
                "connection {} has stored credentials but its tenant has no data key (they were \
                 copied from another tenant, or the key row was removed): set them again with \
                 `ml-connector credentials set … --tenant {tenant} --connection {}`",
                self.scope,
                self.scope.connection_id()
            )));
        }
        let key = DataKey::generate();
        let wrapped = sealed::wrap_data_key(master, tenant, &key)?;
        let db = &self.store.db;
        {
            let _guard = db.write_guard().await;
            let mut tx = db.begin_write_as(Rls::Tenant(tenant)).await?;
            let now = now_millis();
            sqlx::query(
                "INSERT INTO tenant_keys (tenant_id, wrapped_key, created_at, rotated_at) \
                 VALUES ($1, $2, $3, $3) ON CONFLICT (tenant_id) DO NOTHING",
            )
            .bind(self.scope.t())
            .bind(wrapped)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            tx.commit().await.map_err(db_err)?;
        }
        // Another writer may have made one first: whichever is stored is the key.
        let stored = self
            .wrapped_data_key()
            .await?
            .ok_or_else(|| SealError::Malformed("the tenant's data key was not stored".into()))?;
        sealed::unwrap_data_key(master, tenant, &stored)
    }

    async fn wrapped_data_key(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let row = sqlx::query("SELECT wrapped_key FROM tenant_keys WHERE tenant_id = $1")
            .bind(self.scope.t())
            .fetch_optional(&mut *self.store.db.read(&self.scope).await?)
            .await
            .map_err(db_err)?;
        row.as_ref().map(|r| get(r, "wrapped_key")).transpose()
    }

    /// Seals `plaintext` under the tenant's data key, bound to this connection and `name`, and
    /// stores it. The tenant's first credential makes its data key.
    pub async fn store_secret(
        &self,
        master: &MasterKey,
        name: &str,
        plaintext: &[u8],
    ) -> Result<(), SealError> {
        let key = self.data_key(master, true).await?;
        let sealed = sealed::seal(&key, &self.aad(name), plaintext)?;
        self.put_credential(name, sealed).await?;
        Ok(())
    }

    /// Every credential of this connection, opened. None stored → empty. Stored but no key →
    /// [`SealError::MissingKey`]; a key that does not unwrap the tenant's data key →
    /// [`SealError::WrongKey`]; a ciphertext bound to another connection, tenant or name →
    /// [`SealError::Misplaced`].
    pub async fn load_secrets(
        &self,
        master: Option<&MasterKey>,
    ) -> Result<BTreeMap<String, SecretString>, SealError> {
        let names = self.list_credential_names().await?;
        if names.is_empty() {
            return Ok(BTreeMap::new());
        }
        let master = master.ok_or(SealError::MissingKey)?;
        let key = self.data_key(master, false).await?;
        let mut out = BTreeMap::new();
        for info in names {
            if let Some(bytes) = self.get_credential(&info.name).await? {
                let secret = sealed::open_string(&key, &self.aad(&info.name), &bytes)?;
                out.insert(info.name, secret);
            }
        }
        Ok(out)
    }
}

impl Store {
    /// Re-wraps every tenant's data key from `old` to `new` master key in one transaction: the
    /// sealed credentials themselves are not touched (they are under the data keys). Either all
    /// tenants move or none do. Returns how many data keys moved.
    pub async fn rotate_master_key(
        &self,
        old: &MasterKey,
        new: &MasterKey,
    ) -> Result<usize, SealError> {
        let _guard = self.db.write_guard().await;
        let mut tx = self.db.begin_write_as(Rls::AllTenants).await?;
        let rows = sqlx::query("SELECT tenant_id, wrapped_key FROM tenant_keys ORDER BY tenant_id")
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?;
        let now = now_millis();
        for r in &rows {
            let tenant: String = get(r, "tenant_id")?;
            let wrapped: Vec<u8> = get(r, "wrapped_key")?;
            let key = sealed::unwrap_data_key(old, &tenant, &wrapped)?;
            let rewrapped = sealed::wrap_data_key(new, &tenant, &key)?;
            sqlx::query(
                "UPDATE tenant_keys SET wrapped_key = $1, rotated_at = $2 WHERE tenant_id = $3",
            )
            .bind(rewrapped)
            .bind(now)
            .bind(tenant)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(rows.len())
    }
}
