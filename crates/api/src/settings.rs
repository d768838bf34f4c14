//! Api settings.
//!
//! Env vars: `PORT` (default 8080), `HOST` (default `0.0.0.0`), `INTERNAL_API_SECRET`
//! (required), `API_KEY_BCRYPT_COST` (default 10), `API_KEY_CACHE_TTL_MS` (default 300000),
//! plus the shared `DATABASE_*` and `LOG_FORMAT` (see `bootstrap::settings`).

use std::time::Duration;

use bootstrap::settings::DatabaseSettings;
use secrecy::SecretString;
use serde::Deserialize;

/// Everything the api service is configured with.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    #[serde(flatten)]
    pub database: DatabaseSettings,
    /// `HOST`: address to bind.
    #[serde(default = "default_host")]
    pub host: String,
    /// `PORT`: port to bind; 0 picks a free one (tests).
    #[serde(default = "default_port")]
    pub port: u16,
    /// `INTERNAL_API_SECRET` (required): bearer secret of the `/internal/*` endpoints.
    pub internal_api_secret: Option<SecretString>,
    /// `API_KEY_BCRYPT_COST`: bcrypt cost for new API keys (4–31; each step doubles the work).
    #[serde(default = "default_bcrypt_cost")]
    pub api_key_bcrypt_cost: u32,
    /// `API_KEY_CACHE_TTL_MS`: how long a verified key skips bcrypt, milliseconds.
    #[serde(default = "default_key_cache_ttl_ms")]
    pub api_key_cache_ttl_ms: u64,
}

impl Settings {
    /// Settings for tests and tools: everything default but the database and the secret, and
    /// the cheapest bcrypt cost.
    pub fn new(database_url: &str, internal_api_secret: &str) -> Self {
        Settings {
            database: DatabaseSettings::for_url(database_url),
            host: "127.0.0.1".into(),
            port: 0,
            internal_api_secret: Some(internal_api_secret.into()),
            api_key_bcrypt_cost: bcrypt_min_cost(),
            api_key_cache_ttl_ms: default_key_cache_ttl_ms(),
        }
    }

    pub(crate) fn key_cache_ttl(&self) -> Duration {
        Duration::from_millis(self.api_key_cache_ttl_ms)
    }
}

fn default_host() -> String {
    "0.0.0.0".into()
}

fn default_port() -> u16 {
    8080
}

fn default_bcrypt_cost() -> u32 {
    10
}

fn bcrypt_min_cost() -> u32 {
    4
}

fn default_key_cache_ttl_ms() -> u64 {
    300_000
}
