CREATE FUNCTION notify_webhook_events_inserted() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('webhook_events', '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER webhook_events_notify
    AFTER INSERT ON webhook_events
    FOR EACH STATEMENT EXECUTE FUNCTION notify_webhook_events_inserted();
