-- Job lists are read newest first (created_at DESC, id DESC), filtered by owner and/or status,
-- and paged by keyset (after a (created_at, id)): each filter has an index whose order is the
-- list's order, so a page costs its own rows, not the rows before it.
DROP INDEX jobs_created;
DROP INDEX jobs_owner;
DROP INDEX jobs_status;
CREATE INDEX jobs_page ON jobs (created_at, id);
CREATE INDEX jobs_owner_page ON jobs (owner_id, created_at, id);
CREATE INDEX jobs_status_page ON jobs (status, created_at, id);
CREATE INDEX jobs_owner_status_page ON jobs (owner_id, status, created_at, id);
