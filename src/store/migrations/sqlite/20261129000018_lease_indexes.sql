-- Leases are found by their end (the sweeper and every claim settle expired ones) and by their
-- holder (an agent's current jobs): partial indexes over the leased jobs only, so neither walks
-- the running jobs that hold no lease.
CREATE INDEX jobs_lease_expiry ON jobs (lease_expires_at) WHERE lease_owner IS NOT NULL;
CREATE INDEX jobs_lease_owner ON jobs (lease_owner) WHERE lease_owner IS NOT NULL;
