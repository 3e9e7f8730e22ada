-- Pending second-factor challenges: single-use, bound to the token generation of the password
-- login that created them.
CREATE TABLE mfa_challenges (
    challenge_hash VARCHAR(64) PRIMARY KEY,
    user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind SMALLINT NOT NULL,
    token_generation BIGINT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    used_at TIMESTAMPTZ
);
CREATE INDEX mfa_challenges_expiry ON mfa_challenges (expires_at);
