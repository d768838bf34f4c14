ALTER TABLE logical_calls DROP COLUMN recording_url, DROP COLUMN mos_score;
