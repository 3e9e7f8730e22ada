-- API keys for agents and services. Only a keyed hash (HMAC-SHA256) of the key is stored.
CREATE TABLE api_keys (
    id BLOB PRIMARY KEY NOT NULL,
    lookup_id TEXT NOT NULL CHECK (length(lookup_id) = 16),
    secret_hash TEXT NOT NULL CHECK (length(secret_hash) = 64),
    name TEXT NOT NULL,
    owner_id BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    scopes TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT,
    last_used_at TEXT,
    revoked_at TEXT
);
CREATE UNIQUE INDEX api_keys_lookup_id_key ON api_keys (lookup_id);
CREATE INDEX api_keys_owner ON api_keys (owner_id);
