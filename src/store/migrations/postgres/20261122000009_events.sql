CREATE TABLE events (
    id BIGSERIAL PRIMARY KEY,
    at TIMESTAMPTZ NOT NULL,
    stream VARCHAR(20) NOT NULL CHECK (stream IN ('collab', 'orchestrator')),
    event VARCHAR(100) NOT NULL,
    actor VARCHAR(255),
    target VARCHAR(1024),
    task_id VARCHAR(255),
    run_id VARCHAR(255),
    owner_id UUID,
    payload JSONB NOT NULL
);
CREATE INDEX events_task ON events (task_id, id);
CREATE INDEX events_run ON events (run_id, id);
CREATE INDEX events_stream ON events (stream, id);
CREATE INDEX events_at ON events (at);
