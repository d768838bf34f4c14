-- The worker's rows (legs, phone calls, voicemails, messages) are derived from the event log,
-- and their tenant is always the app of the events they were folded from. Their foreign keys to
-- `apps` therefore guarded nothing the event log does not already guard: every such row has at
-- least one event of its app (retention replaces a unit's log by a snapshot event, never by
-- nothing), `webhook_events.app_id` references `apps`, and the worker writes a row only for the
-- app of an event it holds locked. Each key cost a check per inserted row (a `SELECT ... FOR KEY
-- SHARE` on `apps` through SPI, also on the relink's update of a row inserted in the same
-- transaction): ~4.4% of the machine's CPU samples while the worker drains a backlog (`perf`,
-- `bench worker 60000 0`), about two checks per event.
ALTER TABLE calls DROP CONSTRAINT calls_app_id_fkey;
ALTER TABLE logical_calls DROP CONSTRAINT logical_calls_app_id_fkey;
ALTER TABLE voicemails DROP CONSTRAINT voicemails_app_id_fkey;
ALTER TABLE messages DROP CONSTRAINT messages_app_id_fkey;
