//! Event listings page by keyset: the GraphQL `events` cursor is the last row's
//! `(received_at, event_id)`, and the next page is what sorts below it. The listing indexes end
//! in both columns (they ended in `received_at` alone), so every page, filtered by type or not,
//! is a range read of the index in its order, however deep: no sort, no rows skipped.

use sea_orm_migration::async_trait;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The same on both backends (each statement is plain SQL both accept).
const SQL: &str = "\
DROP INDEX events_received_at;
CREATE INDEX events_listing ON events (tenant_id, connection_id, received_at, event_id);
DROP INDEX events_type;
CREATE INDEX events_type ON events (tenant_id, connection_id, event_type, received_at, event_id);
";

#[allow(elided_lifetimes_in_paths)] // the trait is declared with an elided lifetime
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_sql(manager, SQL, SQL).await
    }
}
