-- The delivery loops claim per subscription (`db::push::claim_deliveries`): one probe here per
-- subscription with room, so a subscription with a deep backlog, or whose requests hang, never
-- makes the claim step over its due rows.
CREATE INDEX push_deliveries_subscription_due_idx ON push_deliveries (subscription_id, next_attempt_at, id)
    WHERE status = 'pending';
-- The global due order is no longer read.
DROP INDEX push_deliveries_due_idx;
