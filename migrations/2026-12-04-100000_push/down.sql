DROP TRIGGER push_deliveries_notify ON push_deliveries;
DROP FUNCTION notify_push_deliveries();
ALTER TABLE logical_calls DROP COLUMN push_sequence;
ALTER TABLE messages DROP COLUMN push_sequence;
DROP TABLE push_attempts;
DROP TABLE push_deliveries;
DROP TABLE push_events;
DROP TABLE push_subscriptions;
