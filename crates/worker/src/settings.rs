//! Worker settings.
//!
//! Env vars: `WORKER_POLL_INTERVAL_MS` (default 5000), `WORKER_BATCH_SIZE` (500),
//! `WORKER_MAX_ATTEMPTS` (10), `WORKER_BACKOFF_BASE_MS` (1000), `WORKER_BACKOFF_MAX_MS`
//! (3600000), `WORKER_ID` (default `<hostname>-<pid>`), `RETENTION_DAYS` (90),
//! `RETENTION_INTERVAL_MS` (3600000), `WORKER_MAX_CALL_GRAPH_LEGS` (1000),
//! `WORKER_BACKLOG_AFTER_MS` (1000), `METRICS_PORT` (9090), the push deliveries' `PUSH_*` ([`PushSettings`]),
//! `ENCRYPTION_KEY` (to open subscription secrets; without it no push is delivered), plus the
//! shared `DATABASE_*` and `LOG_FORMAT`.

use std::time::Duration;

use bootstrap::settings::{DatabaseSettings, EncryptionSettings, MetricsSettings};
use serde::{Deserialize, Serialize};

/// Everything the worker is configured with.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Settings {
    #[serde(flatten)]
    pub database: DatabaseSettings,
    #[serde(flatten)]
    pub encryption: EncryptionSettings,
    /// `METRICS_TOKEN`: the bearer token `/metrics` asks for, if any.
    #[serde(flatten)]
    pub metrics: MetricsSettings,
    #[serde(flatten)]
    pub push: PushSettings,
    /// `WORKER_POLL_INTERVAL_MS`: fallback poll period when no notification arrives.
    #[serde(default = "default_poll_interval_ms")]
    pub worker_poll_interval_ms: u64,
    /// `WORKER_BATCH_SIZE`: most events claimed per transaction.
    #[serde(default = "default_batch_size")]
    pub worker_batch_size: u32,
    /// `WORKER_MAX_ATTEMPTS`: transient failures after which an event is dead-lettered (one
    /// that can never apply is dead at once).
    #[serde(default = "default_max_attempts")]
    pub worker_max_attempts: u32,
    /// `WORKER_BACKOFF_BASE_MS`: delay before the first retry (doubles per attempt, jittered).
    #[serde(default = "default_backoff_base_ms")]
    pub worker_backoff_base_ms: u64,
    /// `WORKER_BACKOFF_MAX_MS`: longest delay between retries.
    #[serde(default = "default_backoff_max_ms")]
    pub worker_backoff_max_ms: u64,
    /// `WORKER_ID`: name in logs; defaults to `<hostname>-<pid>`.
    pub worker_id: Option<String>,
    /// `WORKER_MAX_CALL_GRAPH_LEGS`: most legs of one call graph read when linking a leg
    /// into its logical call; a larger graph is not followed further (`db::logical_calls`).
    #[serde(default = "default_max_call_graph_legs")]
    pub worker_max_call_graph_legs: u32,
    /// `WORKER_BACKLOG_AFTER_MS`: a tenant whose oldest due event has waited longer than this
    /// many milliseconds is served by the worker's backlog lane, every other tenant by its
    /// up-to-date lane, each lane `WORKER_CONCURRENCY` batches at a time (`db::queue`, *Lanes*).
    /// `0`: one lane for every tenant.
    #[serde(default = "default_backlog_after_ms")]
    pub worker_backlog_after_ms: u64,
    /// `WORKER_CONCURRENCY`: batches each lane has in flight at once, each its own loop and
    /// transaction (at least 1). Two overlap one batch's database work with the other's
    /// parsing and folding; a leg one batch holds is deferred by the other, not waited for
    /// (`crate::apply`). Measured on 2 cores: 2 drain ~1.5x the events/s of 1, 3 no more.
    #[serde(default = "default_concurrency")]
    pub worker_concurrency: u32,
    /// `METRICS_PORT`: where the worker serves `GET /healthz` and `GET /readyz` (on every
    /// interface); `0` picks a free port (tests). `worker healthcheck` asks it.
    #[serde(default = "default_metrics_port")]
    pub metrics_port: u16,
    /// `RETENTION_DAYS`: processed events older than this many days are pruned (`0`: never).
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    /// `RETENTION_INTERVAL_MS`: how often a retention pass runs, milliseconds.
    #[serde(default = "default_retention_interval_ms")]
    pub retention_interval_ms: u64,
}

impl Settings {
    /// Settings for tests and tools: everything default but the database.
    pub fn new(database_url: &str) -> Self {
        Settings {
            database: DatabaseSettings::for_url(database_url),
            encryption: EncryptionSettings::default(),
            metrics: MetricsSettings::default(),
            push: PushSettings::default(),
            worker_poll_interval_ms: default_poll_interval_ms(),
            worker_batch_size: default_batch_size(),
            worker_max_attempts: default_max_attempts(),
            worker_backoff_base_ms: default_backoff_base_ms(),
            worker_backoff_max_ms: default_backoff_max_ms(),
            worker_id: None,
            worker_max_call_graph_legs: default_max_call_graph_legs(),
            worker_backlog_after_ms: default_backlog_after_ms(),
            worker_concurrency: default_concurrency(),
            // Tests run many workers side by side.
            metrics_port: 0,
            retention_days: default_retention_days(),
            retention_interval_ms: default_retention_interval_ms(),
        }
    }

    pub(crate) fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.worker_poll_interval_ms)
    }

    pub(crate) fn id(&self) -> String {
        self.worker_id.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into());
            format!("{host}-{}", std::process::id())
        })
    }
}

fn default_max_call_graph_legs() -> u32 {
    1_000
}

fn default_backlog_after_ms() -> u64 {
    1_000
}

fn default_concurrency() -> u32 {
    2
}

fn default_retention_days() -> u32 {
    90
}

fn default_retention_interval_ms() -> u64 {
    3_600_000
}

fn default_poll_interval_ms() -> u64 {
    5_000
}

fn default_batch_size() -> u32 {
    500
}

fn default_max_attempts() -> u32 {
    10
}

fn default_backoff_base_ms() -> u64 {
    1_000
}

fn default_backoff_max_ms() -> u64 {
    3_600_000
}

/// How push deliveries are sent (`crate::push`).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct PushSettings {
    /// `PUSH_CONCURRENCY`: requests in flight per worker (default 32).
    #[serde(default = "default_push_concurrency")]
    pub push_concurrency: usize,
    /// `PUSH_PER_SUBSCRIPTION`: of which at most this many to one subscription (default 4).
    #[serde(default = "default_push_per_subscription")]
    pub push_per_subscription: usize,
    /// `PUSH_TIMEOUT_MS`: connect plus response, per request (default 5000).
    #[serde(default = "default_push_timeout_ms")]
    pub push_timeout_ms: u64,
    /// `PUSH_POLL_INTERVAL_MS`: how often due retries are looked for without a notification
    /// (default 1000).
    #[serde(default = "default_push_poll_interval_ms")]
    pub push_poll_interval_ms: u64,
    /// `PUSH_RETRY_SCHEDULE_MS`: comma-separated delays after each failed attempt, ms (default
    /// the Standard Webhooks schedule: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h; eight attempts).
    #[serde(default = "default_push_retry_schedule_ms")]
    pub push_retry_schedule_ms: String,
    /// `ALLOW_PRIVATE_WEBHOOK_URLS`: send to loopback, private and other non-public addresses
    /// (development and tests only; default false).
    #[serde(default)]
    pub allow_private_webhook_urls: bool,
    /// `PUSH_MAX_CONSECUTIVE_FAILURES`: failed attempts in a row that deactivate a subscription
    /// (default 100).
    #[serde(default = "default_push_max_consecutive_failures")]
    pub push_max_consecutive_failures: i32,
    /// `PUSH_DISABLE_AFTER_HOURS`: a subscription failing every attempt for this long is
    /// deactivated (default 120: 5 days).
    #[serde(default = "default_push_disable_after_hours")]
    pub push_disable_after_hours: u32,
}

impl Default for PushSettings {
    fn default() -> Self {
        PushSettings {
            push_concurrency: default_push_concurrency(),
            push_per_subscription: default_push_per_subscription(),
            push_timeout_ms: default_push_timeout_ms(),
            push_poll_interval_ms: default_push_poll_interval_ms(),
            push_retry_schedule_ms: default_push_retry_schedule_ms(),
            push_max_consecutive_failures: default_push_max_consecutive_failures(),
            allow_private_webhook_urls: false,
            push_disable_after_hours: default_push_disable_after_hours(),
        }
    }
}

impl PushSettings {
    /// `PUSH_RETRY_SCHEDULE_MS` parsed; entries that are not numbers are skipped.
    pub fn retry_schedule_ms(&self) -> Vec<u64> {
        self.push_retry_schedule_ms
            .split(',')
            .filter_map(|delay| delay.trim().parse().ok())
            .collect()
    }
}

fn default_metrics_port() -> u16 {
    9090
}

fn default_push_concurrency() -> usize {
    32
}

fn default_push_per_subscription() -> usize {
    4
}

fn default_push_timeout_ms() -> u64 {
    5_000
}

fn default_push_poll_interval_ms() -> u64 {
    1_000
}

fn default_push_retry_schedule_ms() -> String {
    "5000,300000,1800000,7200000,18000000,36000000,36000000".into()
}

fn default_push_max_consecutive_failures() -> i32 {
    100
}

fn default_push_disable_after_hours() -> u32 {
    120
}
