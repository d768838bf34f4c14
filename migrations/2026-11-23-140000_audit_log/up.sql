-- Who changed what on a tenant: app and API-key changes, written in the same transaction as
-- the change itself.
CREATE TABLE audit_log (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id uuid NOT NULL REFERENCES apps (id),
    action text NOT NULL,
    actor text NOT NULL,
    details jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE audit_log IS 'App and API-key changes (app.created, app.renamed, app.deactivated, app.reactivated, api_key.issued, api_key.revoked). Never holds a secret.';
COMMENT ON COLUMN audit_log.actor IS 'Who: "admin" (the INTERNAL_API_SECRET bearer) and the client address.';
CREATE INDEX audit_log_app_idx ON audit_log (app_id, id DESC);
