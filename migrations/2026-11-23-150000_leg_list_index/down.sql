DROP INDEX calls_app_started_idx;
CREATE INDEX calls_app_started_idx ON calls (app_id, started_at DESC NULLS LAST, id DESC);
