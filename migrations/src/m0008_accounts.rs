//! People: users (an email and an Argon2id password hash), their memberships of tenants with a
//! role, dashboard sessions, and invitations. A session or an invitation is stored only as the
//! SHA-256 of its token. Row-level security on PostgreSQL for what belongs to a tenant; users
//! are global (one person may belong to several tenants).

use sea_orm_migration::async_trait;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const TABLES: &str = "\
CREATE TABLE users (
    id            TEXT PRIMARY KEY NOT NULL,
    email         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE TABLE memberships (
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    user_id    TEXT NOT NULL REFERENCES users (id),
    role       TEXT NOT NULL CHECK (role IN ('owner', 'operator', 'viewer')),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id);
CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users (id),
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    csrf_hash  TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE TABLE invitations (
    token_hash  TEXT PRIMARY KEY NOT NULL,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    email       TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('owner', 'operator', 'viewer')),
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    accepted_at BIGINT
);
";

const POSTGRES_RLS: &str = "
ALTER TABLE memberships ENABLE ROW LEVEL SECURITY;
ALTER TABLE memberships FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON memberships
    USING (current_setting('app.all_tenants', true) = 'on'
           OR tenant_id = NULLIF(current_setting('app.tenant_id', true), ''))
    WITH CHECK (current_setting('app.all_tenants', true) = 'on'
           OR tenant_id = NULLIF(current_setting('app.tenant_id', true), ''));
ALTER TABLE sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE sessions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON sessions
    USING (current_setting('app.all_tenants', true) = 'on'
           OR tenant_id = NULLIF(current_setting('app.tenant_id', true), ''))
    WITH CHECK (current_setting('app.all_tenants', true) = 'on'
           OR tenant_id = NULLIF(current_setting('app.tenant_id', true), ''));
ALTER TABLE invitations ENABLE ROW LEVEL SECURITY;
ALTER TABLE invitations FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON invitations
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
        let sqlite = TABLES.replace("BIGINT", "INTEGER");
        crate::run_sql(manager, &sqlite, &format!("{TABLES}{POSTGRES_RLS}")).await
    }
}
