-- Dead-lettered events, for the worker's `queue_dead_events` gauge (counted at every scrape)
-- and `GET /internal/events?status=dead`: without it both read the whole event log. Dead
-- events are rare, so the index is small. Built CONCURRENTLY (metadata.toml: outside a
-- transaction) so that ingest's inserts are not blocked while it scans a large log.
CREATE INDEX CONCURRENTLY IF NOT EXISTS webhook_events_dead_idx ON webhook_events (id) WHERE status = 'dead';
