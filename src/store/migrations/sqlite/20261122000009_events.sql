CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    stream TEXT NOT NULL CHECK (stream IN ('collab', 'orchestrator')),
    event TEXT NOT NULL,
    actor TEXT,
    target TEXT,
    task_id TEXT,
    run_id TEXT,
    owner_id BLOB,
    payload TEXT NOT NULL
);
CREATE INDEX events_task ON events (task_id, id);
CREATE INDEX events_run ON events (run_id, id);
CREATE INDEX events_stream ON events (stream, id);
CREATE INDEX events_at ON events (at);
