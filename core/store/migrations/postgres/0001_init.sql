-- Stripe events exactly as received. One row per event ID: duplicates only bump `deliveries`.
-- Integers are BIGINT and booleans are BIGINT 0/1 so the same `Any` decoding works on SQLite.
CREATE TABLE events (
    event_id         TEXT PRIMARY KEY NOT NULL CHECK (event_id <> ''),
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
    job_id           TEXT
);
CREATE INDEX events_received_at ON events (received_at);
CREATE INDEX events_object_id ON events (object_id);
CREATE INDEX events_type ON events (event_type, received_at);

-- The durable job queue. Times are unix milliseconds.
CREATE TABLE jobs (
    id           TEXT PRIMARY KEY NOT NULL,
    kind         TEXT NOT NULL,
    event_id     TEXT,
    payload      TEXT NOT NULL,
    dedupe_key   TEXT NOT NULL UNIQUE,
    state        TEXT NOT NULL CHECK (state IN ('queued', 'running', 'waiting', 'succeeded', 'failed')),
    attempts     BIGINT NOT NULL DEFAULT 0,
    max_attempts BIGINT NOT NULL,
    run_at       BIGINT NOT NULL,
    locked_by    TEXT,
    locked_until BIGINT,
    last_error   TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX jobs_claim ON jobs (state, run_at);
CREATE INDEX jobs_lease ON jobs (state, locked_until);
CREATE INDEX jobs_event ON jobs (event_id);

-- Append-only audit log: what happened to each event and job, in plain words.
CREATE TABLE audit (
    id               BIGSERIAL PRIMARY KEY,
    at               BIGINT NOT NULL,
    event_id         TEXT,
    job_id           TEXT,
    stripe_object_id TEXT,
    step             TEXT NOT NULL,
    message          TEXT NOT NULL,
    data             TEXT
);
CREATE INDEX audit_event ON audit (event_id, id);
CREATE INDEX audit_job ON audit (job_id, id);

-- The audit log is evidence: refuse edits and deletions at the database level too.
CREATE FUNCTION audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_no_update_delete BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
