//! Layered settings: compiled defaults (serde defaults on each service's `Settings`), then an
//! optional TOML file named by `CONFIG_FILE`, then environment variables.
//!
//! Environment variables keep their documented names (`DATABASE_URL`, `PORT`,
//! `WORKER_POLL_INTERVAL_MS`, ...): each maps to the field of the same name in lower case, so a
//! service's `Settings` is a flat struct.
//!
//! Variables of the Node CTI server this project replaces (`NODE_ENV`, `DIALPAD_SANDBOX_*`,
//! `DIALPAD_PROD_*`, `DB_*`, `CTI_SERVER_URL`) are named in a start-up warning with what to set
//! instead.
//!
//! Env vars read here: `CONFIG_FILE` (path of an optional TOML file), `DATABASE_URL`,
//! `DATABASE_POOL_SIZE`, `DATABASE_CONNECT_TIMEOUT_MS`, `LOG_FORMAT`, and for the services that
//! hold secrets (api, ingest) `ENCRYPTION_KEY` and `ENCRYPTION_PREVIOUS_KEYS`.

use std::time::Duration;

use anyhow::Context;
use db::PoolSettings;
use db::crypto::Keyring;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize, Serializer};

/// Loads `T` from defaults, the optional `CONFIG_FILE`, then the environment.
///
/// # Errors
/// When the file cannot be read or a value has the wrong type; the message names the setting.
pub fn load<T: DeserializeOwned>() -> anyhow::Result<T> {
    for (name, replacement) in legacy_variables(std::env::vars().map(|(name, _)| name)) {
        tracing::warn!(
            variable = %name,
            "{name} is a setting of the Node CTI server and is ignored here; set {replacement} \
             instead (docs: README, Configuration)."
        );
    }
    let mut builder = config::Config::builder();
    if let Ok(path) = std::env::var("CONFIG_FILE") {
        builder = builder.add_source(config::File::with_name(&path).required(true));
    }
    builder
        // An empty variable counts as unset (Compose passes `${X:-}` through as "").
        .add_source(
            config::Environment::default()
                .try_parsing(true)
                .ignore_empty(true),
        )
        .build()
        .context("Failed to read settings")?
        .try_deserialize()
        .context("Invalid settings")
}

/// Settings of the Node CTI server this project replaces (a name, or a prefix ending in `_`),
/// and what to set here instead. Teams moving over often keep their old environment; the
/// services name each such variable at start-up rather than ignore it silently.
const LEGACY_VARIABLES: &[(&str, &str)] = &[
    (
        "NODE_ENV",
        "nothing for the environment (LOG_FORMAT=json for production logs; DIALPAD_ENV picks Dialpad's sandbox or production)",
    ),
    (
        "DIALPAD_SANDBOX_",
        "DIALPAD_ENV=sandbox with DIALPAD_CLIENT_ID, DIALPAD_CLIENT_SECRET, DIALPAD_REDIRECT_URI or DIALPAD_API_KEY",
    ),
    (
        "DIALPAD_PROD_",
        "DIALPAD_ENV=production with DIALPAD_CLIENT_ID, DIALPAD_CLIENT_SECRET, DIALPAD_REDIRECT_URI or DIALPAD_API_KEY",
    ),
    ("DB_", "DATABASE_URL (postgres://user:pass@host:port/db)"),
    (
        "CTI_SERVER_URL",
        "PUBLIC_INGEST_URL (where Dialpad delivers webhooks)",
    ),
];

/// The variables among `names` that belong to the Node CTI server, each with its replacement.
pub fn legacy_variables(names: impl Iterator<Item = String>) -> Vec<(String, &'static str)> {
    let mut found: Vec<(String, &'static str)> = names
        .filter_map(|name| {
            LEGACY_VARIABLES
                .iter()
                .find(|(old, _)| match old.strip_suffix('_') {
                    Some(_) => name.starts_with(old),
                    None => name == *old,
                })
                .map(|(_, replacement)| (name, *replacement))
        })
        .collect();
    found.sort();
    found
}

/// Unwraps a required setting, failing with a message that names its environment variable.
///
/// # Errors
/// `"<NAME> is required but not set"` when `value` is `None`.
pub fn required<T>(name: &str, value: Option<T>) -> anyhow::Result<T> {
    value.with_context(|| format!("{name} is required but not set"))
}

/// The fewest characters a service accepts for a secret it verifies others with
/// (`INTERNAL_API_SECRET`, `DIALPAD_WEBHOOK_SECRET`). One signed webhook lets anyone test
/// guesses of an HS256 secret offline, so it must be long and random: `openssl rand -base64 32`
/// gives 44 characters.
pub const MIN_SECRET_CHARS: usize = 32;

/// Refuses a secret shorter than [`MIN_SECRET_CHARS`] at start-up; `None` (not set) passes, as
/// whether it is required is checked where it is used.
///
/// # Errors
/// A message naming the setting, never its value.
pub fn require_long_secret(name: &str, secret: Option<&SecretString>) -> anyhow::Result<()> {
    match secret {
        Some(secret) if secret.expose_secret().chars().count() < MIN_SECRET_CHARS => {
            anyhow::bail!(
                "{name} is shorter than {MIN_SECRET_CHARS} characters; set a long random value, \
                 e.g. the output of `openssl rand -base64 32`"
            )
        }
        _ => Ok(()),
    }
}

/// Database settings every service shares.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct DatabaseSettings {
    /// `DATABASE_URL` (required): `postgres://user:password@host:port/db`. Contains a password,
    /// so it is never logged.
    #[serde(serialize_with = "redacted")]
    pub database_url: Option<SecretString>,
    /// `DATABASE_POOL_SIZE`: most open connections per process.
    #[serde(default = "default_pool_size")]
    pub database_pool_size: u32,
    /// `DATABASE_CONNECT_TIMEOUT_MS`: how long a request waits for a connection, milliseconds.
    #[serde(default = "default_connect_timeout_ms")]
    pub database_connect_timeout_ms: u64,
    /// `DATABASE_STATEMENT_TIMEOUT_MS`: Postgres' `statement_timeout` on every pooled
    /// connection, milliseconds; `0` for none. A statement running longer fails (a request
    /// answers 503, a worker batch is retried).
    #[serde(default = "default_statement_timeout_ms")]
    pub database_statement_timeout_ms: u64,
    /// `DATABASE_CA_FILE`: a PEM file of the roots the database's certificate must lead to
    /// (a hosted Postgres' CA bundle), for `sslmode=verify-ca`/`verify-full` (and `require`, which
    /// then checks the chain, as libpq does). Unset: the system's roots. Added to the URL as
    /// `sslrootcert` unless the URL names one (see `db::connect`).
    #[serde(default)]
    pub database_ca_file: Option<String>,
}

impl DatabaseSettings {
    /// Settings for a given URL with default pool sizing (used by tests and tools).
    pub fn for_url(database_url: &str) -> Self {
        DatabaseSettings {
            database_url: Some(database_url.into()),
            database_pool_size: default_pool_size(),
            database_connect_timeout_ms: default_connect_timeout_ms(),
            database_statement_timeout_ms: default_statement_timeout_ms(),
            database_ca_file: None,
        }
    }

    /// The URL to connect with: `DATABASE_URL`, with `DATABASE_CA_FILE` as its `sslrootcert`.
    ///
    /// # Errors
    /// When `DATABASE_URL` is not set.
    pub fn url(&self) -> anyhow::Result<SecretString> {
        let url = self
            .database_url
            .as_ref()
            .context("DATABASE_URL is required but not set")?;
        let url = url.expose_secret();
        Ok(match &self.database_ca_file {
            Some(ca_file) if !url.contains("sslrootcert=") => {
                let separator = if url.contains('?') { '&' } else { '?' };
                let ca_file = percent_encoding::utf8_percent_encode(
                    ca_file,
                    percent_encoding::NON_ALPHANUMERIC,
                );
                format!("{url}{separator}sslrootcert={ca_file}").into()
            }
            _ => url.into(),
        })
    }

    /// Pool sizing for [`db::connect_pool`].
    pub fn pool(&self) -> PoolSettings {
        PoolSettings {
            max_size: self.database_pool_size,
            connect_timeout: Duration::from_millis(self.database_connect_timeout_ms),
            statement_timeout: (self.database_statement_timeout_ms > 0)
                .then(|| Duration::from_millis(self.database_statement_timeout_ms)),
            custom_plans_only: false,
        }
    }
}

/// Who may read `/metrics`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct MetricsSettings {
    /// `METRICS_TOKEN`: when set, `GET /metrics` answers only `Authorization: Bearer <token>`
    /// (401 otherwise), for services whose port is public (ingest and api on Render). Unset:
    /// open, for a private network.
    #[serde(default, serialize_with = "redacted")]
    pub metrics_token: Option<SecretString>,
}

/// The keys secrets at rest are sealed with (see `db::crypto`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct EncryptionSettings {
    /// `ENCRYPTION_KEY` (required by api and ingest): 32 random bytes, base64
    /// (`openssl rand -base64 32`). New secrets are sealed with it.
    #[serde(serialize_with = "redacted")]
    pub encryption_key: Option<SecretString>,
    /// `ENCRYPTION_PREVIOUS_KEYS`: comma-separated former keys, still accepted for opening.
    /// To rotate: move the current key here, set a new `ENCRYPTION_KEY`, restart, then run
    /// `api reseal` (`crate::cli::reseal`) and remove the former key.
    #[serde(serialize_with = "redacted")]
    pub encryption_previous_keys: Option<SecretString>,
}

impl EncryptionSettings {
    /// Settings with one key (tests and tools).
    pub fn with_key(key: &str) -> Self {
        EncryptionSettings {
            encryption_key: Some(key.into()),
            encryption_previous_keys: None,
        }
    }

    /// The keyring.
    ///
    /// # Errors
    /// When `ENCRYPTION_KEY` is missing or a key is not 32 bytes of base64; the message names
    /// the setting and never contains a key.
    pub fn keyring(&self) -> anyhow::Result<Keyring> {
        let current = required("ENCRYPTION_KEY", self.encryption_key.as_ref())?;
        Ok(Keyring::from_settings(
            current,
            self.encryption_previous_keys.as_ref(),
        )?)
    }
}

fn default_pool_size() -> u32 {
    10
}

fn default_connect_timeout_ms() -> u64 {
    2_000
}

fn default_statement_timeout_ms() -> u64 {
    u64::try_from(db::DEFAULT_STATEMENT_TIMEOUT.as_millis()).unwrap_or(30_000)
}

/// Serializes a secret setting as `"[redacted]"` (or `null` when unset), so settings can be
/// listed (names, which are set) without their values.
///
/// # Errors
/// Those of the serializer.
pub fn redacted<S: Serializer>(
    secret: &Option<SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    secret.as_ref().map(|_| "[redacted]").serialize(serializer)
}
