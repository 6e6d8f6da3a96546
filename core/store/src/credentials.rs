//! The credentials table: sealed secrets by name (see [`crate::sealed`]).

use std::collections::BTreeMap;

use mlc_core::now_millis;
use secrecy::SecretString;
use serde::Serialize;

use crate::db::{db_err, get};
use crate::model::StoreError;
use crate::sealed::{self, KEY_CHECK_NAME, MasterKey, SealError};
use crate::store::Store;

/// A stored credential's name and when it was last set (never its value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CredentialInfo {
    pub name: String,
    pub updated_at: i64,
}

impl Store {
    /// Stores (or replaces) a sealed credential.
    pub async fn put_credential(&self, name: &str, sealed: Vec<u8>) -> Result<(), StoreError> {
        let _guard = self.db.write_guard().await;
        sqlx::query(
            "INSERT INTO credentials (name, ciphertext, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET ciphertext = excluded.ciphertext, \
             updated_at = excluded.updated_at",
        )
        .bind(name.to_string())
        .bind(sealed)
        .bind(now_millis())
        .execute(&self.db.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    /// The sealed bytes of a credential, if stored.
    pub async fn get_credential(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let row = sqlx::query("SELECT ciphertext FROM credentials WHERE name = $1")
            .bind(name.to_string())
            .fetch_optional(&self.db.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(|r| get(r, "ciphertext")).transpose()
    }

    /// Names and update times of the stored credentials (the key check is not listed).
    pub async fn list_credential_names(&self) -> Result<Vec<CredentialInfo>, StoreError> {
        let rows =
            sqlx::query("SELECT name, updated_at FROM credentials WHERE name <> $1 ORDER BY name")
                .bind(KEY_CHECK_NAME.to_string())
                .fetch_all(&self.db.pool)
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

    /// Seals `plaintext` under `key` and stores it as `name`. The first credential stored also
    /// stores the key check; later ones must use the same key ([`SealError::WrongKey`]).
    pub async fn store_secret(
        &self,
        key: &MasterKey,
        name: &str,
        plaintext: &[u8],
    ) -> Result<(), SealError> {
        match self.get_credential(KEY_CHECK_NAME).await? {
            Some(check) => sealed::check_key(key, &check)?,
            None => {
                self.put_credential(KEY_CHECK_NAME, sealed::key_check(key)?)
                    .await?
            }
        }
        self.put_credential(name, sealed::seal(key, name, plaintext)?)
            .await?;
        Ok(())
    }

    /// Every stored credential, opened. None stored → empty. Stored but no key →
    /// [`SealError::MissingKey`]; a key that does not open the key check → [`SealError::WrongKey`].
    pub async fn load_secrets(
        &self,
        key: Option<&MasterKey>,
    ) -> Result<BTreeMap<String, SecretString>, SealError> {
        let names = self.list_credential_names().await?;
        if names.is_empty() {
            return Ok(BTreeMap::new());
        }
        let key = key.ok_or(SealError::MissingKey)?;
        let check = self
            .get_credential(KEY_CHECK_NAME)
            .await?
            .ok_or(SealError::WrongKey)?;
        sealed::check_key(key, &check)?;
        let mut out = BTreeMap::new();
        for info in names {
            if let Some(bytes) = self.get_credential(&info.name).await? {
                let secret = sealed::open_string(key, &info.name, &bytes)?;
                out.insert(info.name, secret);
            }
        }
        Ok(out)
    }

    /// Re-seals every credential (and the key check) from `old` to `new` in one transaction:
    /// either all move to the new key or none do. Returns how many credentials moved.
    pub async fn reseal_all(&self, old: &MasterKey, new: &MasterKey) -> Result<usize, SealError> {
        let _guard = self.db.write_guard().await;
        let mut tx = self.db.begin_write().await?;
        let rows = sqlx::query("SELECT name, ciphertext FROM credentials ORDER BY name")
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?;
        let mut resealed = Vec::with_capacity(rows.len());
        for r in &rows {
            let name: String = get(r, "name")?;
            let bytes: Vec<u8> = get(r, "ciphertext")?;
            if name == KEY_CHECK_NAME {
                sealed::check_key(old, &bytes)?;
                resealed.push((name, sealed::key_check(new)?));
            } else {
                let plain = sealed::open(old, &name, &bytes)?;
                let sealed_new = sealed::seal(new, &name, &plain)?;
                resealed.push((name, sealed_new));
            }
        }
        let now = now_millis();
        let mut moved = 0;
        for (name, bytes) in resealed {
            if name != KEY_CHECK_NAME {
                moved += 1;
            }
            sqlx::query("UPDATE credentials SET ciphertext = $1, updated_at = $2 WHERE name = $3")
                .bind(bytes)
                .bind(now)
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(moved)
    }
}
