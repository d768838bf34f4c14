DROP TRIGGER push_events_notify ON push_events;
DROP FUNCTION notify_push_events();
DROP TABLE stream_tokens;
DROP INDEX push_events_position_idx;
ALTER TABLE push_events DROP COLUMN position;
DROP TABLE push_feeds;
