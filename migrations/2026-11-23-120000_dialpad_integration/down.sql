DROP TABLE oauth_states;
DROP TABLE dialpad_subscriptions;
DROP TABLE dialpad_webhooks;
DROP TABLE dialpad_connections;

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

-- Sealed secrets cannot be decrypted here: refuse to lose them silently.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM apps WHERE legacy_webhook_secret IS NULL) THEN
        RAISE EXCEPTION 'apps hold encrypted webhook secrets; cannot revert without losing them';
    END IF;
END $$;
ALTER TABLE apps DROP CONSTRAINT apps_webhook_secret_sealed;
ALTER TABLE apps DROP CONSTRAINT apps_webhook_secret_present;
ALTER TABLE apps DROP COLUMN webhook_secret_key_id;
ALTER TABLE apps DROP COLUMN webhook_secret_ciphertext;
ALTER TABLE apps ALTER COLUMN legacy_webhook_secret SET NOT NULL;
ALTER TABLE apps RENAME COLUMN legacy_webhook_secret TO webhook_secret;
