//! Ingest settings.
//!
//! Env vars: `PORT` (default 8081), `HOST` (default `0.0.0.0`), `DIALPAD_WEBHOOK_SECRET`,
//! `ENCRYPTION_KEY` (both required), `ENCRYPTION_PREVIOUS_KEYS`,
//! `INGEST_DB_RETRY_BUDGET_MS` (default 3000), `INGEST_BODY_TIMEOUT_MS` (10000),
//! `APP_SECRET_CACHE_TTL_MS` (30000), `INGEST_FAILED_VERIFICATIONS_PER_MIN` (60),
//! `TRUSTED_PROXY_HOPS` (0), `UNSCOPED_WEBHOOK_APP_ID` (none), `INGEST_SPOOL_DIR` (none),
//! `INGEST_SPOOL_MAX_BYTES` (1 GiB), plus the shared `DATABASE_*` and
//! `LOG_FORMAT` (see `bootstrap::settings`).

use std::time::Duration;

use bootstrap::settings::{DatabaseSettings, EncryptionSettings, MetricsSettings};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// Everything the ingest service is configured with.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Settings {
    #[serde(flatten)]
    pub database: DatabaseSettings,
    /// `ENCRYPTION_KEY` (required) and `ENCRYPTION_PREVIOUS_KEYS`: to open app webhook secrets.
    #[serde(flatten)]
    pub encryption: EncryptionSettings,
    /// `METRICS_TOKEN`: the bearer token `/metrics` asks for, if any.
    #[serde(flatten)]
    pub metrics: MetricsSettings,
    /// `HOST`: address to bind.
    #[serde(default = "default_host")]
    pub host: String,
    /// `PORT`: port to bind; 0 picks a free one (tests).
    #[serde(default = "default_port")]
    pub port: u16,
    /// `DIALPAD_WEBHOOK_SECRET` (required): HS256 secret of the unscoped route
    /// `POST /webhooks/dialpad`.
    #[serde(serialize_with = "bootstrap::settings::redacted")]
    pub dialpad_webhook_secret: Option<SecretString>,
    /// `INGEST_DB_RETRY_BUDGET_MS`: how long one request keeps retrying while the database is
    /// unreachable before answering 503. Dialpad waits 5 s per delivery (`docs/dialpad.md` §6.3), so stay
    /// well below that.
    #[serde(default = "default_retry_budget_ms")]
    pub ingest_db_retry_budget_ms: u64,
    /// `INGEST_BODY_TIMEOUT_MS`: the most a request's body may take to arrive, milliseconds;
    /// a slower one (a client holding connections open, "slowloris") is answered 408.
    #[serde(default = "default_body_timeout_ms")]
    pub ingest_body_timeout_ms: u64,
    /// `APP_SECRET_CACHE_TTL_MS`: how long an app's webhook secrets are cached, milliseconds.
    /// A signature that fails against cached secrets is checked again against fresh ones,
    /// read at most once a second per app (`crate::secrets`), so a new secret still works.
    #[serde(default = "default_secret_cache_ttl_ms")]
    pub app_secret_cache_ttl_ms: u64,
    /// `UNSCOPED_WEBHOOK_APP_ID`: the app that events on the unscoped route belong to, for a
    /// single-tenant deployment that registered the shared URL at Dialpad (as the Node CTI
    /// server's setup guide told users to). Unset, they are stored `unroutable`. They are
    /// still verified with `DIALPAD_WEBHOOK_SECRET`. The app must exist at start-up.
    pub unscoped_webhook_app_id: Option<uuid::Uuid>,
    /// `INGEST_FAILED_VERIFICATIONS_PER_MIN`: refused webhooks (bad signature, unknown app,
    /// malformed) per minute per client address; beyond, the refusals answer 429 with
    /// `Retry-After`. A correctly signed webhook is never refused for it.
    #[serde(default = "default_failed_verifications_per_min")]
    pub ingest_failed_verifications_per_min: u32,
    /// `TRUSTED_PROXY_HOPS`: proxies in front of ingest that append to `X-Forwarded-For`
    /// (Render: 1); the client address is that many entries from the right, 0: the TCP peer.
    #[serde(default)]
    pub trusted_proxy_hops: usize,
    /// `INGEST_SPOOL_DIR`: where verified events wait on local disk while the database is
    /// unreachable (`crate::spool`); unset: no spool, such events are answered 503. Give it a
    /// persistent disk, or spooled events are lost with the instance's filesystem.
    #[serde(default)]
    pub ingest_spool_dir: Option<String>,
    /// `INGEST_SPOOL_MAX_BYTES`: the most the spool holds; beyond, 503 with `Retry-After`.
    /// Default 1 GiB (some 400k-700k Dialpad events of 1.5-2.5 KB as spooled).
    #[serde(default = "default_spool_max_bytes")]
    pub ingest_spool_max_bytes: u64,
}

impl Settings {
    /// Settings for tests and tools: everything default but the database, the unscoped
    /// route's secret and the encryption key.
    pub fn new(database_url: &str, dialpad_webhook_secret: &str, encryption_key: &str) -> Self {
        Settings {
            database: DatabaseSettings::for_url(database_url),
            encryption: EncryptionSettings::with_key(encryption_key),
            metrics: MetricsSettings::default(),
            host: "127.0.0.1".into(),
            port: 0,
            dialpad_webhook_secret: Some(dialpad_webhook_secret.into()),
            ingest_db_retry_budget_ms: default_retry_budget_ms(),
            ingest_body_timeout_ms: default_body_timeout_ms(),
            app_secret_cache_ttl_ms: default_secret_cache_ttl_ms(),
            unscoped_webhook_app_id: None,
            ingest_failed_verifications_per_min: default_failed_verifications_per_min(),
            trusted_proxy_hops: 0,
            ingest_spool_dir: None,
            ingest_spool_max_bytes: default_spool_max_bytes(),
        }
    }

    pub(crate) fn retry_budget(&self) -> Duration {
        Duration::from_millis(self.ingest_db_retry_budget_ms)
    }
}

fn default_host() -> String {
    "0.0.0.0".into()
}

fn default_port() -> u16 {
    8081
}

fn default_retry_budget_ms() -> u64 {
    3_000
}

fn default_secret_cache_ttl_ms() -> u64 {
    30_000
}

fn default_failed_verifications_per_min() -> u32 {
    60
}

fn default_spool_max_bytes() -> u64 {
    1024 * 1024 * 1024
}

fn default_body_timeout_ms() -> u64 {
    10_000
}
