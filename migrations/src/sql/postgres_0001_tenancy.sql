-- The multi-tenant schema. Every tenant-owned row carries tenant_id and connection_id; keys and
-- uniqueness are per connection, so two tenants connecting the same Stripe account each keep
-- their own copy of every event.

CREATE TABLE tenants (
    id         TEXT PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Envelope encryption: one data key per tenant, wrapped by the master key (never stored).
CREATE TABLE tenant_keys (
    tenant_id   TEXT PRIMARY KEY NOT NULL REFERENCES tenants (id),
    wrapped_key BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
    rotated_at  BIGINT NOT NULL
);

CREATE TABLE connections (
    tenant_id         TEXT NOT NULL REFERENCES tenants (id),
    id                TEXT NOT NULL,
    route_id          TEXT NOT NULL UNIQUE,
    name              TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('draft', 'active', 'paused')),
    -- Posting, reference and client settings as JSON (never secrets: those are in credentials).
    settings          TEXT NOT NULL,
    netsuite_account  TEXT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    last_test_at      BIGINT,
    last_test_ok      BIGINT,
    last_test_message TEXT,
    token_issued_at   BIGINT,
    last_error        TEXT,
    last_error_at     BIGINT,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY NOT NULL,
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    name         TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('owner', 'operator', 'viewer')),
    key_hash     TEXT NOT NULL UNIQUE,
    prefix       TEXT NOT NULL,
    last4        TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at   BIGINT
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, created_at);

CREATE TABLE events (
    tenant_id        TEXT NOT NULL,
    connection_id    TEXT NOT NULL,
    event_id         TEXT NOT NULL CHECK (event_id <> ''),
    event_type       TEXT NOT NULL,
    object_id        TEXT,
    livemode         BIGINT NOT NULL,
    api_version      TEXT,
    stripe_created   BIGINT NOT NULL,
    raw_body         BYTEA NOT NULL,
    signature_header TEXT NOT NULL,
    received_at      BIGINT NOT NULL,
    handled          BIGINT NOT NULL,
    deliveries       BIGINT NOT NULL DEFAULT 1,
    last_delivery_at BIGINT NOT NULL,
    -- The job created with the event (NULL for ignored events).
    job_id           TEXT,
    PRIMARY KEY (tenant_id, connection_id, event_id),
    FOREIGN KEY (tenant_id, connection_id) REFERENCES connections (tenant_id, id)
);
CREATE INDEX events_received_at ON events (tenant_id, connection_id, received_at);
CREATE INDEX events_object_id ON events (tenant_id, connection_id, object_id);
CREATE INDEX events_type ON events (tenant_id, connection_id, event_type, received_at);

CREATE TABLE jobs (
    id            TEXT PRIMARY KEY NOT NULL,
    tenant_id     TEXT NOT NULL,
    connection_id TEXT NOT NULL,
    kind          TEXT NOT NULL,
    event_id      TEXT,
    payload       TEXT NOT NULL,
    dedupe_key    TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('queued', 'running', 'waiting', 'succeeded', 'failed')),
    attempts      BIGINT NOT NULL DEFAULT 0,
    max_attempts  BIGINT NOT NULL,
    run_at        BIGINT NOT NULL,
    locked_by     TEXT,
    locked_until  BIGINT,
    last_error    TEXT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    UNIQUE (tenant_id, connection_id, dedupe_key),
    FOREIGN KEY (tenant_id, connection_id) REFERENCES connections (tenant_id, id)
);
CREATE INDEX jobs_claim ON jobs (state, run_at);
CREATE INDEX jobs_lease ON jobs (state, locked_until);
CREATE INDEX jobs_event ON jobs (tenant_id, connection_id, event_id);
CREATE INDEX jobs_connection_state ON jobs (tenant_id, connection_id, state);

CREATE TABLE audit (
    id               BIGSERIAL PRIMARY KEY,
    tenant_id        TEXT NOT NULL,
    connection_id    TEXT NOT NULL,
    at               BIGINT NOT NULL,
    event_id         TEXT,
    job_id           TEXT,
    stripe_object_id TEXT,
    step             TEXT NOT NULL,
    message          TEXT NOT NULL,
    data             TEXT
);
CREATE INDEX audit_event ON audit (tenant_id, connection_id, event_id, id);
CREATE INDEX audit_job ON audit (job_id, id);
CREATE INDEX audit_step ON audit (tenant_id, connection_id, step, id);
CREATE INDEX audit_object ON audit (tenant_id, connection_id, stripe_object_id, id);

CREATE FUNCTION audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_no_update_delete BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();

CREATE TABLE postings (
    tenant_id            TEXT NOT NULL,
    connection_id        TEXT NOT NULL,
    stripe_object_id     TEXT NOT NULL,
    kind                 TEXT NOT NULL,
    netsuite_record_type TEXT NOT NULL,
    netsuite_internal_id TEXT NOT NULL,
    external_id          TEXT NOT NULL,
    event_id             TEXT,
    amount_minor         BIGINT NOT NULL,
    currency             TEXT NOT NULL,
    created_at           BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, connection_id, stripe_object_id, kind)
);
CREATE INDEX postings_created ON postings (tenant_id, connection_id, created_at);
CREATE INDEX postings_netsuite_id ON postings (tenant_id, connection_id, netsuite_internal_id);
CREATE INDEX postings_external_id ON postings (tenant_id, connection_id, external_id);

CREATE TABLE customer_links (
    tenant_id            TEXT NOT NULL,
    connection_id        TEXT NOT NULL,
    stripe_customer_id   TEXT NOT NULL,
    netsuite_internal_id TEXT NOT NULL,
    source               TEXT NOT NULL,
    updated_at           BIGINT NOT NULL,
    fingerprint          TEXT,
    PRIMARY KEY (tenant_id, connection_id, stripe_customer_id)
);
CREATE INDEX customer_links_netsuite ON customer_links (tenant_id, connection_id, netsuite_internal_id);

CREATE TABLE item_links (
    tenant_id            TEXT NOT NULL,
    connection_id        TEXT NOT NULL,
    stripe_product_id    TEXT NOT NULL,
    netsuite_internal_id TEXT NOT NULL,
    source               TEXT NOT NULL,
    updated_at           BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, connection_id, stripe_product_id)
);
CREATE INDEX item_links_netsuite ON item_links (tenant_id, connection_id, netsuite_internal_id);

CREATE TABLE unmapped_products (
    tenant_id         TEXT NOT NULL,
    connection_id     TEXT NOT NULL,
    stripe_product_id TEXT NOT NULL,
    name              TEXT,
    last_object_id    TEXT NOT NULL,
    last_event_id     TEXT,
    first_seen        BIGINT NOT NULL,
    last_seen         BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, connection_id, stripe_product_id)
);

CREATE TABLE covered_payments (
    tenant_id         TEXT NOT NULL,
    connection_id     TEXT NOT NULL,
    payment_object_id TEXT NOT NULL,
    covered_by        TEXT NOT NULL,
    recorded_at       BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, connection_id, payment_object_id)
);

-- The concurrency budget belongs to the NetSuite account, shared by every connection and every
-- instance that posts to it: not tenant-owned.
CREATE TABLE netsuite_slots (
    account    TEXT NOT NULL,
    slot       BIGINT NOT NULL,
    holder     TEXT,
    expires_at BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (account, slot)
);

CREATE TABLE sync_watermarks (
    tenant_id     TEXT NOT NULL,
    connection_id TEXT NOT NULL,
    name          TEXT NOT NULL,
    value         TEXT NOT NULL,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, connection_id, name)
);

CREATE TABLE credentials (
    tenant_id     TEXT NOT NULL,
    connection_id TEXT NOT NULL,
    name          TEXT NOT NULL,
    ciphertext    BYTEA NOT NULL,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, connection_id, name),
    FOREIGN KEY (tenant_id, connection_id) REFERENCES connections (tenant_id, id)
);
