-- Tell api replicas which tenant's lists changed, so they can drop that tenant's cached pages
-- (LISTEN tenant_changes; the payload is the app id). A trigger, not the writers, sends it: every
-- writer of these tables (the worker's folds and relinks, retention, a manual fix) is covered,
-- and NOTIFY is delivered at commit, never for a rolled-back change. Once per statement and app
-- (Postgres also folds repeats within a transaction).
CREATE FUNCTION notify_tenant_changes() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('tenant_changes', app_id::text) FROM (SELECT DISTINCT app_id FROM old_rows) AS changed;
    ELSE
        PERFORM pg_notify('tenant_changes', app_id::text) FROM (SELECT DISTINCT app_id FROM new_rows) AS changed;
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER calls_notify_tenant_inserted AFTER INSERT ON calls
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION notify_tenant_changes();
CREATE TRIGGER calls_notify_tenant_updated AFTER UPDATE ON calls
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION notify_tenant_changes();
CREATE TRIGGER calls_notify_tenant_deleted AFTER DELETE ON calls
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION notify_tenant_changes();

CREATE TRIGGER logical_calls_notify_tenant_inserted AFTER INSERT ON logical_calls
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION notify_tenant_changes();
CREATE TRIGGER logical_calls_notify_tenant_updated AFTER UPDATE ON logical_calls
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION notify_tenant_changes();
CREATE TRIGGER logical_calls_notify_tenant_deleted AFTER DELETE ON logical_calls
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION notify_tenant_changes();

CREATE TRIGGER messages_notify_tenant_inserted AFTER INSERT ON messages
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION notify_tenant_changes();
CREATE TRIGGER messages_notify_tenant_updated AFTER UPDATE ON messages
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION notify_tenant_changes();
CREATE TRIGGER messages_notify_tenant_deleted AFTER DELETE ON messages
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION notify_tenant_changes();

CREATE TRIGGER voicemails_notify_tenant_inserted AFTER INSERT ON voicemails
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION notify_tenant_changes();
CREATE TRIGGER voicemails_notify_tenant_updated AFTER UPDATE ON voicemails
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION notify_tenant_changes();
CREATE TRIGGER voicemails_notify_tenant_deleted AFTER DELETE ON voicemails
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION notify_tenant_changes();
