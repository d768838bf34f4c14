//! The api's error policy, in one place.
//!
//! Every error body is `{"error": "<stable_snake_case_code>", "message": "..."}`:
//! - 400 `invalid_parameter` (the message names the parameter), `invalid_request` (the message
//!   names the field), `invalid_json`;
//! - 401 `missing_api_key`, `invalid_api_key`, `unauthorized` (admin bearer secret);
//! - 404 `not_found` (also for another tenant's resource);
//! - 503 `unavailable` when the database cannot be reached;
//! - 500 `internal`, opaque, its cause logged once here.
//!
//! Messages never contain a key, a secret or a database error text.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use db::DbError;

/// An error answered to a client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{name}: {message}")]
    InvalidParameter { name: &'static str, message: String },
    #[error("{0}")]
    InvalidRequest(String),
    #[error("the body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("the x-app-api-key header is required")]
    MissingApiKey,
    #[error("the API key is invalid or revoked")]
    InvalidApiKey,
    #[error("a valid `Authorization: Bearer` admin secret is required")]
    Unauthorized,
    #[error("not found")]
    NotFound,
    #[error("the database is unavailable; retry later")]
    Unavailable,
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidParameter { .. } => "invalid_parameter",
            ApiError::InvalidRequest(_) => "invalid_request",
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::MissingApiKey => "missing_api_key",
            ApiError::InvalidApiKey => "invalid_api_key",
            ApiError::Unauthorized => "unauthorized",
            ApiError::NotFound => "not_found",
            ApiError::Unavailable => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl From<DbError> for ApiError {
    fn from(error: DbError) -> Self {
        if error.is_unavailable() {
            tracing::warn!(error = %error, "Database unavailable.");
            ApiError::Unavailable
        } else {
            ApiError::Internal(error.into())
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::InvalidParameter { .. }
            | ApiError::InvalidRequest(_)
            | ApiError::InvalidJson(_) => StatusCode::BAD_REQUEST,
            ApiError::MissingApiKey | ApiError::InvalidApiKey | ApiError::Unauthorized => {
                StatusCode::UNAUTHORIZED
            }
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(cause) = self {
            tracing::error!(error = ?cause, "Request failed with an internal error.");
        }
        let mut response = HttpResponse::build(self.status_code());
        if matches!(self, ApiError::Unavailable) {
            response.insert_header(("Retry-After", "2"));
        }
        response.json(json!({ "error": self.code(), "message": self.to_string() }))
    }
}
