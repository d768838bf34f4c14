-- The next migration's down drops the index with the constraint; this only cleans up after a
-- build that stopped half way.
DROP INDEX CONCURRENTLY IF EXISTS webhook_events_dedupe_key_by_time;
