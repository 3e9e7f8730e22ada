-- When the one replay a rotated refresh token is allowed within the grace period was used.
ALTER TABLE refresh_tokens ADD COLUMN grace_used_at TIMESTAMPTZ;
