//! Runs over a connection's Stripe history made during onboarding: the "see if we fit" dry run
//! (what the last 30 days would post, nothing written to NetSuite) and the go-live backfill
//! (those days queued as events). Each is a job; this row holds its progress and its report, so
//! any instance can run it and the page can follow it. Row-level security on PostgreSQL as for
//! every tenant-owned table.

use sea_orm_migration::async_trait;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const TABLE: &str = "\
CREATE TABLE history_runs (
    id            TEXT NOT NULL PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    connection_id TEXT NOT NULL,
    kind          TEXT NOT NULL,
    state         TEXT NOT NULL,
    days          BIGINT NOT NULL,
    since         BIGINT NOT NULL,
    scanned       BIGINT NOT NULL,
    queued        BIGINT NOT NULL,
    report        TEXT,
    error         TEXT,
    created_at    BIGINT NOT NULL,
    started_at    BIGINT,
    finished_at   BIGINT,
    updated_at    BIGINT NOT NULL,
    FOREIGN KEY (tenant_id, connection_id) REFERENCES connections (tenant_id, id)
);
CREATE INDEX history_runs_latest ON history_runs (tenant_id, connection_id, kind, created_at);
";

const POSTGRES_RLS: &str = "
ALTER TABLE history_runs ENABLE ROW LEVEL SECURITY;
ALTER TABLE history_runs FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON history_runs
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
