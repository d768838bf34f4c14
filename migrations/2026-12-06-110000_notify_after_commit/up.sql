-- Workers are woken by `enqueue_many` with a NOTIFY of its own after the insert has
-- committed, not by this trigger inside the insert's transaction: Postgres serialises the
-- commits of every transaction that notifies (a database-wide lock held through the WAL
-- flush), so the trigger made concurrent inserts commit one at a time. Measured with pgbench,
-- one ~1.5 KB event per transaction, 16 clients: 2,149 / 1,920 tps with the trigger, 5,024 /
-- 4,617 without (runs alternating), on the 2-core CI machine.
DROP TRIGGER webhook_events_notify ON webhook_events;
DROP FUNCTION notify_webhook_events_inserted();
