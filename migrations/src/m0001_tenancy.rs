//! Tenants, connections, API keys, and every tenant-owned table keyed per connection.

use sea_orm_migration::async_trait;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[allow(elided_lifetimes_in_paths)] // the trait is declared with an elided lifetime
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_sql(
            manager,
            include_str!("sql/sqlite_0001_tenancy.sql"),
            include_str!("sql/postgres_0001_tenancy.sql"),
        )
        .await
    }
}
