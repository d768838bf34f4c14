ALTER TABLE webhook_events SET (fillfactor = 80);
