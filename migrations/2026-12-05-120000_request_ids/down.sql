ALTER TABLE webhook_events DROP COLUMN request_id;
