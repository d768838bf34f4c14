CREATE INDEX push_deliveries_due_idx ON push_deliveries (next_attempt_at, id) WHERE status = 'pending';
DROP INDEX push_deliveries_subscription_due_idx;
