-- The event log of one owner in id order (a user's live tail and resume): a range of this index
-- instead of a walk of every event after the cursor.
CREATE INDEX events_owner ON events (owner_id, id);
