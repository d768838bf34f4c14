-- Push to client apps: their webhook subscriptions, the outbox of announced events (written in
-- the transaction of the change that caused them), one delivery per event and subscription,
-- and the log of every delivery attempt.

CREATE TABLE push_subscriptions (
    id uuid PRIMARY KEY,
    app_id uuid NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    webhook_url text NOT NULL,
    -- Event names of the catalogue (`domain::push`), or '*' for all.
    events text[] NOT NULL,
    description text,
    -- `whsec_...`, sealed (AES-256-GCM, bound to the subscription id).
    secret_ciphertext bytea NOT NULL,
    secret_key_id text NOT NULL,
    -- After a rotation, the former secret still signs (a second signature) until it expires.
    previous_secret_ciphertext bytea,
    previous_secret_key_id text,
    previous_secret_expires_at timestamptz,
    active boolean NOT NULL DEFAULT true,
    consecutive_failures integer NOT NULL DEFAULT 0,
    last_success_at timestamptz,
    last_failure_at timestamptz,
    -- The first failure since the last success: deactivation after a span of failures.
    failing_since timestamptz,
    disabled_reason text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX push_subscriptions_app_idx ON push_subscriptions (app_id, created_at, id);
COMMENT ON TABLE push_subscriptions IS 'Client apps'' webhook subscriptions (tenant-managed).';

CREATE TABLE push_events (
    -- The `webhook-id` of every delivery of this event (Standard Webhooks): the same on retries.
    id uuid PRIMARY KEY,
    app_id uuid NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    event_type text NOT NULL,
    -- The body sent: {id, event, callId, status, timestamp, sequence, data}.
    body jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX push_events_app_idx ON push_events (app_id, created_at, id);
-- Retention deletes the oldest first.
CREATE INDEX push_events_created_idx ON push_events (created_at);
COMMENT ON TABLE push_events IS 'The outbox: events announced to client apps, committed with their cause.';

CREATE TABLE push_deliveries (
    id bigserial PRIMARY KEY,
    event_id uuid NOT NULL REFERENCES push_events (id) ON DELETE CASCADE,
    subscription_id uuid NOT NULL REFERENCES push_subscriptions (id) ON DELETE CASCADE,
    app_id uuid NOT NULL,
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- A delivery loop's lease: set when it takes the delivery (which also moves
    -- `next_attempt_at` to the lease's end, so an abandoned lease makes the delivery due
    -- again), checked when it records the attempt (a loop that lost its lease cannot).
    lease_token uuid,
    last_status_code integer,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (event_id, subscription_id)
);
CREATE INDEX push_deliveries_due_idx ON push_deliveries (next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX push_deliveries_subscription_idx ON push_deliveries (subscription_id, id);

CREATE TABLE push_attempts (
    id bigserial PRIMARY KEY,
    delivery_id bigint NOT NULL REFERENCES push_deliveries (id) ON DELETE CASCADE,
    -- Denormalised so a subscription's attempt log is one index range, newest first.
    subscription_id uuid NOT NULL,
    attempt integer NOT NULL,
    -- NULL when no response came (connect error, timeout).
    status_code integer,
    latency_ms integer NOT NULL,
    error text,
    attempted_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX push_attempts_subscription_idx ON push_attempts (subscription_id, id);
-- The cascade from a deleted delivery (retention): without it each delete scans every attempt.
CREATE INDEX push_attempts_delivery_idx ON push_attempts (delivery_id);

-- Wakes the delivery loops when deliveries are written (at commit).
CREATE FUNCTION notify_push_deliveries() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('push_deliveries', '');
    RETURN NULL;
END;
$$;
CREATE TRIGGER push_deliveries_notify AFTER INSERT ON push_deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION notify_push_deliveries();

-- The last `sequence` announced for each phone call: receivers drop an update older than one
-- they already have.
ALTER TABLE logical_calls ADD COLUMN push_sequence bigint NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN push_sequence bigint NOT NULL DEFAULT 0;
