-- The NetSuite concurrency budget shared by every instance on this database: one row per slot,
-- held with a lease so a crashed instance's slots come back.
CREATE TABLE netsuite_slots (
    slot BIGINT PRIMARY KEY,
    holder TEXT,
    expires_at BIGINT NOT NULL DEFAULT 0
);
