-- Sign-in with identity providers (issue 18): a person at a provider (issuer + subject) linked to
-- one account, and the pending authorization requests (server-side state, PKCE verifier, nonce).
CREATE TABLE user_identities (
    id UUID PRIMARY KEY,
    user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider VARCHAR(32) NOT NULL,
    issuer VARCHAR(512) NOT NULL,
    subject VARCHAR(255) NOT NULL,
    email VARCHAR(320),
    created_at TIMESTAMPTZ NOT NULL,
    last_login_at TIMESTAMPTZ
);
CREATE UNIQUE INDEX user_identities_subject ON user_identities (issuer, subject);
CREATE INDEX user_identities_user ON user_identities (user_id);

CREATE TABLE oauth_states (
    state_hash VARCHAR(64) PRIMARY KEY,
    provider VARCHAR(32) NOT NULL,
    browser_hash VARCHAR(64) NOT NULL,
    redirect_uri VARCHAR(2048) NOT NULL,
    pkce_verifier VARCHAR(128) NOT NULL,
    nonce VARCHAR(128) NOT NULL,
    mode SMALLINT NOT NULL,
    link_user_id UUID REFERENCES users (id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX oauth_states_expiry ON oauth_states (expires_at);
