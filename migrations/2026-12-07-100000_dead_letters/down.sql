-- Back to the partial index (which makes completions non-HOT again; see up.sql).
CREATE INDEX IF NOT EXISTS webhook_events_dead_idx ON webhook_events (id) WHERE status = 'dead';

CREATE OR REPLACE FUNCTION event_queue_sync_inserted() RETURNS trigger AS $$
BEGIN
    INSERT INTO event_queue (event_id, app_id, run_at)
    SELECT id, app_id, run_at FROM new_rows WHERE status = 'pending' AND app_id IS NOT NULL;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION event_queue_sync_updated() RETURNS trigger AS $$
BEGIN
    DELETE FROM event_queue q USING new_rows n
    WHERE q.event_id = n.id AND (n.status <> 'pending' OR n.app_id IS NULL);
    INSERT INTO event_queue (event_id, app_id, run_at)
    SELECT n.id, n.app_id, n.run_at FROM new_rows n
    WHERE n.status = 'pending' AND n.app_id IS NOT NULL
    ON CONFLICT (event_id) DO UPDATE SET app_id = excluded.app_id, run_at = excluded.run_at
        WHERE (event_queue.app_id, event_queue.run_at) IS DISTINCT FROM (excluded.app_id, excluded.run_at);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION event_queue_sync_deleted() RETURNS trigger AS $$
BEGIN
    DELETE FROM event_queue q USING old_rows o WHERE q.event_id = o.id;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

DROP TABLE dead_letters;
