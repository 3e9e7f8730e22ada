-- A WebSocket ticket lives as long as the credential that minted it: its revocation handle and
-- the user's token generation at minting.
ALTER TABLE ws_tickets ADD COLUMN minted_by VARCHAR(64);
ALTER TABLE ws_tickets ADD COLUMN token_generation BIGINT NOT NULL DEFAULT 0;
