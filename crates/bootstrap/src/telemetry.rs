//! Logging through `tracing-subscriber`.
//!
//! Env vars: `RUST_LOG` (filter, default `info`), `LOG_FORMAT` (`json` for one JSON object per
//! line, the default `pretty` for human-readable lines, coloured only on a terminal).

use serde::Deserialize;
use tracing_subscriber::EnvFilter;

/// How log lines are written (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line, for log collectors.
    Json,
    /// Human-readable lines.
    #[default]
    Pretty,
}

/// Installs the global subscriber once per process. Secrets never reach it: settings hold them
/// as `SecretString`, whose `Debug` is redacted.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: escape codes are noise in a log collector (or a test
    // reading the lines).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    let result = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
    // A second init in one process (tests) keeps the first subscriber.
    drop(result);
}

/// Reads `LOG_FORMAT` before the settings are loaded, so settings errors are logged in the
/// right format too.
pub fn format_from_env() -> LogFormat {
    match std::env::var("LOG_FORMAT").as_deref() {
        Ok("json") => LogFormat::Json,
        _ => LogFormat::Pretty,
    }
}
