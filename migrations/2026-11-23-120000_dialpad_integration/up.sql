-- Dialpad integration: encrypted secrets at rest, OAuth connections, webhooks and subscriptions
-- registered at Dialpad, and single-use OAuth states.
--
-- Every secret column is a *sealed* value (`db::crypto`): AES-256-GCM, bytes
-- `nonce (12) || ciphertext || tag (16)`, with the id of the key that sealed it in the
-- `*_key_id` column beside it, so keys can be rotated (`ENCRYPTION_KEY`, `ENCRYPTION_PREVIOUS_KEYS`).

-- apps: the plaintext secret becomes legacy. The migration cannot encrypt (the key is not in the
-- database); the api seals leftover plaintext secrets when it starts, and ingest reads both forms
-- until then.
ALTER TABLE apps RENAME COLUMN webhook_secret TO legacy_webhook_secret;
ALTER TABLE apps ALTER COLUMN legacy_webhook_secret DROP NOT NULL;
ALTER TABLE apps
    ADD COLUMN webhook_secret_ciphertext bytea,
    ADD COLUMN webhook_secret_key_id text,
    ADD CONSTRAINT apps_webhook_secret_present
        CHECK (legacy_webhook_secret IS NOT NULL OR webhook_secret_ciphertext IS NOT NULL),
    ADD CONSTRAINT apps_webhook_secret_sealed
        CHECK ((webhook_secret_ciphertext IS NULL) = (webhook_secret_key_id IS NULL));
COMMENT ON COLUMN apps.legacy_webhook_secret IS 'Plaintext secret of apps created before encryption at rest; sealed and cleared by the api at start.';
COMMENT ON COLUMN apps.webhook_secret_ciphertext IS 'Sealed HS256 secret of /webhooks/dialpad/{id} (the secret registered at Dialpad).';

-- The foundation's placeholder tables were never written by any code: replaced, not altered.
DROP TABLE dialpad_webhooks;
DROP TABLE dialpad_connections;

CREATE TABLE dialpad_connections (
    app_id uuid PRIMARY KEY REFERENCES apps (id),
    environment text NOT NULL CHECK (environment IN ('sandbox', 'production')),
    auth_type text NOT NULL CHECK (auth_type IN ('oauth', 'api_key')),
    access_token_ciphertext bytea NOT NULL,
    refresh_token_ciphertext bytea,
    token_key_id text NOT NULL,
    token_expires_at timestamptz,
    dialpad_company_id bigint,
    scopes text,
    status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'reauth_required')),
    last_error text,
    refreshed_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE dialpad_connections IS 'How we call Dialpad for an app: its OAuth tokens, or its own Dialpad API key.';
COMMENT ON COLUMN dialpad_connections.access_token_ciphertext IS 'Sealed OAuth access token, or the sealed API key when auth_type = api_key.';
COMMENT ON COLUMN dialpad_connections.refresh_token_ciphertext IS 'Sealed OAuth refresh token (Dialpad rotates it on every refresh); NULL for an API key, or if Dialpad issued none.';
COMMENT ON COLUMN dialpad_connections.token_key_id IS 'Key id of both sealed tokens (they are always written together).';
COMMENT ON COLUMN dialpad_connections.status IS 'reauth_required: Dialpad refused a refresh; the app must connect again.';
COMMENT ON COLUMN dialpad_connections.last_error IS 'Why the connection needs re-authorisation (Dialpad''s answer, never a token).';

CREATE TABLE dialpad_webhooks (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id uuid NOT NULL REFERENCES apps (id),
    dialpad_webhook_id bigint NOT NULL,
    hook_url text NOT NULL,
    secret_ciphertext bytea NOT NULL,
    secret_key_id text NOT NULL,
    signature_algo text NOT NULL,
    signature_type text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    UNIQUE (app_id, dialpad_webhook_id)
);
COMMENT ON TABLE dialpad_webhooks IS 'Webhooks registered at Dialpad for an app (POST /api/v2/webhooks). Ingest accepts events signed with the secret of any of them that is live or was deleted less than a day ago.';

CREATE TABLE dialpad_subscriptions (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id uuid NOT NULL REFERENCES apps (id),
    kind text NOT NULL CHECK (kind IN ('call', 'sms')),
    dialpad_subscription_id bigint NOT NULL,
    dialpad_webhook_id bigint NOT NULL,
    options jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    UNIQUE (app_id, kind, dialpad_subscription_id)
);
COMMENT ON TABLE dialpad_subscriptions IS 'Event subscriptions created at Dialpad for an app (/api/v2/subscriptions/{call,sms}).';
COMMENT ON COLUMN dialpad_subscriptions.options IS 'What was asked of Dialpad: call_states, or direction/status/include_internal; plus target.';

CREATE TABLE oauth_states (
    state_hash bytea PRIMARY KEY,
    app_id uuid NOT NULL REFERENCES apps (id),
    environment text NOT NULL CHECK (environment IN ('sandbox', 'production')),
    code_verifier_ciphertext bytea NOT NULL,
    code_verifier_key_id text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at timestamptz
);
COMMENT ON TABLE oauth_states IS 'Single-use OAuth 2.0 states with their PKCE code verifiers (RFC 7636).';
COMMENT ON COLUMN oauth_states.state_hash IS 'SHA-256 of the state sent to Dialpad: reading the table does not yield a usable state.';
CREATE INDEX oauth_states_expires_idx ON oauth_states (expires_at);
