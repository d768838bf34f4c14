ALTER TABLE calls RESET (fillfactor);
ALTER TABLE logical_calls RESET (fillfactor);

ALTER TABLE logical_calls DROP COLUMN graph_truncated;

DROP INDEX calls_master_idx;
DROP INDEX calls_entry_point_idx;
DROP INDEX calls_operator_idx;
CREATE INDEX calls_master_idx ON calls (app_id, master_call_id) WHERE master_call_id IS NOT NULL;
CREATE INDEX calls_entry_point_idx ON calls (app_id, entry_point_call_id) WHERE entry_point_call_id IS NOT NULL;
CREATE INDEX calls_operator_idx ON calls (app_id, operator_call_id) WHERE operator_call_id IS NOT NULL;

CREATE INDEX webhook_events_pending_idx ON webhook_events (id) INCLUDE (run_at) WHERE status = 'pending';

DROP TRIGGER webhook_events_queue_inserted ON webhook_events;
DROP TRIGGER webhook_events_queue_updated ON webhook_events;
DROP TRIGGER webhook_events_queue_deleted ON webhook_events;
DROP FUNCTION event_queue_sync_inserted();
DROP FUNCTION event_queue_sync_updated();
DROP FUNCTION event_queue_sync_deleted();
DROP TABLE event_queue;
