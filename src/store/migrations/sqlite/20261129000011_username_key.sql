-- Usernames are compared in their PRECIS UsernameCaseMapped form (RFC 8265 §3.3), computed by
-- the service so both engines agree; rows from before are filled in at start-up.
ALTER TABLE users ADD COLUMN username_key TEXT;
CREATE UNIQUE INDEX users_username_canonical ON users (username_key);
DROP INDEX users_username_key;
