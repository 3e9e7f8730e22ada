-- Agents that run work (issue 19): the labels a job requires, what its agent reports while it
-- runs (progress, exit code), its output lines, and agents as records (labels, version, host,
-- runs).
ALTER TABLE jobs ADD COLUMN requires JSONB;
ALTER TABLE jobs ADD COLUMN progress DOUBLE PRECISION;
ALTER TABLE jobs ADD COLUMN progress_message TEXT;
ALTER TABLE jobs ADD COLUMN exit_code INTEGER;
-- The name of the agent that holds (or last held) the lease.
ALTER TABLE jobs ADD COLUMN agent_name TEXT;
-- The output's counters, written by the output's own statement (not the job's version).
ALTER TABLE jobs ADD COLUMN output_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN output_bytes BIGINT NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN output_truncated BOOLEAN NOT NULL DEFAULT FALSE;

CREATE TABLE job_output (
    job_id UUID NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    attempt INTEGER NOT NULL,
    stream VARCHAR(10) NOT NULL CHECK (stream IN ('stdout', 'stderr', 'system')),
    at TIMESTAMPTZ NOT NULL,
    line TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
);
CREATE INDEX job_output_at ON job_output (at);

ALTER TABLE agents ADD COLUMN labels JSONB;
ALTER TABLE agents ADD COLUMN version VARCHAR(64);
ALTER TABLE agents ADD COLUMN host VARCHAR(255);
ALTER TABLE agents ADD COLUMN runs_completed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE agents ADD COLUMN runs_failed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE agents ADD COLUMN last_run_at TIMESTAMPTZ;
