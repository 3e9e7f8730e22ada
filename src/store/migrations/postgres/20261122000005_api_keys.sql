-- API keys for agents and services. Only a keyed hash (HMAC-SHA256) of the key is stored.
CREATE TABLE api_keys (
    id UUID PRIMARY KEY,
    lookup_id VARCHAR(16) NOT NULL CHECK (length(lookup_id) = 16),
    secret_hash VARCHAR(64) NOT NULL CHECK (length(secret_hash) = 64),
    name VARCHAR(100) NOT NULL,
    owner_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    scopes VARCHAR(255) NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ,
    last_used_at TIMESTAMPTZ,
    revoked_at TIMESTAMPTZ
);
CREATE UNIQUE INDEX api_keys_lookup_id_key ON api_keys (lookup_id);
CREATE INDEX api_keys_owner ON api_keys (owner_id);
