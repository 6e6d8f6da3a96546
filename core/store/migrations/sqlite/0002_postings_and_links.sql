-- What the connector wrote to NetSuite, one row per (Stripe object, kind of record), so a
-- redelivered or replayed event finds its NetSuite record without asking NetSuite.
CREATE TABLE postings (
    stripe_object_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    netsuite_record_type TEXT NOT NULL,
    netsuite_internal_id TEXT NOT NULL,
    external_id TEXT NOT NULL,
    event_id TEXT,
    amount_minor BIGINT NOT NULL,
    currency TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (stripe_object_id, kind)
);
CREATE INDEX postings_created ON postings (created_at);

-- Cached links from Stripe customers and products to NetSuite records.
CREATE TABLE customer_links (
    stripe_customer_id TEXT PRIMARY KEY,
    netsuite_internal_id TEXT NOT NULL,
    source TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE item_links (
    stripe_product_id TEXT PRIMARY KEY,
    netsuite_internal_id TEXT NOT NULL,
    source TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Stripe products seen without a NetSuite item, for `mappings unmapped`.
CREATE TABLE unmapped_products (
    stripe_product_id TEXT PRIMARY KEY,
    name TEXT,
    last_object_id TEXT NOT NULL,
    last_event_id TEXT,
    first_seen BIGINT NOT NULL,
    last_seen BIGINT NOT NULL
);
