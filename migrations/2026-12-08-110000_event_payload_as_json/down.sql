ALTER TABLE webhook_events ALTER COLUMN payload TYPE jsonb USING payload::jsonb;
