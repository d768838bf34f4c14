DROP TABLE dialpad_webhooks;
DROP TABLE dialpad_connections;
DROP TABLE calls;
DROP TRIGGER webhook_events_notify ON webhook_events;
DROP FUNCTION notify_webhook_events_inserted();
DROP TABLE webhook_events;
DROP TABLE api_keys;
DROP TABLE apps;
