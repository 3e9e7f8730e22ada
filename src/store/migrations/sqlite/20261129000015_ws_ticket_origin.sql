-- A WebSocket ticket lives as long as the credential that minted it: its revocation handle and
-- the user's token generation at minting.
ALTER TABLE ws_tickets ADD COLUMN minted_by TEXT;
ALTER TABLE ws_tickets ADD COLUMN token_generation INTEGER NOT NULL DEFAULT 0;
