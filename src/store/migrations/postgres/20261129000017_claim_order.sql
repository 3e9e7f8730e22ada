-- A claim takes the first pending job in (priority DESC, created_at, id) order, of one owner or
-- of all: each form has an index in exactly that order, so a claim reads one index entry (or a
-- few skipped ones) instead of sorting the pending jobs of a priority.
DROP INDEX jobs_claim;
CREATE INDEX jobs_claim ON jobs (status, priority DESC, created_at, id);
CREATE INDEX jobs_owner_claim ON jobs (owner_id, status, priority DESC, created_at, id);
