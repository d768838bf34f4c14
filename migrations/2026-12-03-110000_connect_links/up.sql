-- One-time connect links: a URL a person opens in a browser to connect an app to Dialpad,
-- without an API key in the browser. Stored by the SHA-256 of the token, single use, short-lived.
CREATE TABLE connect_links (
    token_hash bytea PRIMARY KEY,
    app_id uuid NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    -- The operator confirmed the app may switch to another Dialpad company.
    replace_company boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at timestamptz
);
CREATE INDEX connect_links_expires_idx ON connect_links (expires_at);

-- Carried from the connect request to the callback.
ALTER TABLE oauth_states ADD COLUMN replace_company boolean NOT NULL DEFAULT false;
