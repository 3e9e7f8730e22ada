-- The queue overview (GET /api/v1/jobs/overview) counts completions and failures per hour by
-- completed_at: a range of this index instead of a walk of every job.
CREATE INDEX jobs_finished ON jobs (completed_at);
