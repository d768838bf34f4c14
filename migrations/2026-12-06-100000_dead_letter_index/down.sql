DROP INDEX CONCURRENTLY IF EXISTS webhook_events_dead_idx;
