ALTER TABLE jobs ADD COLUMN lease_owner UUID;
ALTER TABLE jobs ADD COLUMN lease_expires_at TIMESTAMPTZ;
ALTER TABLE jobs ADD COLUMN result JSONB;
ALTER TABLE jobs ADD COLUMN error TEXT;
CREATE INDEX jobs_claim ON jobs (status, priority DESC, created_at);

CREATE TABLE agents (
    key_id UUID PRIMARY KEY,
    name VARCHAR(255) NOT NULL,
    owner_id UUID,
    last_seen_at TIMESTAMPTZ NOT NULL
);
