//! PostgreSQL row-level security on every tenant-owned table, as defence in depth behind the
//! store's tenant-scoped API: a query that forgot its filter still sees only the tenant set in
//! its transaction (`app.tenant_id`). Nothing to do on SQLite (one process, no roles).

use sea_orm_migration::async_trait;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[allow(elided_lifetimes_in_paths)] // the trait is declared with an elided lifetime
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_sql(manager, "", include_str!("sql/postgres_0002_rls.sql")).await
    }
}
