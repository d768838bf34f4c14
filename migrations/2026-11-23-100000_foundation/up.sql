-- Foundation schema: tenants (apps) and their API keys, the webhook_events queue, call legs,
-- and the Dialpad connection/webhook records used by the onboarding flow.

CREATE TABLE apps (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    webhook_secret text NOT NULL,
    active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE apps IS 'A tenant: one client application with its own API keys, inbound webhook route and data.';
COMMENT ON COLUMN apps.webhook_secret IS 'HS256 secret Dialpad signs this app''s webhooks with (route /webhooks/dialpad/{id}).';
COMMENT ON COLUMN apps.active IS 'A deactivated app''s keys stop working; its data is kept.';

CREATE TABLE api_keys (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    app_id uuid NOT NULL REFERENCES apps (id),
    key_id text NOT NULL UNIQUE,
    key_hash text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at timestamptz
);
CREATE INDEX api_keys_app_id_idx ON api_keys (app_id);
COMMENT ON TABLE api_keys IS 'Tenant API keys `raw_{key_id}_{secret}`; only a bcrypt hash of the whole key is stored.';
COMMENT ON COLUMN api_keys.key_id IS 'Public part of the key, used to find the row without paying bcrypt on every row.';

CREATE TABLE webhook_events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id uuid REFERENCES apps (id),
    kind text NOT NULL,
    event_type text,
    dialpad_id bigint,
    event_timestamp timestamptz,
    dedupe_key text NOT NULL,
    payload jsonb NOT NULL,
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'done', 'ignored', 'dead', 'unroutable')),
    attempts integer NOT NULL DEFAULT 0,
    run_at timestamptz NOT NULL DEFAULT now(),
    locked_by text,
    locked_until timestamptz,
    last_error text,
    received_at timestamptz NOT NULL DEFAULT now(),
    processed_at timestamptz,
    CONSTRAINT webhook_events_dedupe_key UNIQUE NULLS NOT DISTINCT (app_id, dedupe_key)
);
COMMENT ON TABLE webhook_events IS 'The queue and the event log: every verified Dialpad webhook, stored once, processed at least once.';
COMMENT ON COLUMN webhook_events.app_id IS 'The tenant, from the route the event came in on; NULL = unroutable (unscoped route).';
COMMENT ON COLUMN webhook_events.kind IS 'call, sms, contact, agent_status or unknown: read from the payload''s shape.';
COMMENT ON COLUMN webhook_events.event_type IS 'Call state, SMS message_status, contact event.';
COMMENT ON COLUMN webhook_events.dialpad_id IS 'call_id for call events, message id for SMS.';
COMMENT ON COLUMN webhook_events.event_timestamp IS 'Dialpad''s event_timestamp: the clock events are ordered by.';
COMMENT ON COLUMN webhook_events.dedupe_key IS 'SHA-256 of the canonical payload: a redelivery is stored once.';
COMMENT ON COLUMN webhook_events.run_at IS 'Not claimable before this time (retry backoff).';
COMMENT ON COLUMN webhook_events.locked_by IS 'Lease holder, for steps that run outside the claiming transaction.';
COMMENT ON COLUMN webhook_events.locked_until IS 'Lease expiry: after it another worker may take the event.';

-- The claim: oldest pending first, among those due.
CREATE INDEX webhook_events_pending_idx ON webhook_events (id) INCLUDE (run_at) WHERE status = 'pending';
-- A call leg's events, read when the leg is folded.
CREATE INDEX webhook_events_call_leg_idx ON webhook_events (app_id, dialpad_id) WHERE kind = 'call';

-- Wake workers on insert (LISTEN webhook_events); they also poll, so a lost notification only delays.
CREATE FUNCTION notify_webhook_events_inserted() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('webhook_events', '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER webhook_events_notify
    AFTER INSERT ON webhook_events
    FOR EACH STATEMENT EXECUTE FUNCTION notify_webhook_events_inserted();

CREATE TABLE calls (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id uuid NOT NULL REFERENCES apps (id),
    call_id bigint NOT NULL,
    master_call_id bigint,
    entry_point_call_id bigint,
    operator_call_id bigint,
    direction text,
    from_number text,
    to_number text,
    external_number text,
    internal_number text,
    state text NOT NULL,
    status text NOT NULL,
    started_at timestamptz,
    rang_at timestamptz,
    queued_at timestamptz,
    connected_at timestamptz,
    ended_at timestamptz,
    duration_ms double precision,
    total_duration_ms double precision,
    talk_time_ms bigint,
    hold_time_ms bigint,
    was_recorded boolean NOT NULL DEFAULT false,
    is_transferred boolean NOT NULL DEFAULT false,
    mos_score double precision,
    recording_url text,
    voicemail_link text,
    transcription_text text,
    target_id bigint,
    target jsonb,
    contact jsonb,
    custom_data text,
    event_count integer NOT NULL DEFAULT 0,
    last_event_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (app_id, call_id)
);
COMMENT ON TABLE calls IS 'One row per Dialpad call leg (call_id) per app, folded from all of its events.';
COMMENT ON COLUMN calls.status IS 'Our status vocabulary (domain::call::CallStatus), derived from the leg''s events.';
COMMENT ON COLUMN calls.state IS 'The latest Dialpad state.';
COMMENT ON COLUMN calls.duration_ms IS 'Dialpad duration: milliseconds, connected to ended.';
COMMENT ON COLUMN calls.total_duration_ms IS 'Dialpad total_duration: milliseconds, including ring time.';
COMMENT ON COLUMN calls.target IS 'Dialpad target {id, type, name, phone, email}: the user, office, department or call center.';
COMMENT ON COLUMN calls.contact IS 'Dialpad contact {id, type, name, phone, email}: the external party.';
COMMENT ON COLUMN calls.event_count IS 'Distinct events folded into this row.';
CREATE INDEX calls_app_started_idx ON calls (app_id, started_at DESC NULLS LAST, id DESC);

CREATE TABLE dialpad_connections (
    app_id uuid PRIMARY KEY REFERENCES apps (id),
    environment text NOT NULL CHECK (environment IN ('sandbox', 'production')),
    auth_type text NOT NULL CHECK (auth_type IN ('oauth', 'api_key')),
    access_token text,
    refresh_token text,
    token_expires_at timestamptz,
    dialpad_company_id bigint,
    scopes text,
    status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'reauth_required', 'revoked')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE dialpad_connections IS 'How we call Dialpad for an app: its OAuth tokens (or API key mode) and company.';

CREATE TABLE dialpad_webhooks (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id uuid NOT NULL REFERENCES apps (id),
    dialpad_webhook_id bigint NOT NULL,
    hook_url text NOT NULL,
    signature_algo text NOT NULL DEFAULT 'HS256',
    signature_type text NOT NULL DEFAULT 'jwt',
    created_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    UNIQUE (app_id, dialpad_webhook_id)
);
COMMENT ON TABLE dialpad_webhooks IS 'Webhooks registered at Dialpad for an app (POST /api/v2/webhooks).';
