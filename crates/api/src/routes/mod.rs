//! The route table: one module per resource.

use actix_web::HttpResponse;
use actix_web::web::{self, Data, ServiceConfig};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;

use crate::error::ApiError;
use crate::startup::ApiState;

mod apps;
mod calls;

/// The whole route table.
pub(crate) fn configure(cfg: &mut ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/internal/apps", web::post().to(apps::create_app))
        .route("/api/calls", web::get().to(calls::list_calls))
        .default_service(web::to(not_found));
}

/// Any other path: the JSON 404 every error shares.
async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

/// `GET /healthz`: the process is up.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// `GET /readyz`: the database answers.
async fn readyz(state: Data<ApiState>) -> HttpResponse {
    match db::ping(&state.pool).await {
        Ok(()) => HttpResponse::Ok().json(json!({ "status": "ready" })),
        Err(error) => {
            tracing::warn!(error = %error, "Readiness check failed.");
            HttpResponse::ServiceUnavailable()
                .json(json!({ "error": "unavailable", "message": "the database is unreachable" }))
        }
    }
}

/// RFC 3339 UTC with milliseconds (`2026-11-19T16:00:00.112Z`), the API's one time format.
pub(crate) fn rfc3339(time: Option<DateTime<Utc>>) -> Option<String> {
    time.map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
}
