-- Credentials sealed with the operator's master key (see src/sealed.rs): never plaintext. The
-- row named _key_check holds a known value sealed with the same key, to tell a wrong key apart.
CREATE TABLE credentials (
    name TEXT PRIMARY KEY,
    ciphertext BYTEA NOT NULL,
    updated_at BIGINT NOT NULL
);
