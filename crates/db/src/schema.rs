//! Diesel table definitions, mirroring `migrations/` (the migrations are the source of truth;
//! `tests/it/schema.rs` in the e2e crate checks every column here against the migrated database).

diesel::table! {
    /// A tenant: one client application.
    apps (id) {
        id -> Uuid,
        name -> Text,
        legacy_webhook_secret -> Nullable<Text>,
        active -> Bool,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        webhook_secret_ciphertext -> Nullable<Bytea>,
        webhook_secret_key_id -> Nullable<Text>,
    }
}

diesel::table! {
    /// Tenant API keys; only a bcrypt hash is stored.
    api_keys (id) {
        id -> Uuid,
        app_id -> Uuid,
        key_id -> Text,
        key_hash -> Text,
        created_at -> Timestamptz,
        last_used_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    /// App and API-key changes.
    audit_log (id) {
        id -> Int8,
        app_id -> Uuid,
        action -> Text,
        actor -> Text,
        details -> Jsonb,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    /// The queue and event log.
    webhook_events (id) {
        id -> Int8,
        app_id -> Nullable<Uuid>,
        kind -> Text,
        event_type -> Nullable<Text>,
        dialpad_id -> Nullable<Int8>,
        event_timestamp -> Nullable<Timestamptz>,
        dedupe_key -> Text,
        payload -> Json,
        status -> Text,
        attempts -> Int4,
        run_at -> Timestamptz,
        locked_by -> Nullable<Text>,
        locked_until -> Nullable<Timestamptz>,
        last_error -> Nullable<Text>,
        received_at -> Timestamptz,
        processed_at -> Nullable<Timestamptz>,
        request_id -> Nullable<Text>,
    }
}

diesel::table! {
    /// The dead-lettered events of `webhook_events` (kept in step by triggers).
    dead_letters (event_id) {
        event_id -> Int8,
    }
}

diesel::table! {
    /// The pending events of `webhook_events`: what workers claim (kept in step by triggers).
    event_queue (event_id) {
        event_id -> Int8,
        app_id -> Uuid,
        run_at -> Timestamptz,
    }
}

diesel::table! {
    /// One row per Dialpad call leg per app.
    calls (id) {
        id -> Int8,
        app_id -> Uuid,
        call_id -> Int8,
        master_call_id -> Nullable<Int8>,
        entry_point_call_id -> Nullable<Int8>,
        operator_call_id -> Nullable<Int8>,
        direction -> Nullable<Text>,
        from_number -> Nullable<Text>,
        to_number -> Nullable<Text>,
        external_number -> Nullable<Text>,
        internal_number -> Nullable<Text>,
        state -> Text,
        status -> Text,
        started_at -> Nullable<Timestamptz>,
        rang_at -> Nullable<Timestamptz>,
        queued_at -> Nullable<Timestamptz>,
        connected_at -> Nullable<Timestamptz>,
        ended_at -> Nullable<Timestamptz>,
        duration_ms -> Nullable<Float8>,
        total_duration_ms -> Nullable<Float8>,
        talk_time_ms -> Nullable<Int8>,
        hold_time_ms -> Nullable<Int8>,
        was_recorded -> Bool,
        is_transferred -> Bool,
        mos_score -> Nullable<Float8>,
        recording_url -> Nullable<Text>,
        voicemail_link -> Nullable<Text>,
        transcription_text -> Nullable<Text>,
        target_id -> Nullable<Text>,
        target -> Nullable<Jsonb>,
        contact -> Nullable<Jsonb>,
        custom_data -> Nullable<Text>,
        event_count -> Int4,
        last_event_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        logical_call_id -> Nullable<Int8>,
        voicemail_recording_id -> Nullable<Text>,
        voicemail_duration_ms -> Nullable<Int8>,
        recording_id -> Nullable<Text>,
        recap_summary -> Nullable<Text>,
        recap_outcome -> Nullable<Text>,
        recap_action_items -> Nullable<Jsonb>,
        recap_purposes -> Nullable<Jsonb>,
        transferred_from -> Nullable<Jsonb>,
    }
}

diesel::table! {
    /// One row per phone call: its legs aggregated.
    logical_calls (app_id, logical_call_id) {
        app_id -> Uuid,
        logical_call_id -> Int8,
        status -> Text,
        direction -> Nullable<Text>,
        from_number -> Nullable<Text>,
        to_number -> Nullable<Text>,
        started_at -> Nullable<Timestamptz>,
        answered_at -> Nullable<Timestamptz>,
        ended_at -> Nullable<Timestamptz>,
        talk_time_ms -> Int8,
        hold_time_ms -> Int8,
        duration_ms -> Nullable<Int8>,
        total_duration_ms -> Nullable<Int8>,
        transferred -> Bool,
        first_answered_by -> Nullable<Jsonb>,
        final_handler -> Nullable<Jsonb>,
        voicemail -> Bool,
        was_recorded -> Bool,
        contact -> Nullable<Jsonb>,
        target -> Nullable<Jsonb>,
        leg_count -> Int4,
        last_event_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        graph_truncated -> Bool,
        recording_url -> Nullable<Text>,
        mos_score -> Nullable<Float8>,
        push_sequence -> Int8,
    }
}

diesel::table! {
    /// One row per SMS/MMS per app.
    messages (app_id, message_id) {
        app_id -> Uuid,
        message_id -> Int8,
        direction -> Nullable<Text>,
        from_number -> Nullable<Text>,
        to_numbers -> Array<Text>,
        text -> Nullable<Text>,
        mms -> Bool,
        mms_url -> Nullable<Text>,
        message_status -> Nullable<Text>,
        delivery_result -> Nullable<Text>,
        is_internal -> Nullable<Bool>,
        sender_id -> Nullable<Text>,
        target -> Nullable<Jsonb>,
        contact -> Nullable<Jsonb>,
        sent_at -> Nullable<Timestamptz>,
        status_updated_at -> Nullable<Timestamptz>,
        last_event_at -> Nullable<Timestamptz>,
        event_count -> Int4,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        push_sequence -> Int8,
    }
}

diesel::table! {
    /// One row per call leg that received a voicemail.
    voicemails (app_id, call_id) {
        app_id -> Uuid,
        call_id -> Int8,
        logical_call_id -> Nullable<Int8>,
        from_number -> Nullable<Text>,
        to_number -> Nullable<Text>,
        contact -> Nullable<Jsonb>,
        target -> Nullable<Jsonb>,
        duration_ms -> Nullable<Int8>,
        link -> Nullable<Text>,
        recording_id -> Nullable<Text>,
        transcription_text -> Nullable<Text>,
        left_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    /// How we call Dialpad for an app: sealed OAuth tokens or API key.
    dialpad_connections (app_id) {
        app_id -> Uuid,
        environment -> Text,
        auth_type -> Text,
        access_token_ciphertext -> Bytea,
        refresh_token_ciphertext -> Nullable<Bytea>,
        token_key_id -> Text,
        token_expires_at -> Nullable<Timestamptz>,
        dialpad_company_id -> Nullable<Int8>,
        scopes -> Nullable<Text>,
        status -> Text,
        last_error -> Nullable<Text>,
        refreshed_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    /// Webhooks registered at Dialpad for an app, with their sealed secrets.
    dialpad_webhooks (id) {
        id -> Int8,
        app_id -> Uuid,
        dialpad_webhook_id -> Int8,
        hook_url -> Text,
        secret_ciphertext -> Bytea,
        secret_key_id -> Text,
        signature_algo -> Text,
        signature_type -> Text,
        created_at -> Timestamptz,
        deleted_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    /// Event subscriptions created at Dialpad for an app.
    dialpad_subscriptions (id) {
        id -> Int8,
        app_id -> Uuid,
        kind -> Text,
        dialpad_subscription_id -> Int8,
        dialpad_webhook_id -> Int8,
        options -> Jsonb,
        created_at -> Timestamptz,
        deleted_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    /// Single-use OAuth states with their sealed PKCE verifiers.
    oauth_states (state_hash) {
        state_hash -> Bytea,
        app_id -> Uuid,
        environment -> Text,
        code_verifier_ciphertext -> Bytea,
        code_verifier_key_id -> Text,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
        replace_company -> Bool,
    }
}

diesel::table! {
    /// One-time connect links (by the SHA-256 of their token).
    connect_links (token_hash) {
        token_hash -> Bytea,
        app_id -> Uuid,
        replace_company -> Bool,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    /// Client apps' webhook subscriptions (tenant-managed).
    push_subscriptions (id) {
        id -> Uuid,
        app_id -> Uuid,
        webhook_url -> Text,
        events -> Array<Text>,
        description -> Nullable<Text>,
        secret_ciphertext -> Bytea,
        secret_key_id -> Text,
        previous_secret_ciphertext -> Nullable<Bytea>,
        previous_secret_key_id -> Nullable<Text>,
        previous_secret_expires_at -> Nullable<Timestamptz>,
        active -> Bool,
        consecutive_failures -> Int4,
        last_success_at -> Nullable<Timestamptz>,
        last_failure_at -> Nullable<Timestamptz>,
        failing_since -> Nullable<Timestamptz>,
        disabled_reason -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    /// The outbox: events announced to client apps, committed with their cause.
    push_events (id) {
        id -> Uuid,
        app_id -> Uuid,
        event_type -> Text,
        body -> Jsonb,
        created_at -> Timestamptz,
        position -> Int8,
    }
}

diesel::table! {
    /// Per app: the last outbox position, and until when a live stream listens.
    push_feeds (app_id) {
        app_id -> Uuid,
        position -> Int8,
        listening_until -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    /// Tokens that open a live stream for 5 minutes (SHA-256 hashes only).
    stream_tokens (token_hash) {
        token_hash -> Bytea,
        app_id -> Uuid,
        expires_at -> Timestamptz,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    /// One delivery of an announced event to one subscription.
    push_deliveries (id) {
        id -> Int8,
        event_id -> Uuid,
        subscription_id -> Uuid,
        app_id -> Uuid,
        status -> Text,
        attempts -> Int4,
        next_attempt_at -> Timestamptz,
        lease_token -> Nullable<Uuid>,
        last_status_code -> Nullable<Int4>,
        last_error -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    /// Every delivery attempt: the receiver's answer and how long it took.
    push_attempts (id) {
        id -> Int8,
        delivery_id -> Int8,
        subscription_id -> Uuid,
        attempt -> Int4,
        status_code -> Nullable<Int4>,
        latency_ms -> Int4,
        error -> Nullable<Text>,
        attempted_at -> Timestamptz,
    }
}

diesel::joinable!(api_keys -> apps (app_id));
diesel::joinable!(audit_log -> apps (app_id));
diesel::joinable!(calls -> apps (app_id));
diesel::joinable!(dialpad_connections -> apps (app_id));
diesel::joinable!(logical_calls -> apps (app_id));
diesel::joinable!(messages -> apps (app_id));
diesel::joinable!(voicemails -> apps (app_id));
diesel::joinable!(dialpad_subscriptions -> apps (app_id));
diesel::joinable!(dialpad_webhooks -> apps (app_id));
diesel::joinable!(oauth_states -> apps (app_id));
diesel::joinable!(connect_links -> apps (app_id));
diesel::joinable!(webhook_events -> apps (app_id));
diesel::joinable!(push_subscriptions -> apps (app_id));
diesel::joinable!(push_events -> apps (app_id));
diesel::joinable!(push_feeds -> apps (app_id));
diesel::joinable!(stream_tokens -> apps (app_id));
diesel::joinable!(push_deliveries -> push_events (event_id));
diesel::joinable!(push_deliveries -> push_subscriptions (subscription_id));
diesel::joinable!(push_attempts -> push_deliveries (delivery_id));

diesel::allow_tables_to_appear_in_same_query!(
    apps,
    api_keys,
    audit_log,
    calls,
    connect_links,
    dialpad_connections,
    dialpad_subscriptions,
    dialpad_webhooks,
    dead_letters,
    event_queue,
    logical_calls,
    messages,
    oauth_states,
    push_attempts,
    push_deliveries,
    push_events,
    push_feeds,
    push_subscriptions,
    stream_tokens,
    voicemails,
    webhook_events,
);
