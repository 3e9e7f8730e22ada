-- The fencing token of the current lease: each claim gets a new one, and heartbeat, complete and
-- fail must present it.
ALTER TABLE jobs ADD COLUMN lease_token VARCHAR(64);
