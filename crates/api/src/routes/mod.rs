//! The route table: one module per resource.

use actix_web::HttpResponse;
use actix_web::web::{self, ServiceConfig};
use chrono::{DateTime, SecondsFormat, Utc};

use crate::error::ApiError;

mod apps;
mod calls;
mod dialpad;
mod events;
mod messages;
mod oauth;
mod params;

/// The whole route table (health routes come from `bootstrap::http`).
pub(crate) fn configure(cfg: &mut ServiceConfig) {
    cfg.route("/internal/apps", web::post().to(apps::create_app))
        .route("/internal/apps", web::get().to(apps::list_apps))
        .route("/internal/apps/{app_id}", web::get().to(apps::get_app))
        .route("/internal/apps/{app_id}", web::patch().to(apps::update_app))
        .route(
            "/internal/apps/{app_id}/api-key",
            web::post().to(apps::issue_key),
        )
        .route(
            "/internal/apps/{app_id}/api-keys",
            web::get().to(apps::list_keys),
        )
        .route(
            "/internal/apps/{app_id}/api-keys/{key_id}",
            web::delete().to(apps::revoke_key),
        )
        .route(
            "/internal/apps/{app_id}/audit",
            web::get().to(apps::audit_log),
        )
        .route(
            "/internal/connections",
            web::post().to(dialpad::connect_with_api_key),
        )
        .route(
            "/internal/webhooks/create",
            web::post().to(dialpad::create_webhook),
        )
        .route("/internal/webhooks", web::get().to(dialpad::list_webhooks))
        .route(
            "/internal/webhooks/{webhook_id}",
            web::delete().to(dialpad::delete_webhook),
        )
        .route(
            "/internal/subscriptions",
            web::post().to(dialpad::create_subscriptions),
        )
        .route(
            "/internal/subscriptions",
            web::get().to(dialpad::list_subscriptions),
        )
        .route(
            "/internal/subscriptions/{subscription_id}",
            web::delete().to(dialpad::delete_subscription),
        )
        .route("/internal/events", web::get().to(events::list_events))
        .route(
            "/internal/events/reroute",
            web::post().to(events::reroute_events),
        )
        .route("/internal/events/{id}", web::get().to(events::get_event))
        .route(
            "/internal/events/{id}/retry",
            web::post().to(events::retry_event),
        )
        .route("/internal/replay", web::post().to(events::replay))
        .route("/auth/dialpad/connect", web::get().to(oauth::connect))
        .route("/auth/dialpad/callback", web::get().to(oauth::callback))
        .route("/api/calls", web::get().to(calls::list_calls))
        .route("/api/calls/active", web::get().to(calls::active_calls))
        .route("/api/calls/{call_id}", web::get().to(calls::get_call))
        .route(
            "/api/calls/{call_id}/events",
            web::get().to(calls::call_events),
        )
        .route("/api/messages", web::get().to(messages::list_messages))
        .route("/api/voicemails", web::get().to(messages::list_voicemails));
}

/// Any other path: the JSON 404 every error shares.
pub(crate) async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

/// RFC 3339 UTC with milliseconds (`2026-11-19T16:00:00.112Z`), the API's one time format.
pub(crate) fn rfc3339(time: Option<DateTime<Utc>>) -> Option<String> {
    time.map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
}
