-- The request id ingest answered the webhook with (`x-request-id`: the caller's, when it sent a
-- usable one, else a new one), so an event's log lines in ingest and in the worker can be
-- found from either side. NULL for events stored before, and for snapshots.
ALTER TABLE webhook_events ADD COLUMN request_id text;
COMMENT ON COLUMN webhook_events.request_id IS 'The x-request-id ingest answered with; in its log lines and the worker''s.';
