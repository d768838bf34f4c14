//! The route table: one module per resource.

use actix_web::HttpResponse;
use chrono::{DateTime, SecondsFormat, Utc};
use utoipa_actix_web::service_config::ServiceConfig;

use crate::error::ApiError;

mod apps;
mod calls;
mod dialpad;
mod events;
mod messages;
mod oauth;
mod params;

/// The whole route table (health routes come from `bootstrap::http`). Each handler carries its
/// route (`#[get(...)]`, ...) and its OpenAPI operation (`#[utoipa::path]`), so the document
/// (`crate::openapi`) lists exactly these. Order matters where paths overlap: a literal segment
/// (`/api/calls/active`) comes before a parameter (`/api/calls/{call_id}`).
pub(crate) fn configure(cfg: &mut ServiceConfig) {
    cfg.service(calls::list_calls)
        .service(calls::active_calls)
        .service(calls::get_call)
        .service(calls::call_events)
        .service(messages::list_messages)
        .service(messages::list_voicemails)
        .configure(apps::configure)
        .configure(dialpad::configure)
        .configure(events::configure)
        .configure(oauth::configure);
}

/// Any other path: the JSON 404 every error shares.
pub(crate) async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

/// RFC 3339 UTC with milliseconds (`2026-11-19T16:00:00.112Z`), the API's one time format.
pub(crate) fn timestamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// [`timestamp`] of a time that may be unknown.
pub(crate) fn rfc3339(time: Option<DateTime<Utc>>) -> Option<String> {
    time.map(timestamp)
}

/// What `Debug` prints for a secret field (an API key, a webhook secret): whether it is set,
/// never the value, so a logged request or answer cannot leak it.
pub(crate) fn redacted<T>(secret: Option<&T>) -> &'static str {
    match secret {
        Some(_) => "[redacted]",
        None => "None",
    }
}

#[cfg(test)]
mod tests {
    /// Every request or answer type that holds a secret prints it redacted.
    #[test]
    fn debug_of_types_holding_secrets_never_shows_the_secret() {
        const SECRET: &str = "s3cr3t-value-that-must-not-appear";
        for printed in [
            super::apps::debug_samples(SECRET),
            super::dialpad::debug_samples(SECRET),
        ]
        .concat()
        {
            assert!(printed.to_lowercase().contains("[redacted]"), "{printed}");
            assert!(!printed.contains(SECRET), "{printed}");
        }
    }
}
