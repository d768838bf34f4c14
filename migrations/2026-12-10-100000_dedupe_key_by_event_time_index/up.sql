-- The dedupe key's unique index, led by the event's own time (2026-12-10-100100 makes it the
-- constraint). Built CONCURRENTLY, so ingest keeps inserting while it is built: a blocking
-- build on a large event log would hold ingest past Dialpad's ~14 s of retries. The file holds
-- this one statement because Postgres runs a multi-statement query in one transaction.
-- Should the build fail (the migration is then not recorded), the index is left INVALID and
-- the next `migrate` stops at "already exists": drop it (`DROP INDEX CONCURRENTLY
-- webhook_events_dedupe_key_by_time`) and migrate again.
CREATE UNIQUE INDEX CONCURRENTLY webhook_events_dedupe_key_by_time
    ON webhook_events (app_id, event_timestamp, dedupe_key) NULLS NOT DISTINCT;
