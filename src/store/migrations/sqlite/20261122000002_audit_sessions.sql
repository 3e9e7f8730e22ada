CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    event TEXT NOT NULL,
    outcome TEXT NOT NULL,
    actor_id BLOB,
    actor TEXT,
    client_ip TEXT,
    request_id TEXT,
    details TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_event ON audit_log (event);
CREATE INDEX audit_log_actor ON audit_log (actor_id);

CREATE TABLE sessions (
    id BLOB PRIMARY KEY NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    user_id BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    revoked_at TEXT,
    ip TEXT,
    user_agent TEXT
);
CREATE INDEX sessions_user ON sessions (user_id);
