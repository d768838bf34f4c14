//! The api's error policy, in one place.
//!
//! Every error body is `{"error": "<stable_snake_case_code>", "message": "..."}`:
//! - 400 `invalid_parameter` (the message names the parameter), `invalid_request` (the message
//!   names the field), `invalid_json`;
//! - 400 `dialpad_not_connected`, `dialpad_reauth_required` (no usable Dialpad credential),
//!   `invalid_state`, `access_denied`, `oauth_error` (the OAuth callback);
//! - 401 `missing_api_key`, `invalid_api_key`, `unauthorized` (admin bearer secret),
//!   `invalid_stream_token` (a live stream's `?token=`);
//! - 404 `not_found` (also for another tenant's resource);
//! - 409 `conflict`;
//! - 429 `rate_limited`, with `Retry-After` (`rate_limit`); `too_many_streams` (an app's open
//!   live streams on this replica are at `STREAM_MAX_CONNECTIONS_PER_APP`);
//! - 502 `dialpad_error` (Dialpad refused: the message says its status), `dialpad_unreachable`
//!   (timeout or connection failure);
//! - 503 `unavailable` when the database cannot be reached, `not_configured` when a feature's
//!   settings are missing (the message names them);
//! - 500 `internal`, opaque, its cause logged once here.
//!
//! Messages never contain a key, a secret or a database error text.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use db::DbError;

use dialpad::{CredentialError, DialpadError};

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
    #[error(
        "the stream token is invalid or expired: POST /api/stream-tokens (with the \
         x-app-api-key header) for a new one"
    )]
    InvalidStreamToken,
    #[error("the app has {0} open live streams on this server, the most allowed; close one first")]
    TooManyStreams(usize),
    #[error(
        "the app has no Dialpad connection and the server has no DIALPAD_API_KEY: connect it \
         first (GET /auth/dialpad/connect?app_id=... or POST /internal/connections?app_id=...)"
    )]
    DialpadNotConnected,
    #[error(
        "Dialpad refused to refresh the app's OAuth token: connect it again \
         (GET /auth/dialpad/connect?app_id=...)"
    )]
    DialpadReauthRequired,
    #[error("{0}")]
    InvalidState(#[from] db::dialpad::StateRejection),
    #[error("the Dialpad user denied access")]
    AccessDenied,
    #[error("Dialpad's authorization failed: {0}")]
    OAuthError(String),
    #[error("not found")]
    NotFound,
    /// The path exists for other methods; `allow` lists them (the `Allow` header).
    #[error("method not allowed here; allowed: {allow}")]
    MethodNotAllowed { allow: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{error}{}", note.map(|n| format!("; {n}")).unwrap_or_default())]
    Dialpad {
        error: DialpadError,
        /// What was done before Dialpad failed.
        note: Option<&'static str>,
    },
    #[error("this server is not configured for this: set {0}")]
    NotConfigured(&'static str),
    #[error("too many requests; retry in {retry_after} s")]
    RateLimited { retry_after: u64 },
    #[error("the database is unavailable; retry later")]
    Unavailable,
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// The stable code of an error (the `error` field of every error body); see the module docs
/// for when each is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ErrorCode {
    InvalidParameter,
    InvalidRequest,
    InvalidJson,
    MissingApiKey,
    InvalidApiKey,
    Unauthorized,
    InvalidStreamToken,
    DialpadNotConnected,
    DialpadReauthRequired,
    InvalidState,
    AccessDenied,
    OauthError,
    NotFound,
    MethodNotAllowed,
    Conflict,
    RateLimited,
    TooManyStreams,
    DialpadError,
    DialpadUnreachable,
    Unavailable,
    NotConfigured,
    Internal,
}

/// Every error's body: `{"error": "<code>", "message": "<what went wrong, for people>"}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    /// What went wrong, stable for programs to match on.
    pub(crate) error: ErrorCode,
    /// What went wrong, for people; it names the offending parameter or field. Never holds a
    /// secret or a database error text.
    pub(crate) message: String,
}

impl ApiError {
    fn code(&self) -> ErrorCode {
        match self {
            ApiError::InvalidParameter { .. } => ErrorCode::InvalidParameter,
            ApiError::InvalidRequest(_) => ErrorCode::InvalidRequest,
            ApiError::InvalidJson(_) => ErrorCode::InvalidJson,
            ApiError::MissingApiKey => ErrorCode::MissingApiKey,
            ApiError::InvalidApiKey => ErrorCode::InvalidApiKey,
            ApiError::Unauthorized => ErrorCode::Unauthorized,
            ApiError::InvalidStreamToken => ErrorCode::InvalidStreamToken,
            ApiError::TooManyStreams(_) => ErrorCode::TooManyStreams,
            ApiError::DialpadNotConnected => ErrorCode::DialpadNotConnected,
            ApiError::DialpadReauthRequired => ErrorCode::DialpadReauthRequired,
            ApiError::InvalidState(_) => ErrorCode::InvalidState,
            ApiError::AccessDenied => ErrorCode::AccessDenied,
            ApiError::OAuthError(_) => ErrorCode::OauthError,
            ApiError::NotFound => ErrorCode::NotFound,
            ApiError::MethodNotAllowed { .. } => ErrorCode::MethodNotAllowed,
            ApiError::Conflict(_) => ErrorCode::Conflict,
            ApiError::Dialpad {
                error: DialpadError::Timeout { .. } | DialpadError::Unreachable { .. },
                ..
            } => ErrorCode::DialpadUnreachable,
            ApiError::Dialpad { .. } => ErrorCode::DialpadError,
            ApiError::NotConfigured(_) => ErrorCode::NotConfigured,
            ApiError::RateLimited { .. } => ErrorCode::RateLimited,
            ApiError::Unavailable => ErrorCode::Unavailable,
            ApiError::Internal(_) => ErrorCode::Internal,
        }
    }
}

impl From<DialpadError> for ApiError {
    fn from(error: DialpadError) -> Self {
        ApiError::Dialpad { error, note: None }
    }
}

impl From<CredentialError> for ApiError {
    fn from(error: CredentialError) -> Self {
        match error {
            CredentialError::NotConnected => ApiError::DialpadNotConnected,
            CredentialError::ReauthRequired => ApiError::DialpadReauthRequired,
            CredentialError::OAuthNotConfigured => {
                ApiError::NotConfigured("DIALPAD_CLIENT_ID and DIALPAD_CLIENT_SECRET")
            }
            CredentialError::Dialpad(error) => error.into(),
            CredentialError::Db(error) => error.into(),
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
            | ApiError::InvalidJson(_)
            | ApiError::DialpadNotConnected
            | ApiError::DialpadReauthRequired
            | ApiError::InvalidState(_)
            | ApiError::AccessDenied
            | ApiError::OAuthError(_) => StatusCode::BAD_REQUEST,
            ApiError::MissingApiKey
            | ApiError::InvalidApiKey
            | ApiError::Unauthorized
            | ApiError::InvalidStreamToken => StatusCode::UNAUTHORIZED,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::RateLimited { .. } | ApiError::TooManyStreams(_) => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::Dialpad { .. } => StatusCode::BAD_GATEWAY,
            ApiError::Unavailable | ApiError::NotConfigured(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(cause) = self {
            tracing::error!(error = ?cause, "Request failed with an internal error.");
        }
        let mut response = HttpResponse::build(self.status_code());
        match self {
            ApiError::Unavailable => {
                response.insert_header(("Retry-After", "2"));
            }
            ApiError::RateLimited { retry_after } => {
                response.insert_header(("Retry-After", retry_after.to_string()));
            }
            ApiError::MethodNotAllowed { allow } => {
                response.insert_header(("Allow", allow.clone()));
            }
            _ => {}
        }
        response.json(ErrorBody {
            error: self.code(),
            message: self.to_string(),
        })
    }
}
