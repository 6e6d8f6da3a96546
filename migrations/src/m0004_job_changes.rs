//! An index on when each connection's jobs last changed: the GraphQL `eventUpdated`
//! subscription asks "what changed since" every half second per subscriber, which must not walk
//! the connection's whole history.

use sea_orm_migration::async_trait;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[allow(elided_lifetimes_in_paths)] // the trait is declared with an elided lifetime
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let sql =
            "CREATE INDEX sync_jobs_changed ON sync_jobs (tenant_id, connection_id, updated_at)";
        crate::run_sql(manager, sql, sql).await
    }
}
