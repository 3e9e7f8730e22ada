-- Sign-in with identity providers (issue 18): a person at a provider (issuer + subject) linked to
-- one account, and the pending authorization requests (server-side state, PKCE verifier, nonce).
CREATE TABLE user_identities (
    id BLOB PRIMARY KEY NOT NULL,
    user_id BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider TEXT NOT NULL,
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    email TEXT,
    created_at TEXT NOT NULL,
    last_login_at TEXT
);
CREATE UNIQUE INDEX user_identities_subject ON user_identities (issuer, subject);
CREATE INDEX user_identities_user ON user_identities (user_id);

CREATE TABLE oauth_states (
    state_hash TEXT PRIMARY KEY NOT NULL,
    provider TEXT NOT NULL,
    browser_hash TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    nonce TEXT NOT NULL,
    mode INTEGER NOT NULL,
    link_user_id BLOB,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX oauth_states_expiry ON oauth_states (expires_at);
