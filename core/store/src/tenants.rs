//! Tenants, their connections and their API keys.
//!
//! The operator's side (creating tenants, resolving a webhook route, loading every connection
//! for the registry) lives on [`Store`]; a tenant's own side (its connections, its keys) on
//! [`TenantStore`], which only a [`TenantScope`] opens.

use mlc_core::{ConnectionId, ConnectionStatus, TenantId, UnixMillis, WebhookRouteId, now_millis};
use rand::RngCore as _;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::db::{Rls, db_err, get};
use crate::model::StoreError;
use crate::scope::{ConnectionScope, TenantScope, TenantStore};
use crate::store::Store;

/// A company using the service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub created_at: UnixMillis,
}

/// One Stripe account posting into one NetSuite account, for one tenant.
#[derive(Debug, Clone, Serialize)]
pub struct Connection {
    pub scope: ConnectionScope,
    /// The unguessable part of its webhook URL, `/webhooks/stripe/{route_id}`.
    pub route_id: WebhookRouteId,
    pub name: String,
    pub status: ConnectionStatus,
    /// Posting, reference and client settings (never secrets).
    pub settings: serde_json::Value,
    /// The NetSuite account it posts to: its concurrency budget is shared by every connection
    /// posting there.
    pub netsuite_account: Option<String>,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
    pub health: ConnectionHealth,
}

/// What the connection's last test and last errors said.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ConnectionHealth {
    pub last_test_at: Option<UnixMillis>,
    pub last_test_ok: Option<bool>,
    pub last_test_message: Option<String>,
    /// When its NetSuite M2M token was last issued (tokens live 60 minutes).
    pub token_issued_at: Option<UnixMillis>,
    pub last_error: Option<String>,
    pub last_error_at: Option<UnixMillis>,
}

/// A connection to create (or, for the configured default, to update).
#[derive(Debug, Clone)]
pub struct NewConnection {
    pub id: ConnectionId,
    pub name: String,
    pub status: ConnectionStatus,
    pub settings: serde_json::Value,
    pub netsuite_account: Option<String>,
}

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiKeyRole {
    /// Everything, including keys and credentials.
    Owner,
    /// Mappings, replays, pausing; not keys or credentials.
    Operator,
    /// Reads only.
    Viewer,
}

impl ApiKeyRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiKeyRole::Owner => "owner",
            ApiKeyRole::Operator => "operator",
            ApiKeyRole::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [ApiKeyRole::Owner, ApiKeyRole::Operator, ApiKeyRole::Viewer]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// An API key as listed: never the key itself, only what identifies it to a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKeyInfo {
    pub id: String,
    pub tenant_id: TenantId,
    pub name: String,
    pub role: ApiKeyRole,
    /// The key's first characters (`mlck_abcd`), as shown when it was made.
    pub prefix: String,
    pub last4: String,
    pub created_at: UnixMillis,
    pub last_used_at: Option<UnixMillis>,
    pub revoked_at: Option<UnixMillis>,
}

/// A key just made: the secret is shown once and never stored.
#[derive(Debug)]
pub struct NewApiKey {
    pub info: ApiKeyInfo,
    pub secret: SecretString,
}

const KEY_PREFIX: &str = "mlck_";

fn key_hash(secret: &str) -> String {
    // The key holds 200 random bits, so a fast hash is enough: nothing to brute-force.
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn random_route_id() -> WebhookRouteId {
    let mut bytes = [0u8; 20];
    rand::rng().fill_bytes(&mut bytes);
    WebhookRouteId::from_random(bytes)
}

const CONNECTION_COLUMNS: &str = "tenant_id, id, route_id, name, status, settings, \
     netsuite_account, created_at, updated_at, last_test_at, last_test_ok, last_test_message, \
     token_issued_at, last_error, last_error_at";

fn connection_from_row(row: &sqlx::any::AnyRow) -> Result<Connection, StoreError> {
    let bad = |what: &str| StoreError::Database(format!("stored connection: bad {what}"));
    let tenant: String = get(row, "tenant_id")?;
    let id: String = get(row, "id")?;
    let route: String = get(row, "route_id")?;
    let status: String = get(row, "status")?;
    let settings: String = get(row, "settings")?;
    Ok(Connection {
        scope: ConnectionScope::from_row(&tenant, &id)?,
        route_id: WebhookRouteId::parse(&route).ok_or_else(|| bad("route_id"))?,
        name: get(row, "name")?,
        status: ConnectionStatus::parse(&status).ok_or_else(|| bad("status"))?,
        settings: serde_json::from_str(&settings).map_err(|_| bad("settings"))?,
        netsuite_account: get(row, "netsuite_account")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
        health: ConnectionHealth {
            last_test_at: get(row, "last_test_at")?,
            last_test_ok: get::<Option<i64>>(row, "last_test_ok")?.map(|v| v != 0),
            last_test_message: get(row, "last_test_message")?,
            token_issued_at: get(row, "token_issued_at")?,
            last_error: get(row, "last_error")?,
            last_error_at: get(row, "last_error_at")?,
        },
    })
}

const KEY_COLUMNS: &str =
    "id, tenant_id, name, role, prefix, last4, created_at, last_used_at, revoked_at";

fn key_from_row(row: &sqlx::any::AnyRow) -> Result<ApiKeyInfo, StoreError> {
    let tenant: String = get(row, "tenant_id")?;
    let role: String = get(row, "role")?;
    Ok(ApiKeyInfo {
        id: get(row, "id")?,
        tenant_id: TenantId::parse(&tenant)
            .map_err(|e| StoreError::Database(format!("stored API key: {e}")))?,
        name: get(row, "name")?,
        role: ApiKeyRole::parse(&role)
            .ok_or_else(|| StoreError::Database("stored API key: bad role".into()))?,
        prefix: get(row, "prefix")?,
        last4: get(row, "last4")?,
        created_at: get(row, "created_at")?,
        last_used_at: get(row, "last_used_at")?,
        revoked_at: get(row, "revoked_at")?,
    })
}

impl Store {
    /// Creates a tenant; [`StoreError::AlreadyExists`] if the ID is taken.
    pub async fn create_tenant(
        &self,
        id: &TenantId,
        name: &str,
    ) -> Result<TenantScope, StoreError> {
        let _guard = self.db.write_guard().await;
        let mut tx = self.db.begin_write_as(Rls::AllTenants).await?;
        let n = sqlx::query(
            "INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id.as_str().to_string())
        .bind(name.to_string())
        .bind(now_millis())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
        tx.commit().await.map_err(db_err)?;
        if n == 0 {
            return Err(StoreError::AlreadyExists(format!("tenant `{id}`")));
        }
        Ok(TenantScope::new(id.clone()))
    }

    /// The tenant, created when missing (the configured `default` tenant at every start).
    pub async fn ensure_tenant(
        &self,
        id: &TenantId,
        name: &str,
    ) -> Result<TenantScope, StoreError> {
        match self.create_tenant(id, name).await {
            Ok(scope) => Ok(scope),
            Err(StoreError::AlreadyExists(_)) => Ok(TenantScope::new(id.clone())),
            Err(e) => Err(e),
        }
    }

    /// Every tenant, oldest first (the operator's view).
    pub async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        let rows = sqlx::query("SELECT id, name, created_at FROM tenants ORDER BY created_at, id")
            .fetch_all(&mut *self.db.read_all().await?)
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                let id: String = get(r, "id")?;
                Ok(Tenant {
                    id: TenantId::parse(&id)
                        .map_err(|e| StoreError::Database(format!("stored tenant: {e}")))?,
                    name: get(r, "name")?,
                    created_at: get(r, "created_at")?,
                })
            })
            .collect()
    }

    /// The scope of a tenant that exists.
    pub async fn tenant_scope(&self, id: &TenantId) -> Result<Option<TenantScope>, StoreError> {
        let row = sqlx::query("SELECT id FROM tenants WHERE id = $1")
            .bind(id.as_str().to_string())
            .fetch_optional(&mut *self.db.read_tenant(id.as_str()).await?)
            .await
            .map_err(db_err)?;
        Ok(row.map(|_| TenantScope::new(id.clone())))
    }

    /// The scope of a connection that exists in that tenant (another tenant's connection ID
    /// finds nothing).
    pub async fn connection_scope(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
    ) -> Result<Option<ConnectionScope>, StoreError> {
        let row = sqlx::query("SELECT id FROM connections WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_str().to_string())
            .bind(connection.as_str().to_string())
            .fetch_optional(&mut *self.db.read_tenant(tenant.as_str()).await?)
            .await
            .map_err(db_err)?;
        Ok(row.map(|_| ConnectionScope::new(tenant.clone(), connection.clone())))
    }

    /// The connection a webhook route names, whatever its tenant (the route is the only key the
    /// intake has before it knows the tenant).
    pub async fn connection_by_route(
        &self,
        route: &WebhookRouteId,
    ) -> Result<Option<Connection>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CONNECTION_COLUMNS} FROM connections WHERE route_id = $1"
        )))
        .bind(route.as_str().to_string())
        .fetch_optional(&mut *self.db.read_all().await?)
        .await
        .map_err(db_err)?;
        row.as_ref().map(connection_from_row).transpose()
    }

    /// Every connection of every tenant (the registry at start, the operator's views).
    pub async fn all_connections(&self) -> Result<Vec<Connection>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CONNECTION_COLUMNS} FROM connections ORDER BY tenant_id, id"
        )))
        .fetch_all(&mut *self.db.read_all().await?)
        .await
        .map_err(db_err)?;
        rows.iter().map(connection_from_row).collect()
    }

    /// The tenant and key an API key's secret belongs to, unless revoked; records its use.
    pub async fn authenticate_api_key(
        &self,
        secret: &SecretString,
    ) -> Result<Option<(TenantScope, ApiKeyInfo)>, StoreError> {
        let secret = secret.expose_secret();
        if !secret.starts_with(KEY_PREFIX) {
            return Ok(None);
        }
        let _guard = self.db.write_guard().await;
        let mut tx = self.db.begin_write_as(Rls::AllTenants).await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE api_keys SET last_used_at = $2 WHERE key_hash = $1 AND revoked_at IS NULL \
             RETURNING {KEY_COLUMNS}"
        )))
        .bind(key_hash(secret))
        .bind(now_millis())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        let Some(row) = row else { return Ok(None) };
        let info = key_from_row(&row)?;
        Ok(Some((TenantScope::new(info.tenant_id.clone()), info)))
    }
}

impl TenantStore {
    fn tenant(&self) -> &str {
        self.scope.tenant_id().as_str()
    }

    /// Creates a connection with a new, unguessable webhook route.
    /// [`StoreError::AlreadyExists`] if this tenant already has one with that ID.
    pub async fn create_connection(&self, new: &NewConnection) -> Result<Connection, StoreError> {
        let db = &self.store.db;
        let now = now_millis();
        {
            let _guard = db.write_guard().await;
            let mut tx = db.begin_write_as(Rls::Tenant(self.tenant())).await?;
            let n = sqlx::query(
                "INSERT INTO connections (tenant_id, id, route_id, name, status, settings, \
                 netsuite_account, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) \
                 ON CONFLICT (tenant_id, id) DO NOTHING",
            )
            .bind(self.scope.t())
            .bind(new.id.as_str().to_string())
            .bind(random_route_id().as_str().to_string())
            .bind(new.name.clone())
            .bind(new.status.as_str())
            .bind(new.settings.to_string())
            .bind(new.netsuite_account.clone())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
            tx.commit().await.map_err(db_err)?;
            if n == 0 {
                return Err(StoreError::AlreadyExists(format!(
                    "connection `{}/{}`",
                    self.scope.tenant_id(),
                    new.id
                )));
            }
        }
        self.get_connection(&new.id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("connection `{}`", new.id)))
    }

    /// Creates the connection, or updates its name, settings and NetSuite account (its status
    /// and route stay: a paused connection stays paused across restarts).
    pub async fn upsert_connection(&self, new: &NewConnection) -> Result<Connection, StoreError> {
        match self.create_connection(new).await {
            Err(StoreError::AlreadyExists(_)) => {}
            other => return other,
        }
        let db = &self.store.db;
        {
            let _guard = db.write_guard().await;
            let mut tx = db.begin_write_as(Rls::Tenant(self.tenant())).await?;
            sqlx::query(
                "UPDATE connections SET name = $3, settings = $4, netsuite_account = $5, \
                 updated_at = $6 WHERE tenant_id = $1 AND id = $2",
            )
            .bind(self.scope.t())
            .bind(new.id.as_str().to_string())
            .bind(new.name.clone())
            .bind(new.settings.to_string())
            .bind(new.netsuite_account.clone())
            .bind(now_millis())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            tx.commit().await.map_err(db_err)?;
        }
        self.get_connection(&new.id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("connection `{}`", new.id)))
    }

    /// One of this tenant's connections.
    pub async fn get_connection(
        &self,
        id: &ConnectionId,
    ) -> Result<Option<Connection>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CONNECTION_COLUMNS} FROM connections WHERE tenant_id = $1 AND id = $2"
        )))
        .bind(self.scope.t())
        .bind(id.as_str().to_string())
        .fetch_optional(&mut *self.store.db.read_tenant(self.tenant()).await?)
        .await
        .map_err(db_err)?;
        row.as_ref().map(connection_from_row).transpose()
    }

    /// This tenant's connections.
    pub async fn list_connections(&self) -> Result<Vec<Connection>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CONNECTION_COLUMNS} FROM connections WHERE tenant_id = $1 ORDER BY id"
        )))
        .bind(self.scope.t())
        .fetch_all(&mut *self.store.db.read_tenant(self.tenant()).await?)
        .await
        .map_err(db_err)?;
        rows.iter().map(connection_from_row).collect()
    }

    /// Sets a connection's status; `false` when this tenant has no such connection.
    pub async fn set_connection_status(
        &self,
        id: &ConnectionId,
        status: ConnectionStatus,
    ) -> Result<bool, StoreError> {
        let db = &self.store.db;
        let _guard = db.write_guard().await;
        let mut tx = db.begin_write_as(Rls::Tenant(self.tenant())).await?;
        let n = sqlx::query(
            "UPDATE connections SET status = $3, updated_at = $4 WHERE tenant_id = $1 AND id = $2",
        )
        .bind(self.scope.t())
        .bind(id.as_str().to_string())
        .bind(status.as_str())
        .bind(now_millis())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
        tx.commit().await.map_err(db_err)?;
        Ok(n > 0)
    }

    /// Records the outcome of a connection test ("ping your systems").
    pub async fn record_connection_test(
        &self,
        id: &ConnectionId,
        ok: bool,
        message: &str,
    ) -> Result<(), StoreError> {
        let db = &self.store.db;
        let _guard = db.write_guard().await;
        let mut tx = db.begin_write_as(Rls::Tenant(self.tenant())).await?;
        sqlx::query(
            "UPDATE connections SET last_test_at = $3, last_test_ok = $4, last_test_message = $5 \
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(self.scope.t())
        .bind(id.as_str().to_string())
        .bind(now_millis())
        .bind(i64::from(ok))
        .bind(message.to_string())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    /// Makes an API key for this tenant. The secret is in the answer only.
    pub async fn create_api_key(
        &self,
        name: &str,
        role: ApiKeyRole,
    ) -> Result<NewApiKey, StoreError> {
        // 40 characters of lower-case base 32: 200 random bits, copy-paste safe.
        const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
        let mut rng = rand::rng();
        let body: String = (0..40)
            .map(|_| char::from(ALPHABET[(rng.next_u32() % 32) as usize]))
            .collect();
        let secret = format!("{KEY_PREFIX}{body}");
        let info = ApiKeyInfo {
            id: uuid::Uuid::now_v7().to_string(),
            tenant_id: self.scope.tenant_id().clone(),
            name: name.to_string(),
            role,
            prefix: secret.chars().take(KEY_PREFIX.len() + 4).collect(),
            last4: secret[secret.len() - 4..].to_string(),
            created_at: now_millis(),
            last_used_at: None,
            revoked_at: None,
        };
        let db = &self.store.db;
        let _guard = db.write_guard().await;
        let mut tx = db.begin_write_as(Rls::Tenant(self.tenant())).await?;
        sqlx::query(
            "INSERT INTO api_keys (id, tenant_id, name, role, key_hash, prefix, last4, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(info.id.clone())
        .bind(self.scope.t())
        .bind(info.name.clone())
        .bind(role.as_str())
        .bind(key_hash(&secret))
        .bind(info.prefix.clone())
        .bind(info.last4.clone())
        .bind(info.created_at)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(NewApiKey {
            info,
            secret: SecretString::from(secret),
        })
    }

    /// This tenant's keys, newest first (never their secrets).
    pub async fn list_api_keys(&self) -> Result<Vec<ApiKeyInfo>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 ORDER BY created_at DESC, id"
        )))
        .bind(self.scope.t())
        .fetch_all(&mut *self.store.db.read_tenant(self.tenant()).await?)
        .await
        .map_err(db_err)?;
        rows.iter().map(key_from_row).collect()
    }

    /// Revokes one of this tenant's keys; `false` when it has no such (unrevoked) key.
    pub async fn revoke_api_key(&self, id: &str) -> Result<bool, StoreError> {
        let db = &self.store.db;
        let _guard = db.write_guard().await;
        let mut tx = db.begin_write_as(Rls::Tenant(self.tenant())).await?;
        let n = sqlx::query(
            "UPDATE api_keys SET revoked_at = $3 \
             WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL",
        )
        .bind(self.scope.t())
        .bind(id.to_string())
        .bind(now_millis())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
        tx.commit().await.map_err(db_err)?;
        Ok(n > 0)
    }
}
