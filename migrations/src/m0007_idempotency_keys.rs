//! Idempotency keys of GraphQL mutations: a retried mutation with the same key gets the first
//! answer instead of acting twice. One row per (tenant, key); kept 24 hours. Row-level
//! security on PostgreSQL as for every tenant-owned table.

use sea_orm_migration::async_trait;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const TABLE: &str = "\
CREATE TABLE idempotency_keys (
    tenant_id    TEXT NOT NULL,
    idem_key     TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    response     TEXT,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, idem_key)
);
";

const POSTGRES_RLS: &str = "
ALTER TABLE idempotency_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE idempotency_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON idempotency_keys
    USING (current_setting('app.all_tenants', true) = 'on'
           OR tenant_id = NULLIF(current_setting('app.tenant_id', true), ''))
    WITH CHECK (current_setting('app.all_tenants', true) = 'on'
           OR tenant_id = NULLIF(current_setting('app.tenant_id', true), ''));
";

#[allow(elided_lifetimes_in_paths)] // the trait is declared with an elided lifetime
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite's integers are INTEGER, as in the other tables.
        let sqlite = TABLE.replace("BIGINT", "INTEGER");
        crate::run_sql(manager, &sqlite, &format!("{TABLE}{POSTGRES_RLS}")).await
    }
}
