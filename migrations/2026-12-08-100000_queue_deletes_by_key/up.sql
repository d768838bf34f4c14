-- The queue triggers deleted `event_queue` entries with a join on the transition table
-- (`DELETE FROM event_queue q USING new_rows n WHERE q.event_id = n.id`). A trigger's statement
-- is planned once per session, with the queue's size as last analysed: with a backlog queued
-- (the worker analyses the queue at start), that plan is a hash join over a sequential scan of
-- the whole queue, so completing a batch of 500 events read every pending entry (`EXPLAIN` of
-- the trigger, 50,000 pending: Seq Scan on event_queue, rows=50000; 200,000 pending read 200,000
-- per batch). Now, as the dead letters' statements already do, the deletes probe the primary
-- key once per changed event (`= ANY` of an array), whatever the planner thinks of the sizes.
CREATE OR REPLACE FUNCTION event_queue_sync_updated() RETURNS trigger AS $$
BEGIN
    DELETE FROM event_queue
    WHERE event_id = ANY (ARRAY(SELECT id FROM new_rows WHERE status <> 'pending' OR app_id IS NULL));
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
    DELETE FROM event_queue WHERE event_id = ANY (ARRAY(SELECT id FROM old_rows));
    DELETE FROM dead_letters WHERE event_id = ANY (ARRAY(SELECT id FROM old_rows));
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
