-- Where each periodic sync got to (e.g. the last NetSuite lastmodifieddate and internal ID
-- copied into Stripe), so a restart resumes instead of starting over.
CREATE TABLE sync_watermarks (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
