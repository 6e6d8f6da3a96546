//! Tenants, their connections and their API keys.
//!
//! The operator's side (creating tenants, resolving a webhook route, loading every connection
//! for the registry) lives on [`Store`]; a tenant's own side (its connections, its keys) on
//! [`TenantStore`], which only a [`TenantScope`] opens.
//!
//! These are the admin paths, so they run on sea-orm's entities ([`crate::entity`]) and query
//! builder, on the store's sea-orm pool. Every call is a sea-orm transaction whose row-level
//! security context is set first on PostgreSQL (SQLite reads use the pool directly); writes hold
//! the store's write guard and begin IMMEDIATE on SQLite, like every other writer of the crate.

use mlc_core::{ConnectionId, ConnectionStatus, TenantId, UnixMillis, WebhookRouteId, now_millis};
use rand::RngCore as _;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait as _, EntityTrait as _, QueryFilter as _, QueryOrder as _,
};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::db::{Rls, orm_done, orm_err};
use crate::entity::{api_keys, connections, tenants};
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

/// What [`TenantStore::delete_connection`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteConnection {
    Deleted,
    /// No such connection in this tenant.
    NotFound,
    /// It is active: pause it first.
    Active,
    /// It has this many jobs queued or running: let them finish.
    Busy(i64),
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

/// What every API key starts with (so a key is told from other bearer tokens at a glance).
pub const API_KEY_PREFIX: &str = "mlck_";
const KEY_PREFIX: &str = API_KEY_PREFIX;

fn key_hash(secret: &str) -> String {
    // The key holds 200 random bits, so a fast hash is enough: nothing to brute-force.
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn random_route_id() -> WebhookRouteId {
    let mut bytes = [0u8; 20];
    rand::rng().fill_bytes(&mut bytes);
    WebhookRouteId::from_random(bytes)
}

fn connection_from_model(m: connections::Model) -> Result<Connection, StoreError> {
    let bad = |what: &str| StoreError::Database(format!("stored connection: bad {what}"));
    Ok(Connection {
        scope: ConnectionScope::from_row(&m.tenant_id, &m.id)?,
        route_id: WebhookRouteId::parse(&m.route_id).ok_or_else(|| bad("route_id"))?,
        name: m.name,
        status: ConnectionStatus::parse(&m.status).ok_or_else(|| bad("status"))?,
        settings: serde_json::from_str(&m.settings).map_err(|_| bad("settings"))?,
        netsuite_account: m.netsuite_account,
        created_at: m.created_at,
        updated_at: m.updated_at,
        health: ConnectionHealth {
            last_test_at: m.last_test_at,
            last_test_ok: m.last_test_ok.map(|v| v != 0),
            last_test_message: m.last_test_message,
            token_issued_at: m.token_issued_at,
            last_error: m.last_error,
            last_error_at: m.last_error_at,
        },
    })
}

fn key_from_model(m: api_keys::Model) -> Result<ApiKeyInfo, StoreError> {
    Ok(ApiKeyInfo {
        tenant_id: TenantId::parse(&m.tenant_id)
            .map_err(|e| StoreError::Database(format!("stored API key: {e}")))?,
        role: ApiKeyRole::parse(&m.role)
            .ok_or_else(|| StoreError::Database("stored API key: bad role".into()))?,
        id: m.id,
        name: m.name,
        prefix: m.prefix,
        last4: m.last4,
        created_at: m.created_at,
        last_used_at: m.last_used_at,
        revoked_at: m.revoked_at,
    })
}

impl Store {
    /// Creates a tenant; [`StoreError::AlreadyExists`] if the ID is taken.
    pub async fn create_tenant(
        &self,
        id: &TenantId,
        name: &str,
    ) -> Result<TenantScope, StoreError> {
        let db = &self.db;
        let tenant = tenants::ActiveModel {
            id: Set(id.as_str().to_string()),
            name: Set(name.to_string()),
            created_at: Set(now_millis()),
        };
        let n = {
            let _guard = db.write_guard().await;
            let txn = db.orm_begin(Rls::AllTenants, true).await?;
            let n = tenants::Entity::insert(tenant)
                .on_conflict(
                    OnConflict::column(tenants::Column::Id)
                        .do_nothing()
                        .to_owned(),
                )
                .exec_without_returning(&txn)
                .await
                .map_err(orm_err)?;
            txn.commit().await.map_err(orm_err)?;
            n
        };
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
        let conn = self.db.orm_read(Rls::AllTenants).await?;
        let models = tenants::Entity::find()
            .order_by_asc(tenants::Column::CreatedAt)
            .order_by_asc(tenants::Column::Id)
            .all(&conn)
            .await
            .map_err(orm_err)?;
        orm_done(conn).await?;
        models
            .into_iter()
            .map(|m| {
                Ok(Tenant {
                    id: TenantId::parse(&m.id)
                        .map_err(|e| StoreError::Database(format!("stored tenant: {e}")))?,
                    name: m.name,
                    created_at: m.created_at,
                })
            })
            .collect()
    }

    /// The scope of a tenant that exists.
    pub async fn tenant_scope(&self, id: &TenantId) -> Result<Option<TenantScope>, StoreError> {
        let conn = self.db.orm_read(Rls::Tenant(id.as_str())).await?;
        let found = tenants::Entity::find_by_id(id.as_str())
            .one(&conn)
            .await
            .map_err(orm_err)?;
        orm_done(conn).await?;
        Ok(found.map(|_| TenantScope::new(id.clone())))
    }

    /// The scope of a connection that exists in that tenant (another tenant's connection ID
    /// finds nothing).
    pub async fn connection_scope(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
    ) -> Result<Option<ConnectionScope>, StoreError> {
        let conn = self.db.orm_read(Rls::Tenant(tenant.as_str())).await?;
        let found = connections::Entity::find_by_id((
            tenant.as_str().to_string(),
            connection.as_str().to_string(),
        ))
        .one(&conn)
        .await
        .map_err(orm_err)?;
        orm_done(conn).await?;
        Ok(found.map(|_| ConnectionScope::new(tenant.clone(), connection.clone())))
    }

    /// The connection a webhook route names, whatever its tenant (the route is the only key the
    /// intake has before it knows the tenant).
    pub async fn connection_by_route(
        &self,
        route: &WebhookRouteId,
    ) -> Result<Option<Connection>, StoreError> {
        let conn = self.db.orm_read(Rls::AllTenants).await?;
        let found = connections::Entity::find()
            .filter(connections::Column::RouteId.eq(route.as_str()))
            .one(&conn)
            .await
            .map_err(orm_err)?;
        orm_done(conn).await?;
        found.map(connection_from_model).transpose()
    }

    /// Every connection of every tenant (the registry at start, the operator's views).
    pub async fn all_connections(&self) -> Result<Vec<Connection>, StoreError> {
        let conn = self.db.orm_read(Rls::AllTenants).await?;
        let models = connections::Entity::find()
            .order_by_asc(connections::Column::TenantId)
            .order_by_asc(connections::Column::Id)
            .all(&conn)
            .await
            .map_err(orm_err)?;
        orm_done(conn).await?;
        models.into_iter().map(connection_from_model).collect()
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
        let db = &self.db;
        let now = now_millis();
        let key = {
            let _guard = db.write_guard().await;
            let txn = db.orm_begin(Rls::AllTenants, true).await?;
            let found = api_keys::Entity::find()
                .filter(api_keys::Column::KeyHash.eq(key_hash(secret)))
                .filter(api_keys::Column::RevokedAt.is_null())
                .one(&txn)
                .await
                .map_err(orm_err)?;
            // Two statements rather than UPDATE … RETURNING (which sea-orm refuses on SQLite
            // without its `sqlite-use-returning-for-3_35` feature). The update repeats the
            // "not revoked" condition, so a revocation committed in between wins (PostgreSQL
            // re-checks the row; SQLite's IMMEDIATE transaction admits no writer in between).
            let key = match found {
                Some(mut key) => {
                    let n = api_keys::Entity::update_many()
                        .set(api_keys::ActiveModel {
                            last_used_at: Set(Some(now)),
                            ..Default::default()
                        })
                        .filter(api_keys::Column::Id.eq(key.id.as_str()))
                        .filter(api_keys::Column::RevokedAt.is_null())
                        .exec(&txn)
                        .await
                        .map_err(orm_err)?
                        .rows_affected;
                    key.last_used_at = Some(now);
                    (n > 0).then_some(key)
                }
                None => None,
            };
            txn.commit().await.map_err(orm_err)?;
            key
        };
        let Some(key) = key else { return Ok(None) };
        let info = key_from_model(key)?;
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
        let connection = connections::ActiveModel {
            tenant_id: Set(self.scope.t()),
            id: Set(new.id.as_str().to_string()),
            route_id: Set(random_route_id().as_str().to_string()),
            name: Set(new.name.clone()),
            status: Set(new.status.as_str().to_string()),
            settings: Set(new.settings.to_string()),
            netsuite_account: Set(new.netsuite_account.clone()),
            created_at: Set(now),
            updated_at: Set(now),
            // Health starts empty (NULL).
            last_test_at: NotSet,
            last_test_ok: NotSet,
            last_test_message: NotSet,
            token_issued_at: NotSet,
            last_error: NotSet,
            last_error_at: NotSet,
        };
        let n = {
            let _guard = db.write_guard().await;
            let txn = db.orm_begin(Rls::Tenant(self.tenant()), true).await?;
            let n = connections::Entity::insert(connection)
                .on_conflict(
                    OnConflict::columns([connections::Column::TenantId, connections::Column::Id])
                        .do_nothing()
                        .to_owned(),
                )
                .exec_without_returning(&txn)
                .await
                .map_err(orm_err)?;
            txn.commit().await.map_err(orm_err)?;
            n
        };
        if n == 0 {
            return Err(StoreError::AlreadyExists(format!(
                "connection `{}/{}`",
                self.scope.tenant_id(),
                new.id
            )));
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
            let txn = db.orm_begin(Rls::Tenant(self.tenant()), true).await?;
            connections::Entity::update_many()
                .set(connections::ActiveModel {
                    name: Set(new.name.clone()),
                    settings: Set(new.settings.to_string()),
                    netsuite_account: Set(new.netsuite_account.clone()),
                    updated_at: Set(now_millis()),
                    ..Default::default()
                })
                .filter(connections::Column::TenantId.eq(self.tenant()))
                .filter(connections::Column::Id.eq(new.id.as_str()))
                .exec(&txn)
                .await
                .map_err(orm_err)?;
            txn.commit().await.map_err(orm_err)?;
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
        let db = &self.store.db;
        let conn = db.orm_read(Rls::Tenant(self.tenant())).await?;
        let found = connections::Entity::find_by_id((self.scope.t(), id.as_str().to_string()))
            .one(&conn)
            .await
            .map_err(orm_err)?;
        orm_done(conn).await?;
        found.map(connection_from_model).transpose()
    }

    /// This tenant's connections.
    pub async fn list_connections(&self) -> Result<Vec<Connection>, StoreError> {
        let db = &self.store.db;
        let conn = db.orm_read(Rls::Tenant(self.tenant())).await?;
        let models = connections::Entity::find()
            .filter(connections::Column::TenantId.eq(self.tenant()))
            .order_by_asc(connections::Column::Id)
            .all(&conn)
            .await
            .map_err(orm_err)?;
        orm_done(conn).await?;
        models.into_iter().map(connection_from_model).collect()
    }

    /// Changes a connection's name, settings and NetSuite account (those given); `false` when
    /// this tenant has no such connection. Its status and webhook route stay.
    pub async fn update_connection_details(
        &self,
        id: &ConnectionId,
        name: Option<String>,
        settings: Option<(serde_json::Value, Option<String>)>,
    ) -> Result<bool, StoreError> {
        let mut change = connections::ActiveModel {
            updated_at: Set(now_millis()),
            ..Default::default()
        };
        if let Some(name) = name {
            change.name = Set(name);
        }
        if let Some((settings, netsuite_account)) = settings {
            change.settings = Set(settings.to_string());
            change.netsuite_account = Set(netsuite_account);
        }
        Ok(self.update_connection(id, change).await? > 0)
    }

    /// Deletes a connection and everything stored for it (events, jobs, audit, postings, links,
    /// credentials), in one transaction. Refused unless it is paused or a draft with no job
    /// queued or running, so nothing is cut off mid-posting: what it already posted stays in
    /// NetSuite. Its webhook URL answers 404 from then on.
    pub async fn delete_connection(
        &self,
        id: &ConnectionId,
    ) -> Result<DeleteConnection, StoreError> {
        let db = &self.store.db;
        let _guard = db.write_guard().await;
        let mut tx = db.begin_write_as(Rls::Tenant(self.tenant())).await?;
        let row = sqlx::query("SELECT status FROM connections WHERE tenant_id = $1 AND id = $2")
            .bind(self.scope.t())
            .bind(id.as_str().to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(crate::db::db_err)?;
        let Some(row) = row else {
            return Ok(DeleteConnection::NotFound);
        };
        let status: String = crate::db::get(&row, "status")?;
        if ConnectionStatus::parse(&status) == Some(ConnectionStatus::Active) {
            return Ok(DeleteConnection::Active);
        }
        let busy: i64 = crate::db::get(
            &sqlx::query(
                "SELECT COUNT(*) AS n FROM sync_jobs WHERE tenant_id = $1 AND connection_id = $2 \
                 AND state IN ('queued', 'running')",
            )
            .bind(self.scope.t())
            .bind(id.as_str().to_string())
            .fetch_one(&mut *tx)
            .await
            .map_err(crate::db::db_err)?,
            "n",
        )?;
        if busy > 0 {
            return Ok(DeleteConnection::Busy(busy));
        }
        // Children first (events and jobs refer to the connection), the connection last. An
        // apalis task left for a deleted job finds no job and ends as stale. The audit log is
        // append-only (the database refuses deletes): its entries stay, with one more that says
        // the connection was deleted.
        for table in [
            "covered_payments",
            "credentials",
            "customer_links",
            "item_links",
            "postings",
            "sync_watermarks",
            "unmapped_products",
            "events",
            "history_runs",
            "sync_jobs",
        ] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE tenant_id = $1 AND connection_id = $2"
            )))
            .bind(self.scope.t())
            .bind(id.as_str().to_string())
            .execute(&mut *tx)
            .await
            .map_err(crate::db::db_err)?;
        }
        sqlx::query("DELETE FROM connections WHERE tenant_id = $1 AND id = $2")
            .bind(self.scope.t())
            .bind(id.as_str().to_string())
            .execute(&mut *tx)
            .await
            .map_err(crate::db::db_err)?;
        crate::db::insert_audit(
            &mut tx,
            &ConnectionScope::new(self.scope.tenant_id().clone(), id.clone()),
            &crate::model::NewAudit {
                step: "connection_deleted".into(),
                message: "Connection deleted with its events, jobs, mappings and credentials \
                          (what it posted stays in NetSuite)"
                    .into(),
                ..crate::model::NewAudit::default()
            },
            now_millis(),
        )
        .await?;
        tx.commit().await.map_err(crate::db::db_err)?;
        Ok(DeleteConnection::Deleted)
    }

    /// Sets a connection's status; `false` when this tenant has no such connection.
    pub async fn set_connection_status(
        &self,
        id: &ConnectionId,
        status: ConnectionStatus,
    ) -> Result<bool, StoreError> {
        let n = self
            .update_connection(
                id,
                connections::ActiveModel {
                    status: Set(status.as_str().to_string()),
                    updated_at: Set(now_millis()),
                    ..Default::default()
                },
            )
            .await?;
        Ok(n > 0)
    }

    /// Sets the fields `change` holds on one of this tenant's connections; returns the rows
    /// changed (0: no such connection in this tenant).
    async fn update_connection(
        &self,
        id: &ConnectionId,
        change: connections::ActiveModel,
    ) -> Result<u64, StoreError> {
        let db = &self.store.db;
        let _guard = db.write_guard().await;
        let txn = db.orm_begin(Rls::Tenant(self.tenant()), true).await?;
        let n = connections::Entity::update_many()
            .set(change)
            .filter(connections::Column::TenantId.eq(self.tenant()))
            .filter(connections::Column::Id.eq(id.as_str()))
            .exec(&txn)
            .await
            .map_err(orm_err)?
            .rows_affected;
        txn.commit().await.map_err(orm_err)?;
        Ok(n)
    }

    /// Records the outcome of a connection test ("ping your systems").
    pub async fn record_connection_test(
        &self,
        id: &ConnectionId,
        ok: bool,
        message: &str,
    ) -> Result<(), StoreError> {
        self.update_connection(
            id,
            connections::ActiveModel {
                last_test_at: Set(Some(now_millis())),
                last_test_ok: Set(Some(i64::from(ok))),
                last_test_message: Set(Some(message.to_string())),
                ..Default::default()
            },
        )
        .await?;
        Ok(())
    }

    /// Records what a connection's work last showed: when its NetSuite token was issued and its
    /// last error (with the time). `None` leaves a field as it is. Neither changes the
    /// connection's `updated_at` (its settings' version).
    pub async fn record_connection_health(
        &self,
        id: &ConnectionId,
        token_issued_at: Option<i64>,
        last_error: Option<&str>,
    ) -> Result<(), StoreError> {
        if token_issued_at.is_none() && last_error.is_none() {
            return Ok(());
        }
        let mut change = connections::ActiveModel::default();
        if let Some(at) = token_issued_at {
            change.token_issued_at = Set(Some(at));
        }
        if let Some(e) = last_error {
            change.last_error = Set(Some(e.to_string()));
            change.last_error_at = Set(Some(now_millis()));
        }
        self.update_connection(id, change).await?;
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
        // The thread-local RNG is not `Send`: keep it out of the future's state (a block), so
        // the call can run on a spawned task.
        let body: String = {
            let mut rng = rand::rng();
            (0..40)
                .map(|_| char::from(ALPHABET[(rng.next_u32() % 32) as usize]))
                .collect()
        };
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
        let key = api_keys::ActiveModel {
            id: Set(info.id.clone()),
            tenant_id: Set(self.scope.t()),
            name: Set(info.name.clone()),
            role: Set(role.as_str().to_string()),
            key_hash: Set(key_hash(&secret)),
            prefix: Set(info.prefix.clone()),
            last4: Set(info.last4.clone()),
            created_at: Set(info.created_at),
            last_used_at: NotSet,
            revoked_at: NotSet,
        };
        let db = &self.store.db;
        let _guard = db.write_guard().await;
        let txn = db.orm_begin(Rls::Tenant(self.tenant()), true).await?;
        api_keys::Entity::insert(key)
            .exec_without_returning(&txn)
            .await
            .map_err(orm_err)?;
        txn.commit().await.map_err(orm_err)?;
        Ok(NewApiKey {
            info,
            secret: SecretString::from(secret),
        })
    }

    /// This tenant's keys, newest first (never their secrets).
    pub async fn list_api_keys(&self) -> Result<Vec<ApiKeyInfo>, StoreError> {
        let db = &self.store.db;
        let conn = db.orm_read(Rls::Tenant(self.tenant())).await?;
        let models = api_keys::Entity::find()
            .filter(api_keys::Column::TenantId.eq(self.tenant()))
            .order_by_desc(api_keys::Column::CreatedAt)
            .order_by_asc(api_keys::Column::Id)
            .all(&conn)
            .await
            .map_err(orm_err)?;
        orm_done(conn).await?;
        models.into_iter().map(key_from_model).collect()
    }

    /// Revokes one of this tenant's keys; `false` when it has no such (unrevoked) key.
    pub async fn revoke_api_key(&self, id: &str) -> Result<bool, StoreError> {
        let db = &self.store.db;
        let _guard = db.write_guard().await;
        let txn = db.orm_begin(Rls::Tenant(self.tenant()), true).await?;
        let n = api_keys::Entity::update_many()
            .set(api_keys::ActiveModel {
                revoked_at: Set(Some(now_millis())),
                ..Default::default()
            })
            .filter(api_keys::Column::TenantId.eq(self.tenant()))
            .filter(api_keys::Column::Id.eq(id))
            .filter(api_keys::Column::RevokedAt.is_null())
            .exec(&txn)
            .await
            .map_err(orm_err)?
            .rows_affected;
        txn.commit().await.map_err(orm_err)?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send<T: Send>(_: T) {}

    /// Compile-time only: the API server runs these on spawned tasks, so their futures must be
    /// `Send` (sea-orm's transactions are; the thread-local RNG is not, see `create_api_key`).
    #[allow(dead_code)]
    fn futures_are_send(
        store: &Store,
        tenant: &TenantStore,
        new: &NewConnection,
        (t, c, route): (&TenantId, &ConnectionId, &WebhookRouteId),
        secret: &SecretString,
    ) {
        send(store.create_tenant(t, ""));
        send(store.ensure_tenant(t, ""));
        send(store.list_tenants());
        send(store.tenant_scope(t));
        send(store.connection_scope(t, c));
        send(store.connection_by_route(route));
        send(store.all_connections());
        send(store.authenticate_api_key(secret));
        send(tenant.create_connection(new));
        send(tenant.upsert_connection(new));
        send(tenant.get_connection(c));
        send(tenant.list_connections());
        send(tenant.set_connection_status(c, ConnectionStatus::Paused));
        send(tenant.record_connection_test(c, true, ""));
        send(tenant.create_api_key("", ApiKeyRole::Viewer));
        send(tenant.list_api_keys());
        send(tenant.revoke_api_key(""));
    }
}
