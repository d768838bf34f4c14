//! The route table: one module per resource.

use actix_web::HttpResponse;
use actix_web::web::{self, ServiceConfig};
use chrono::{DateTime, SecondsFormat, Utc};

use crate::error::ApiError;

mod apps;
mod calls;

/// The whole route table (health routes come from `bootstrap::http`).
pub(crate) fn configure(cfg: &mut ServiceConfig) {
    cfg.route("/internal/apps", web::post().to(apps::create_app))
        .route("/api/calls", web::get().to(calls::list_calls));
}

/// Any other path: the JSON 404 every error shares.
pub(crate) async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

/// RFC 3339 UTC with milliseconds (`2026-11-19T16:00:00.112Z`), the API's one time format.
pub(crate) fn rfc3339(time: Option<DateTime<Utc>>) -> Option<String> {
    time.map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
}
