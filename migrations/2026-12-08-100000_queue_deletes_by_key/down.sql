-- Back to the joins on the transition tables (see up.sql).
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
