//! Api settings.
//!
//! Env vars: `PORT` (default 8080), `HOST` (default `0.0.0.0`), `INTERNAL_API_SECRET` and
//! `ENCRYPTION_KEY` (required), `ENCRYPTION_PREVIOUS_KEYS`, `API_KEY_BCRYPT_COST` (default 10),
//! `API_KEY_CACHE_TTL_MS` (default 300000), the Dialpad settings `DIALPAD_ENV` (default
//! `sandbox`), `DIALPAD_BASE_URL`, `DIALPAD_API_KEY`, `DIALPAD_CLIENT_ID`,
//! `DIALPAD_CLIENT_SECRET`, `DIALPAD_REDIRECT_URI`, `DIALPAD_SCOPES`, `DIALPAD_TIMEOUT_MS`
//! (default 10000), `PUBLIC_INGEST_URL`, `OAUTH_SUCCESS_REDIRECT_URL`,
//! `RATE_LIMIT_PER_IP_PER_MIN` (1000), `RATE_LIMIT_PER_KEY_PER_MIN` (1000),
//! `RATE_LIMIT_ADMIN_PER_MIN` (60), `RATE_LIMIT_VERIFICATIONS_PER_MIN` (30), `TRUSTED_PROXY_HOPS` (0), `CORS_ALLOWED_ORIGINS`,
//! `TOTAL_CACHE_TTL_MS` (1000), `RESPONSE_CACHE_MB` (64), `PUSH_MAX_SUBSCRIPTIONS_PER_APP` (20),
//! `PUSH_TIMEOUT_MS` (5000), `ALLOW_PRIVATE_WEBHOOK_URLS`, the live streams' `STREAM_*`
//! ([`StreamSettings`]),
//! plus the shared `DATABASE_*` and `LOG_FORMAT` (see `bootstrap::settings`).

use std::time::Duration;

use bootstrap::settings::{DatabaseSettings, EncryptionSettings, MetricsSettings};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// Everything the api service is configured with.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Settings {
    #[serde(flatten)]
    pub database: DatabaseSettings,
    /// `ENCRYPTION_KEY` (required) and `ENCRYPTION_PREVIOUS_KEYS`: seal tokens and secrets.
    #[serde(flatten)]
    pub encryption: EncryptionSettings,
    /// `METRICS_TOKEN`: the bearer token `/metrics` asks for, if any.
    #[serde(flatten)]
    pub metrics: MetricsSettings,
    /// The Dialpad client and OAuth app.
    #[serde(flatten)]
    pub dialpad: DialpadSettings,
    /// `HOST`: address to bind.
    #[serde(default = "default_host")]
    pub host: String,
    /// `PORT`: port to bind; 0 picks a free one (tests).
    #[serde(default = "default_port")]
    pub port: u16,
    /// `INTERNAL_API_SECRET` (required): bearer secret of the `/internal/*` endpoints.
    #[serde(serialize_with = "bootstrap::settings::redacted")]
    pub internal_api_secret: Option<SecretString>,
    /// `API_KEY_BCRYPT_COST`: bcrypt cost for new API keys (4–31; each step doubles the work).
    #[serde(default = "default_bcrypt_cost")]
    pub api_key_bcrypt_cost: u32,
    /// `ALLOW_PRIVATE_WEBHOOK_URLS`: accept subscription URLs on loopback, private and other
    /// non-public addresses (development and tests only; default false).
    #[serde(default)]
    pub allow_private_webhook_urls: bool,
    /// `PUSH_MAX_SUBSCRIPTIONS_PER_APP`: webhook subscriptions an app may hold (default 20).
    #[serde(default = "default_max_push_subscriptions")]
    pub push_max_subscriptions_per_app: usize,
    /// `PUSH_TIMEOUT_MS`: how long a test send (`POST /api/webhooks/test`) waits for the
    /// receiver, connect and response together, milliseconds (the worker's deliveries read
    /// the same setting).
    #[serde(default = "default_push_timeout_ms")]
    pub push_timeout_ms: u64,
    /// The live streams (`/api/events/stream`, `/api/events/ws`).
    #[serde(flatten)]
    pub stream: StreamSettings,
    /// `API_KEY_CACHE_TTL_MS`: how long a verified key skips bcrypt, milliseconds.
    #[serde(default = "default_key_cache_ttl_ms")]
    pub api_key_cache_ttl_ms: u64,
    /// `TOTAL_CACHE_TTL_MS`: how long a counted list `total` is reused for the same tenant
    /// and filters, milliseconds (0: count on every first page).
    #[serde(default = "default_total_cache_ttl_ms")]
    pub total_cache_ttl_ms: u64,
    /// `RESPONSE_CACHE_MB`: memory for list answers kept until their tenant's data changes,
    /// mebibytes (0: every list request queries the database). See `api::response_cache`.
    #[serde(default = "default_response_cache_mb")]
    pub response_cache_mb: u64,
    /// `RATE_LIMIT_PER_IP_PER_MIN`: requests per minute per client address.
    #[serde(default = "default_rate_limit")]
    pub rate_limit_per_ip_per_min: u32,
    /// `RATE_LIMIT_PER_KEY_PER_MIN`: tenant requests per minute per API key.
    #[serde(default = "default_rate_limit")]
    pub rate_limit_per_key_per_min: u32,
    /// `RATE_LIMIT_ADMIN_PER_MIN`: `/internal/*` and `/auth/*` requests per minute per client
    /// address.
    #[serde(default = "default_admin_rate_limit")]
    pub rate_limit_admin_per_min: u32,
    /// `RATE_LIMIT_VERIFICATIONS_PER_MIN`: bcrypt verifications of API keys (keys not verified
    /// recently) per minute per client address: bounds what guessing a key's secret costs.
    #[serde(default = "default_verifications_rate_limit")]
    pub rate_limit_verifications_per_min: u32,
    /// `TRUSTED_PROXY_HOPS`: proxies in front of the api that append to `X-Forwarded-For`
    /// (Render's load balancer: 1). The client address is that many entries from the right;
    /// 0 (the default): the TCP peer. Never more than the real number of proxies, or clients
    /// pick their own address.
    #[serde(default)]
    pub trusted_proxy_hops: usize,
    /// `RATE_LIMIT_TRUST_PROXY` (replaced by `TRUSTED_PROXY_HOPS`): when set and
    /// `TRUSTED_PROXY_HOPS` is not, taken as one hop, with a warning at start-up.
    #[serde(default)]
    pub rate_limit_trust_proxy: bool,
    /// `CORS_ALLOWED_ORIGINS`: comma-separated origins browsers may call the api from (e.g.
    /// `https://crm.example.com`); empty: no cross-origin access.
    #[serde(default)]
    pub cors_allowed_origins: String,
}

impl Settings {
    /// Settings for tests and tools: everything default but the database, the admin secret and
    /// the encryption key, with the cheapest bcrypt cost and no Dialpad credentials.
    pub fn new(database_url: &str, internal_api_secret: &str, encryption_key: &str) -> Self {
        Settings {
            database: DatabaseSettings::for_url(database_url),
            encryption: EncryptionSettings::with_key(encryption_key),
            metrics: MetricsSettings::default(),
            dialpad: DialpadSettings::default(),
            host: "127.0.0.1".into(),
            port: 0,
            internal_api_secret: Some(internal_api_secret.into()),
            api_key_bcrypt_cost: bcrypt_min_cost(),
            push_max_subscriptions_per_app: default_max_push_subscriptions(),
            push_timeout_ms: default_push_timeout_ms(),
            stream: StreamSettings::default(),
            // Tests' receivers listen on 127.0.0.1; the guard's own tests turn this off.
            allow_private_webhook_urls: true,
            api_key_cache_ttl_ms: default_key_cache_ttl_ms(),
            // Tests check totals right after writing rows.
            total_cache_ttl_ms: 0,
            // Tests list right after writing rows; the cache's own tests turn it on.
            response_cache_mb: 0,
            // Tests drive many requests from one address; the limits are set when tested.
            rate_limit_per_ip_per_min: 1_000_000,
            rate_limit_per_key_per_min: 1_000_000,
            rate_limit_admin_per_min: 1_000_000,
            rate_limit_verifications_per_min: 1_000_000,
            trusted_proxy_hops: 0,
            rate_limit_trust_proxy: false,
            cors_allowed_origins: String::new(),
        }
    }

    pub(crate) fn key_cache_ttl(&self) -> Duration {
        Duration::from_millis(self.api_key_cache_ttl_ms)
    }
}

/// The live streams of push events (`crate::stream`).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct StreamSettings {
    /// `STREAM_RESUME_WINDOW_S`: how far back a stream resumes from `Last-Event-ID`, seconds
    /// (default 900). An app's changes are announced for its streams until this long after its
    /// last connection closed.
    #[serde(default = "default_stream_resume_window_s")]
    pub stream_resume_window_s: u64,
    /// `STREAM_HEARTBEAT_MS`: interval of SSE comment lines and WebSocket pings on an idle
    /// stream, milliseconds (default 15000).
    #[serde(default = "default_stream_heartbeat_ms")]
    pub stream_heartbeat_ms: u64,
    /// `STREAM_MAX_CONNECTIONS_PER_APP`: open streams (SSE and WebSocket together) an app may
    /// hold on one api replica (default 20); past that, 429.
    #[serde(default = "default_stream_max_connections")]
    pub stream_max_connections_per_app: usize,
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings {
            stream_resume_window_s: default_stream_resume_window_s(),
            stream_heartbeat_ms: default_stream_heartbeat_ms(),
            stream_max_connections_per_app: default_stream_max_connections(),
        }
    }
}

fn default_stream_resume_window_s() -> u64 {
    900
}

fn default_stream_heartbeat_ms() -> u64 {
    15_000
}

fn default_stream_max_connections() -> usize {
    20
}

fn default_push_timeout_ms() -> u64 {
    5_000
}

/// How we reach Dialpad, as whom, and where its OAuth flow comes back to.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct DialpadSettings {
    /// `DIALPAD_ENV`: `sandbox` (`https://sandbox.dialpad.com`) or `production`
    /// (`https://dialpad.com`), `docs/dialpad.md` §1.
    #[serde(default = "default_dialpad_env")]
    pub dialpad_env: String,
    /// `DIALPAD_BASE_URL`: overrides the environment's host (tests point it at a local mock).
    pub dialpad_base_url: Option<String>,
    /// `DIALPAD_API_KEY`: a server-wide company API key, used for apps without a connection.
    #[serde(serialize_with = "bootstrap::settings::redacted")]
    pub dialpad_api_key: Option<SecretString>,
    /// `DIALPAD_CLIENT_ID`: the OAuth app's client id (needed for `/auth/dialpad/*`).
    pub dialpad_client_id: Option<String>,
    /// `DIALPAD_CLIENT_SECRET`: the OAuth app's client secret.
    #[serde(serialize_with = "bootstrap::settings::redacted")]
    pub dialpad_client_secret: Option<SecretString>,
    /// `DIALPAD_REDIRECT_URI`: our callback as registered with Dialpad,
    /// `https://<api host>/auth/dialpad/callback`.
    pub dialpad_redirect_uri: Option<String>,
    /// `DIALPAD_SCOPES`: space-separated additional OAuth scopes (e.g. `recordings_export
    /// message_content_export`); empty by default.
    #[serde(default)]
    pub dialpad_scopes: String,
    /// `DIALPAD_TIMEOUT_MS`: total time allowed for one Dialpad request, milliseconds.
    #[serde(default = "default_dialpad_timeout_ms")]
    pub dialpad_timeout_ms: u64,
    /// `PUBLIC_INGEST_URL`: the ingest service's public base URL; default webhook URLs are
    /// `$PUBLIC_INGEST_URL/webhooks/dialpad/{app_id}`.
    pub public_ingest_url: Option<String>,
    /// `OAUTH_SUCCESS_REDIRECT_URL`: where a completed OAuth connection sends the browser
    /// (with `app_id` and `status=connected` appended); JSON is answered when unset.
    pub oauth_success_redirect_url: Option<String>,
}

impl Default for DialpadSettings {
    fn default() -> Self {
        DialpadSettings {
            dialpad_env: default_dialpad_env(),
            dialpad_base_url: None,
            dialpad_api_key: None,
            dialpad_client_id: None,
            dialpad_client_secret: None,
            dialpad_redirect_uri: None,
            dialpad_scopes: String::new(),
            dialpad_timeout_ms: default_dialpad_timeout_ms(),
            public_ingest_url: None,
            oauth_success_redirect_url: None,
        }
    }
}

fn default_dialpad_env() -> String {
    "sandbox".into()
}

fn default_dialpad_timeout_ms() -> u64 {
    10_000
}

fn default_rate_limit() -> u32 {
    1_000
}

fn default_verifications_rate_limit() -> u32 {
    30
}

fn default_admin_rate_limit() -> u32 {
    60
}

fn default_host() -> String {
    "0.0.0.0".into()
}

fn default_port() -> u16 {
    8080
}

fn default_max_push_subscriptions() -> usize {
    20
}

fn default_bcrypt_cost() -> u32 {
    10
}

fn bcrypt_min_cost() -> u32 {
    4
}

/// `TOTAL_CACHE_TTL_MS` when unset.
pub const DEFAULT_TOTAL_CACHE_TTL_MS: u64 = 1_000;

fn default_total_cache_ttl_ms() -> u64 {
    DEFAULT_TOTAL_CACHE_TTL_MS
}

/// `RESPONSE_CACHE_MB` when unset.
pub const DEFAULT_RESPONSE_CACHE_MB: u64 = 64;

fn default_response_cache_mb() -> u64 {
    DEFAULT_RESPONSE_CACHE_MB
}

fn default_key_cache_ttl_ms() -> u64 {
    300_000
}
