-- Worker at scale: the claim reads a small hot table instead of the event log, and the call
-- graph is walked by index lookups with a bound per call.

-- The queue proper: one row per pending event, deleted when the event leaves `pending`.
-- Claims scan only this table, so millions of processed events in `webhook_events` (and their
-- dead index entries before autovacuum) cost a claim nothing. It stays small (the backlog),
-- so vacuuming it after every thousand deletes is cheap; until then the claim's index scans
-- mark the entries of deleted rows dead on first visit and skip them after.
CREATE TABLE event_queue (
    event_id bigint PRIMARY KEY,
    app_id uuid NOT NULL,
    run_at timestamptz NOT NULL
) WITH (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0,
    autovacuum_vacuum_insert_threshold = 1000,
    autovacuum_analyze_scale_factor = 0,
    autovacuum_analyze_threshold = 1000,
    autovacuum_vacuum_cost_delay = 0,
    -- Truncating needs an exclusive lock, which busy workers never leave free: a vacuum would
    -- retry for seconds (and, when it got the lock, stall claims). The freed pages are reused.
    vacuum_truncate = false
);
COMMENT ON TABLE event_queue IS 'The pending events of webhook_events (status = pending): what workers claim. Kept in step by triggers on webhook_events, so every writer (ingest, worker, operators, a manual fix) is covered.';
COMMENT ON COLUMN event_queue.event_id IS 'webhook_events.id (no foreign key: the triggers maintain it, and a key check would lock the event row on every insert).';
COMMENT ON COLUMN event_queue.run_at IS 'webhook_events.run_at: not claimable before it (retry backoff).';
-- The claim: per tenant, the due events oldest first (db::queue::claim_batch); the skip scan
-- over tenants with pending work reads the leading column.
CREATE INDEX event_queue_due_idx ON event_queue (app_id, run_at, event_id);

CREATE FUNCTION event_queue_sync_inserted() RETURNS trigger AS $$
BEGIN
    INSERT INTO event_queue (event_id, app_id, run_at)
    SELECT id, app_id, run_at FROM new_rows WHERE status = 'pending' AND app_id IS NOT NULL;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE FUNCTION event_queue_sync_updated() RETURNS trigger AS $$
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

CREATE FUNCTION event_queue_sync_deleted() RETURNS trigger AS $$
BEGIN
    DELETE FROM event_queue q USING old_rows o WHERE q.event_id = o.id;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER webhook_events_queue_inserted AFTER INSERT ON webhook_events
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION event_queue_sync_inserted();
CREATE TRIGGER webhook_events_queue_updated AFTER UPDATE ON webhook_events
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION event_queue_sync_updated();
CREATE TRIGGER webhook_events_queue_deleted AFTER DELETE ON webhook_events
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION event_queue_sync_deleted();

INSERT INTO event_queue (event_id, app_id, run_at)
SELECT id, app_id, run_at FROM webhook_events WHERE status = 'pending' AND app_id IS NOT NULL;

-- The claim no longer reads webhook_events by status.
DROP INDEX webhook_events_pending_idx;

-- The call graph is walked one level at a time, one index lookup per id and column, each
-- limited to the bound in call_id order (db::logical_calls): call_id in the key keeps that
-- order without reading every leg that names a huge master.
DROP INDEX calls_master_idx;
DROP INDEX calls_entry_point_idx;
DROP INDEX calls_operator_idx;
CREATE INDEX calls_master_idx ON calls (app_id, master_call_id, call_id) WHERE master_call_id IS NOT NULL;
CREATE INDEX calls_entry_point_idx ON calls (app_id, entry_point_call_id, call_id) WHERE entry_point_call_id IS NOT NULL;
CREATE INDEX calls_operator_idx ON calls (app_id, operator_call_id, call_id) WHERE operator_call_id IS NOT NULL;

ALTER TABLE logical_calls ADD COLUMN graph_truncated boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN logical_calls.graph_truncated IS 'Its call graph grew past WORKER_MAX_CALL_GRAPH_LEGS: it is linked and aggregated from the legs found within the bound, not all of them.';

-- A leg is rewritten by each of its events (ringing, connected, hangup, recording, recap: over
-- minutes) and its phone call with it. Room left in each page lets those rewrites be HOT
-- updates (no new index entries) while the page still holds the row; the space is reclaimed
-- as old versions are pruned. Applies to pages written from now on.
ALTER TABLE calls SET (fillfactor = 80);
ALTER TABLE logical_calls SET (fillfactor = 80);
