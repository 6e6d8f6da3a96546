-- Row-level security on every tenant-owned table (defence in depth behind the store's scoped API).
--
-- A transaction sees a tenant's rows only when it set `app.tenant_id` to that tenant with
-- set_config(..., true) (the store does so in every tenant-scoped transaction). The store's own
-- cross-tenant paths (the group-commit writer, which commits several tenants' deliveries at once;
-- the worker's claims; the connection registry) say so explicitly with `app.all_tenants = 'on'`.
-- Nothing set: nothing seen. ENABLE plus FORCE, so the tables' owner is held to it too; a
-- superuser is not, which is why the store runs as `mlc_service` (created here when the
-- migrating role may create roles) rather than as the superuser it may have connected with.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'mlc_service') THEN
        BEGIN
            CREATE ROLE mlc_service NOLOGIN NOSUPERUSER NOBYPASSRLS;
        -- Roles are shared by the server's databases: two databases migrating at once race
        -- to create it, and the loser sees unique_violation (it exists all the same).
        EXCEPTION WHEN insufficient_privilege OR duplicate_object OR unique_violation THEN
            RAISE NOTICE 'role mlc_service not created here: it exists, or the store will run as the connecting role';
        END;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'mlc_service') THEN
        BEGIN
            EXECUTE format('GRANT mlc_service TO %I', current_user);
        EXCEPTION
            WHEN unique_violation THEN
                NULL; -- granted by a migration of another database at the same moment
            -- A role that may not grant it (no CREATEROLE, no ADMIN OPTION; mlc_service made
            -- by a DBA or another database's migration): the store acts as mlc_service if a
            -- DBA made this role a member, else as this role, which FORCE binds to the
            -- policies as the tables' owner.
            WHEN insufficient_privilege THEN
                RAISE NOTICE 'role mlc_service not granted to % (it may not grant it): the store acts as mlc_service if % is a member, else as %', current_user, current_user, current_user;
        END;
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO mlc_service', current_schema());
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO mlc_service', current_schema());
        EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO mlc_service', current_schema());
        -- Tables and sequences that later migrations add.
        EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO mlc_service', current_schema());
        EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT USAGE, SELECT ON SEQUENCES TO mlc_service', current_schema());
    END IF;
END
$$;

ALTER TABLE tenant_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenant_keys
    USING (current_setting('app.all_tenants', true) = 'on'
           OR tenant_id = NULLIF(current_setting('app.tenant_id', true), ''))
    WITH CHECK (current_setting('app.all_tenants', true) = 'on'
           OR tenant_id = NULLIF(current_setting('app.tenant_id', true), ''));

ALTER TABLE connections ENABLE ROW LEVEL SECURITY;
ALTER TABLE connections FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON connections
    USING (current_setting('app.all_tenants', true) = 'on'
           OR tenant_id = NULLIF(current_setting('app.tenant_id', true), ''))
    WITH CHECK (current_setting('app.all_tenants', true) = 'on'
           OR tenant_id = NULLIF(current_setting('app.tenant_id', true), ''));

ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON api_keys
    USING (current_setting('app.all_tenants', true) = 'on'
           OR tenant_id = NULLIF(current_setting('app.tenant_id', true), ''))
    WITH CHECK (current_setting('app.all_tenants', true) = 'on'
           OR tenant_id = NULLIF(current_setting('app.tenant_id', true), ''));

ALTER TABLE events ENABLE ROW LEVEL SECURITY;
ALTER TABLE events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON events
    USING (current_setting('app.all_tenants', true) = 'on'
           OR tenant_id = NULLIF(current_setting('app.tenant_id', true), ''))
    WITH CHECK (current_setting('app.all_tenants', true) = 'on'
           OR tenant_id = NULLIF(current_setting('app.tenant_id', true), ''));

ALTER TABLE jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE jobs FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON jobs
    USING (current_setting('app.all_tenants', true) = 'on'
           OR tenant_id = NULLIF(current_setting('app.tenant_id', true), ''))
    WITH CHECK (current_setting('app.all_tenants', true) = 'on'
           OR tenant_id = NULLIF(current_setting('app.tenant_id', true), ''));

ALTER TABLE audit ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit
    USING (current_setting('app.all_tenants', true) = 'on'
           OR tenant_id = NULLIF(current_setting('app.tenant_id', true), ''))
    WITH CHECK (current_setting('app.all_tenants', true) = 'on'
           OR tenant_id = NULLIF(current_setting('app.tenant_id', true), ''));

ALTER TABLE postings ENABLE ROW LEVEL SECURITY;
ALTER TABLE postings FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON postings
    USING (current_setting('app.all_tenants', true) = 'on'
           OR tenant_id = NULLIF(current_setting('app.tenant_id', true), ''))
    WITH CHECK (current_setting('app.all_tenants', true) = 'on'
           OR tenant_id = NULLIF(current_setting('app.tenant_id', true), ''));

ALTER TABLE customer_links ENABLE ROW LEVEL SECURITY;
ALTER TABLE customer_links FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON customer_links
    USING (current_setting('app.all_tenants', true) = 'on'
           OR tenant_id = NULLIF(current_setting('app.tenant_id', true), ''))
    WITH CHECK (current_setting('app.all_tenants', true) = 'on'
           OR tenant_id = NULLIF(current_setting('app.tenant_id', true), ''));

ALTER TABLE item_links ENABLE ROW LEVEL SECURITY;
ALTER TABLE item_links FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON item_links
    USING (current_setting('app.all_tenants', true) = 'on'
           OR tenant_id = NULLIF(current_setting('app.tenant_id', true), ''))
    WITH CHECK (current_setting('app.all_tenants', true) = 'on'
           OR tenant_id = NULLIF(current_setting('app.tenant_id', true), ''));

ALTER TABLE unmapped_products ENABLE ROW LEVEL SECURITY;
ALTER TABLE unmapped_products FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON unmapped_products
    USING (current_setting('app.all_tenants', true) = 'on'
           OR tenant_id = NULLIF(current_setting('app.tenant_id', true), ''))
    WITH CHECK (current_setting('app.all_tenants', true) = 'on'
           OR tenant_id = NULLIF(current_setting('app.tenant_id', true), ''));

ALTER TABLE covered_payments ENABLE ROW LEVEL SECURITY;
ALTER TABLE covered_payments FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON covered_payments
    USING (current_setting('app.all_tenants', true) = 'on'
           OR tenant_id = NULLIF(current_setting('app.tenant_id', true), ''))
    WITH CHECK (current_setting('app.all_tenants', true) = 'on'
           OR tenant_id = NULLIF(current_setting('app.tenant_id', true), ''));

ALTER TABLE sync_watermarks ENABLE ROW LEVEL SECURITY;
ALTER TABLE sync_watermarks FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON sync_watermarks
    USING (current_setting('app.all_tenants', true) = 'on'
           OR tenant_id = NULLIF(current_setting('app.tenant_id', true), ''))
    WITH CHECK (current_setting('app.all_tenants', true) = 'on'
           OR tenant_id = NULLIF(current_setting('app.tenant_id', true), ''));

ALTER TABLE credentials ENABLE ROW LEVEL SECURITY;
ALTER TABLE credentials FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON credentials
    USING (current_setting('app.all_tenants', true) = 'on'
           OR tenant_id = NULLIF(current_setting('app.tenant_id', true), ''))
    WITH CHECK (current_setting('app.all_tenants', true) = 'on'
           OR tenant_id = NULLIF(current_setting('app.tenant_id', true), ''));

-- tenants itself: a tenant sees its own row.
ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants
    USING (current_setting('app.all_tenants', true) = 'on'
           OR id = NULLIF(current_setting('app.tenant_id', true), ''))
    WITH CHECK (current_setting('app.all_tenants', true) = 'on'
           OR id = NULLIF(current_setting('app.tenant_id', true), ''));
