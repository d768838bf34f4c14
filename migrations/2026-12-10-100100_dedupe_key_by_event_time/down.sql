ALTER TABLE webhook_events
    DROP CONSTRAINT webhook_events_dedupe_key,
    ADD CONSTRAINT webhook_events_dedupe_key UNIQUE NULLS NOT DISTINCT (app_id, dedupe_key);
