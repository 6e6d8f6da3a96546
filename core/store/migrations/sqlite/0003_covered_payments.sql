-- Payments (charges, payment intents) known to belong to a Stripe invoice, so their own events
-- are recognised without asking Stripe again.
CREATE TABLE covered_payments (
    payment_object_id TEXT PRIMARY KEY,
    covered_by TEXT NOT NULL,
    recorded_at BIGINT NOT NULL
);
