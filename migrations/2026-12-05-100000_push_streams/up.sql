-- Live streams (SSE and WebSocket) of the push catalogue: each app's announced events get a
-- position, a per-app counter that is gapless and follows commit order (it is taken under the
-- app's `push_feeds` row lock, held to commit), so a stream resumes from `Last-Event-ID`
-- without gaps or repeats. Streams are fanned out from a notification at commit that carries
-- the app id, never the event.

CREATE TABLE push_feeds (
    app_id uuid PRIMARY KEY REFERENCES apps (id) ON DELETE CASCADE,
    -- The position of the app's last announced event.
    position bigint NOT NULL DEFAULT 0,
    -- While in the future, the app's changes are announced (for its streams) even without a
    -- webhook subscription: a stream connection sets it to now + the resume window.
    listening_until timestamptz
);
COMMENT ON TABLE push_feeds IS 'Per app: the last outbox position, and until when a live stream listens.';

ALTER TABLE push_events ADD COLUMN position bigint;
UPDATE push_events e SET position = n.position
FROM (SELECT id, row_number() OVER (PARTITION BY app_id ORDER BY created_at, id) AS position
      FROM push_events) n
WHERE e.id = n.id;
INSERT INTO push_feeds (app_id, position)
SELECT app_id, max(position) FROM push_events GROUP BY app_id;
ALTER TABLE push_events ALTER COLUMN position SET NOT NULL;
CREATE UNIQUE INDEX push_events_position_idx ON push_events (app_id, position);

-- Short-lived tokens that open a stream from a browser (`?token=`), which cannot send the
-- `x-app-api-key` header on `EventSource` or WebSocket. Only a SHA-256 hash is stored.
CREATE TABLE stream_tokens (
    token_hash bytea PRIMARY KEY,
    app_id uuid NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stream_tokens_expires_idx ON stream_tokens (expires_at);
COMMENT ON TABLE stream_tokens IS 'Tokens that open a live stream for 5 minutes (SHA-256 hashes only).';

-- Wakes the api replicas' stream hubs at commit: one notification per app with new events
-- (the payload is its id; notifications are limited to 8 KB, events are read from the table).
CREATE FUNCTION notify_push_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('push_events', a.app_id::text)
    FROM (SELECT DISTINCT app_id FROM announced) a;
    RETURN NULL;
END;
$$;
CREATE TRIGGER push_events_notify AFTER INSERT ON push_events
    REFERENCING NEW TABLE AS announced
    FOR EACH STATEMENT EXECUTE FUNCTION notify_push_events();
