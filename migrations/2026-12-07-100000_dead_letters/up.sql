-- Completing an event must stay a HOT update (2026-12-03-120000_event_log_hot_updates): once an
-- index of webhook_events names `status`, even in its predicate, no status change is HOT, and
-- every completed event adds an entry to each index of the event log (measured: 0 of 2,500
-- completions HOT with the partial dead-letter index of 2026-12-06-100000, a third without it
-- on bulk-loaded pages). So dead letters get a small table of their own, kept in step by the
-- queue's statement triggers like event_queue (every writer is covered), and that index goes.

-- Writers wait for the few milliseconds this takes, so none is missed between the copy and
-- the new triggers.
LOCK TABLE webhook_events IN ACCESS EXCLUSIVE MODE;

CREATE TABLE dead_letters (
    event_id bigint PRIMARY KEY
);
COMMENT ON TABLE dead_letters IS 'The dead-lettered events of webhook_events (status = dead), for the queue_dead_events gauge and GET /internal/events?status=dead. Kept in step by triggers on webhook_events.';
COMMENT ON COLUMN dead_letters.event_id IS 'webhook_events.id (no foreign key, as event_queue: the triggers maintain it).';

INSERT INTO dead_letters (event_id) SELECT id FROM webhook_events WHERE status = 'dead';

-- Each function keeps its queue statements and adds the dead letters'. The deletes probe the
-- primary key once per changed event (= ANY of an array), whatever the planner thinks of a
-- transition table's size.
CREATE OR REPLACE FUNCTION event_queue_sync_inserted() RETURNS trigger AS $$
BEGIN
    INSERT INTO event_queue (event_id, app_id, run_at)
    SELECT id, app_id, run_at FROM new_rows WHERE status = 'pending' AND app_id IS NOT NULL;
    INSERT INTO dead_letters (event_id)
    SELECT id FROM new_rows WHERE status = 'dead' ON CONFLICT DO NOTHING;
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
    DELETE FROM dead_letters
    WHERE event_id = ANY (ARRAY(SELECT id FROM new_rows WHERE status <> 'dead'));
    INSERT INTO dead_letters (event_id)
    SELECT id FROM new_rows WHERE status = 'dead' ON CONFLICT DO NOTHING;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION event_queue_sync_deleted() RETURNS trigger AS $$
BEGIN
    DELETE FROM event_queue q USING old_rows o WHERE q.event_id = o.id;
    DELETE FROM dead_letters WHERE event_id = ANY (ARRAY(SELECT id FROM old_rows));
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

DROP INDEX IF EXISTS webhook_events_dead_idx;
