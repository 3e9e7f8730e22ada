-- Agents that run work (issue 19): the labels a job requires, what its agent reports while it
-- runs (progress, exit code), its output lines, and agents as records (labels, version, host,
-- runs).
ALTER TABLE jobs ADD COLUMN requires TEXT;
ALTER TABLE jobs ADD COLUMN progress REAL;
ALTER TABLE jobs ADD COLUMN progress_message TEXT;
ALTER TABLE jobs ADD COLUMN exit_code INTEGER;
-- The name of the agent that holds (or last held) the lease.
ALTER TABLE jobs ADD COLUMN agent_name TEXT;
-- The output's counters, written by the output's own statement (not the job's version).
ALTER TABLE jobs ADD COLUMN output_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN output_bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN output_truncated INTEGER NOT NULL DEFAULT 0;

CREATE TABLE job_output (
    job_id BLOB NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    stream TEXT NOT NULL CHECK (stream IN ('stdout', 'stderr', 'system')),
    at TEXT NOT NULL,
    line TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
);
CREATE INDEX job_output_at ON job_output (at);

ALTER TABLE agents ADD COLUMN labels TEXT;
ALTER TABLE agents ADD COLUMN version TEXT;
ALTER TABLE agents ADD COLUMN host TEXT;
ALTER TABLE agents ADD COLUMN runs_completed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE agents ADD COLUMN runs_failed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE agents ADD COLUMN last_run_at TEXT;
