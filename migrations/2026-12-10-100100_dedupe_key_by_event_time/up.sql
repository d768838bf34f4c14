-- Idempotent enqueue keys on (app_id, event_timestamp, dedupe_key) instead of (app_id,
-- dedupe_key). Both the event's time and its dedupe key are functions of the payload, so the
-- same event still conflicts with itself and distinct events never do: what is a duplicate is
-- unchanged. What changes is where an insert lands in the index. The dedupe key is a SHA-256,
-- so by it alone every new event went to a random leaf of an index as large as the history:
-- beyond shared_buffers, a read and a dirty page to evict per event (a batch insert of ingest's
-- shape into an event log of 3M events ran 20-30% below the same insert into a fresh one).
-- Live events carry the time Dialpad sent them, so led by it they land on the few leaves at the
-- right edge, whatever the history (README, "Ingest at the size of the history"). Events
-- without a time keep the old spread among themselves.
-- Swapping the constraint onto the index built by the previous migration is a catalog change:
-- the table is locked for milliseconds, not for a build.
ALTER TABLE webhook_events
    DROP CONSTRAINT webhook_events_dedupe_key,
    ADD CONSTRAINT webhook_events_dedupe_key UNIQUE USING INDEX webhook_events_dedupe_key_by_time;
