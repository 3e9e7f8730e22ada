ALTER TABLE jobs ADD COLUMN lease_owner BLOB;
ALTER TABLE jobs ADD COLUMN lease_expires_at TEXT;
ALTER TABLE jobs ADD COLUMN result TEXT;
ALTER TABLE jobs ADD COLUMN error TEXT;
CREATE INDEX jobs_claim ON jobs (status, priority, created_at);

CREATE TABLE agents (
    key_id BLOB PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    owner_id BLOB,
    last_seen_at TEXT NOT NULL
);
