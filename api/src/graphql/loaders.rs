//! DataLoaders, made for each request (or each subscription connection) from its viewer, so
//! they batch within one tenant and never share a cache or a result across tenants: a page of
//! connections loads its job counts in one query instead of one per connection.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::Context;
use async_graphql::dataloader::{DataLoader, Loader};
use mlc_core::ConnectionId;
use mlc_store::{ConnectionScope, Store, TenantScope};

use super::errors::{internal, store};
use super::schema::{JobCounts, Viewer};

/// Job counts per connection of one tenant.
pub struct JobCountsLoader {
    store: Store,
    tenant: TenantScope,
}

impl Loader<ConnectionId> for JobCountsLoader {
    type Value = JobCounts;
    type Error = Arc<mlc_store::StoreError>;

    async fn load(
        &self,
        keys: &[ConnectionId],
    ) -> Result<HashMap<ConnectionId, JobCounts>, Self::Error> {
        let counts = self
            .store
            .tenant(&self.tenant)
            .job_counts_by_connection(keys)
            .await
            .map_err(Arc::new)?;
        Ok(counts
            .into_iter()
            .map(|(c, states)| (c, JobCounts::from_states(&states)))
            .collect())
    }
}

/// The loaders of one request by `viewer`. No cache: each `load` reads the store (a
/// subscription connection lives long; its answers must not go stale), batching what one
/// request asks for at once.
pub fn for_viewer(store: &Store, viewer: &Viewer) -> DataLoader<JobCountsLoader> {
    DataLoader::new(
        JobCountsLoader {
            store: store.clone(),
            tenant: viewer.tenant.clone(),
        },
        tokio::spawn,
    )
}

/// A connection's job counts, through the request's loader (batched with the rest of its page).
pub async fn job_counts(
    ctx: &Context<'_>,
    scope: &ConnectionScope,
) -> async_graphql::Result<JobCounts> {
    let viewer = ctx.data::<Viewer>().ok();
    match (ctx.data::<DataLoader<JobCountsLoader>>().ok(), viewer) {
        // The loader is the viewer's tenant's; the scope is always one of that tenant's
        // connections (resolvers only build them from the viewer's own lookups).
        (Some(loader), Some(v)) if v.tenant.tenant_id() == scope.tenant_id() => Ok(loader
            .load_one(scope.connection_id().clone())
            .await
            .map_err(|e| internal(e.as_ref()))?
            .unwrap_or_default()),
        _ => {
            let counts = store(ctx)?
                .scoped(scope)
                .job_counts()
                .await
                .map_err(internal)?;
            Ok(JobCounts::from_states(&counts))
        }
    }
}
