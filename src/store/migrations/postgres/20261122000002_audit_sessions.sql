CREATE TABLE audit_log (
    id BIGSERIAL PRIMARY KEY,
    at TIMESTAMPTZ NOT NULL,
    event VARCHAR(100) NOT NULL,
    outcome VARCHAR(20) NOT NULL,
    actor_id UUID,
    actor VARCHAR(255),
    client_ip VARCHAR(64),
    request_id VARCHAR(128),
    details JSONB NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_event ON audit_log (event);
CREATE INDEX audit_log_actor ON audit_log (actor_id);

CREATE TABLE sessions (
    id UUID PRIMARY KEY,
    token_hash VARCHAR(64) NOT NULL UNIQUE,
    user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL,
    last_seen_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    revoked_at TIMESTAMPTZ,
    ip VARCHAR(64),
    user_agent VARCHAR(512)
);
CREATE INDEX sessions_user ON sessions (user_id);
