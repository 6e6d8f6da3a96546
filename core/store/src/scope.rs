//! Tenant scopes: the values a caller must hold to reach a tenant's rows.
//!
//! Every tenant-owned query lives on [`ConnectionStore`] (or [`TenantStore`]), which can only be
//! had for a scope, and every such query filters on the scope's tenant and connection. A
//! forgotten filter is therefore a missing argument, a compile error, not a leak. Scopes are made
//! by the store from a lookup (a connection that exists, a job's own row), never from a bare
//! string a client sent, so another tenant's IDs simply find nothing.
//!
//! On PostgreSQL row-level security backs this up: each scoped transaction sets `app.tenant_id`
//! (see `db::set_tenant`), and a query that forgot its filter still sees one tenant only.

use mlc_core::{ConnectionId, TenantId};
use serde::Serialize;

use crate::store::Store;

/// One connection of one tenant. Made only by the store (from a lookup or a row it read).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ConnectionScope {
    tenant_id: TenantId,
    connection_id: ConnectionId,
}

impl ConnectionScope {
    pub(crate) fn new(tenant_id: TenantId, connection_id: ConnectionId) -> Self {
        ConnectionScope {
            tenant_id,
            connection_id,
        }
    }

    /// Rebuilds a scope from a row this store wrote (the IDs were validated when written).
    pub(crate) fn from_row(
        tenant_id: &str,
        connection_id: &str,
    ) -> Result<Self, crate::StoreError> {
        let bad = |e: mlc_core::IdError| crate::StoreError::Database(format!("stored row: {e}"));
        Ok(ConnectionScope {
            tenant_id: TenantId::parse(tenant_id).map_err(bad)?,
            connection_id: ConnectionId::parse(connection_id).map_err(bad)?,
        })
    }

    pub fn tenant_id(&self) -> &TenantId {
        &self.tenant_id
    }

    pub fn connection_id(&self) -> &ConnectionId {
        &self.connection_id
    }

    /// The tenant this connection belongs to.
    pub fn tenant(&self) -> TenantScope {
        TenantScope {
            tenant_id: self.tenant_id.clone(),
        }
    }

    pub(crate) fn t(&self) -> String {
        self.tenant_id.as_str().to_string()
    }

    pub(crate) fn c(&self) -> String {
        self.connection_id.as_str().to_string()
    }
}

impl std::fmt::Display for ConnectionScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.tenant_id, self.connection_id)
    }
}

/// One tenant. Made only by the store, from a tenant that exists.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct TenantScope {
    tenant_id: TenantId,
}

impl TenantScope {
    pub(crate) fn new(tenant_id: TenantId) -> Self {
        TenantScope { tenant_id }
    }

    pub fn tenant_id(&self) -> &TenantId {
        &self.tenant_id
    }

    pub(crate) fn t(&self) -> String {
        self.tenant_id.as_str().to_string()
    }
}

/// The store as one connection sees it: events, jobs, audit, postings, links, mappings,
/// watermarks and credentials of that connection only. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ConnectionStore {
    pub(crate) store: Store,
    pub(crate) scope: ConnectionScope,
}

impl ConnectionStore {
    pub fn scope(&self) -> &ConnectionScope {
        &self.scope
    }

    /// The unscoped store (for the worker and the operator's cross-tenant views, which hold no
    /// tenant's rows).
    pub fn store(&self) -> &Store {
        &self.store
    }
}

/// The store as one tenant sees it: its connections and API keys.
#[derive(Clone, Debug)]
pub struct TenantStore {
    pub(crate) store: Store,
    pub(crate) scope: TenantScope,
}

impl TenantStore {
    pub fn scope(&self) -> &TenantScope {
        &self.scope
    }
}

impl Store {
    /// The view of one connection. Only a scope the store made can be passed.
    pub fn scoped(&self, scope: &ConnectionScope) -> ConnectionStore {
        ConnectionStore {
            store: self.clone(),
            scope: scope.clone(),
        }
    }

    /// The view of one tenant.
    pub fn tenant(&self, scope: &TenantScope) -> TenantStore {
        TenantStore {
            store: self.clone(),
            scope: scope.clone(),
        }
    }
}
