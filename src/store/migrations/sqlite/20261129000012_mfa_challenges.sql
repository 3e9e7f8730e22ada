-- Pending second-factor challenges: single-use, bound to the token generation of the password
-- login that created them.
CREATE TABLE mfa_challenges (
    challenge_hash TEXT PRIMARY KEY NOT NULL,
    user_id BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind INTEGER NOT NULL,
    token_generation INTEGER NOT NULL,
    expires_at TEXT NOT NULL,
    used_at TEXT
);
CREATE INDEX mfa_challenges_expiry ON mfa_challenges (expires_at);
