-- Every event kind into domain tables: legs linked into logical calls, SMS into messages,
-- voicemails into voicemails.

-- A leg's logical call, and the post-call fields Dialpad sends minutes after hangup.
ALTER TABLE calls
    ADD COLUMN logical_call_id bigint,
    ADD COLUMN voicemail_recording_id text,
    ADD COLUMN voicemail_duration_ms bigint,
    ADD COLUMN recording_id text,
    ADD COLUMN recap_summary text,
    ADD COLUMN recap_outcome text,
    ADD COLUMN recap_action_items jsonb,
    ADD COLUMN recap_purposes jsonb,
    ADD COLUMN transferred_from jsonb;
COMMENT ON COLUMN calls.logical_call_id IS 'The phone call this leg belongs to (logical_calls.logical_call_id): the root of its entry_point/master chain.';
COMMENT ON COLUMN calls.transferred_from IS 'Dialpad transferred_from: who transferred this leg to its target.';
CREATE INDEX calls_logical_idx ON calls (app_id, logical_call_id);
-- Linking follows the call graph both ways: who names this leg as parent or operator.
CREATE INDEX calls_master_idx ON calls (app_id, master_call_id) WHERE master_call_id IS NOT NULL;
CREATE INDEX calls_entry_point_idx ON calls (app_id, entry_point_call_id) WHERE entry_point_call_id IS NOT NULL;
CREATE INDEX calls_operator_idx ON calls (app_id, operator_call_id) WHERE operator_call_id IS NOT NULL;

CREATE TABLE logical_calls (
    app_id uuid NOT NULL REFERENCES apps (id),
    logical_call_id bigint NOT NULL,
    status text NOT NULL,
    direction text,
    from_number text,
    to_number text,
    started_at timestamptz,
    answered_at timestamptz,
    ended_at timestamptz,
    talk_time_ms bigint NOT NULL DEFAULT 0,
    hold_time_ms bigint NOT NULL DEFAULT 0,
    duration_ms bigint,
    total_duration_ms bigint,
    transferred boolean NOT NULL DEFAULT false,
    first_answered_by jsonb,
    final_handler jsonb,
    voicemail boolean NOT NULL DEFAULT false,
    was_recorded boolean NOT NULL DEFAULT false,
    contact jsonb,
    target jsonb,
    leg_count integer NOT NULL,
    last_event_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, logical_call_id)
);
COMMENT ON TABLE logical_calls IS 'One row per phone call: its legs (calls rows sharing logical_call_id) aggregated as a person means "the call" (domain::call::LogicalCall).';
COMMENT ON COLUMN logical_calls.answered_at IS 'Earliest connect on a person (user) leg.';
COMMENT ON COLUMN logical_calls.talk_time_ms IS 'Sum of Dialpad talk_time over person legs, milliseconds.';
COMMENT ON COLUMN logical_calls.duration_ms IS 'Conversation span: ended_at - answered_at, milliseconds.';
COMMENT ON COLUMN logical_calls.total_duration_ms IS 'ended_at - started_at, milliseconds.';
-- The list order, newest first, with calls without a start last; as an expression so keyset
-- paging is one row comparison (db::listing).
CREATE INDEX logical_calls_app_started_idx
    ON logical_calls (app_id, coalesce(started_at, '-infinity'::timestamptz) DESC, logical_call_id DESC);
-- GET /api/calls/active: the few calls not ended.
CREATE INDEX logical_calls_active_idx
    ON logical_calls (app_id, coalesce(started_at, '-infinity'::timestamptz) DESC, logical_call_id DESC)
    WHERE status IN ('ringing', 'queued', 'connected', 'on_hold');
-- The common filtered list (direction, optionally status), in list order; also counts it.
CREATE INDEX logical_calls_direction_idx
    ON logical_calls (app_id, direction, status, coalesce(started_at, '-infinity'::timestamptz) DESC, logical_call_id DESC);

CREATE TABLE messages (
    app_id uuid NOT NULL REFERENCES apps (id),
    message_id bigint NOT NULL,
    direction text,
    from_number text,
    to_numbers text[] NOT NULL DEFAULT '{}',
    text text,
    mms boolean NOT NULL DEFAULT false,
    mms_url text,
    message_status text,
    delivery_result text,
    is_internal boolean,
    sender_id bigint,
    target jsonb,
    contact jsonb,
    sent_at timestamptz,
    status_updated_at timestamptz,
    last_event_at timestamptz,
    event_count integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, message_id)
);
COMMENT ON TABLE messages IS 'One row per SMS/MMS (Dialpad message id) per app, folded from its events: delivery updates reuse the id.';
COMMENT ON COLUMN messages.sent_at IS 'Dialpad created_date.';
COMMENT ON COLUMN messages.status_updated_at IS 'event_timestamp of the event that set message_status.';
CREATE INDEX messages_app_sent_idx
    ON messages (app_id, coalesce(sent_at, '-infinity'::timestamptz) DESC, message_id DESC);

CREATE TABLE voicemails (
    app_id uuid NOT NULL REFERENCES apps (id),
    call_id bigint NOT NULL,
    logical_call_id bigint,
    from_number text,
    to_number text,
    contact jsonb,
    target jsonb,
    duration_ms bigint,
    link text,
    recording_id text,
    transcription_text text,
    left_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, call_id)
);
COMMENT ON TABLE voicemails IS 'One row per call leg that received a voicemail (voicemail_uploaded), with its transcript when it arrives.';
CREATE INDEX voicemails_app_left_idx
    ON voicemails (app_id, coalesce(left_at, '-infinity'::timestamptz) DESC, call_id DESC);

-- A message's events, read when the message is folded.
CREATE INDEX webhook_events_message_idx ON webhook_events (app_id, dialpad_id) WHERE kind = 'sms';

-- SMS events were stored and marked ignored until messages existed: process them now.
UPDATE webhook_events
SET status = 'pending', run_at = now(), processed_at = NULL, last_error = NULL
WHERE status = 'ignored' AND kind = 'sms' AND app_id IS NOT NULL;
