//! Ingest's error policy, in one place.
//!
//! - Bad input is a 4xx with `{"error": "<code>", "message": "..."}` and nothing is stored:
//!   413 `payload_too_large`, 408 `request_timeout` (a body slower than
//!   `INGEST_BODY_TIMEOUT_MS`), 400 `malformed_token` / `invalid_payload`, 401
//!   `unsupported_algorithm` / `invalid_signature` / `expired_token`, 404 `unknown_app`; once
//!   a client address has more refusals a minute than `INGEST_FAILED_VERIFICATIONS_PER_MIN`,
//!   its refusals are 429 `rate_limited` with `Retry-After` (a valid webhook never is).
//! - A database that stays unreachable for the whole retry budget is a 503 `unavailable` with
//!   `Retry-After`, so Dialpad retries (it never retries a 4xx); with an outage spool
//!   (`INGEST_SPOOL_DIR`) the event is spooled and answered 202 instead, and only a full spool
//!   is a 503 `spool_full` (`Retry-After: 30`).
//! - Anything else is an opaque 500 `internal`, logged once here with its cause.
//!
//! Messages never contain the token, the body or a secret.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use crate::signature::VerifyError;

/// Why a webhook was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the body exceeds {limit_bytes} bytes")]
    PayloadTooLarge { limit_bytes: usize },
    #[error("the request body could not be read")]
    UnreadableBody,
    #[error("the request body did not arrive in time")]
    BodyTimeout,
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error("no app with this id")]
    UnknownApp,
    /// Refused, and the client's refusals are over `INGEST_FAILED_VERIFICATIONS_PER_MIN`.
    #[error("too many refused webhooks from this address; retry after {retry_after} s")]
    Throttled { retry_after: u64 },
    #[error("the database is unavailable; retry later")]
    Unavailable,
    /// The database is unavailable and the outage spool is full (`INGEST_SPOOL_MAX_BYTES`).
    #[error("the database is unavailable and the outage spool is full; retry later")]
    SpoolFull,
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl IngestError {
    fn code(&self) -> &'static str {
        match self {
            IngestError::PayloadTooLarge { .. } => "payload_too_large",
            IngestError::UnreadableBody => "unreadable_body",
            IngestError::BodyTimeout => "request_timeout",
            IngestError::Verify(VerifyError::Malformed(_)) => "malformed_token",
            IngestError::Verify(VerifyError::UnsupportedAlgorithm(_)) => "unsupported_algorithm",
            IngestError::Verify(VerifyError::InvalidSignature) => "invalid_signature",
            IngestError::Verify(VerifyError::Expired) => "expired_token",
            IngestError::Verify(VerifyError::NotAnObject) => "invalid_payload",
            IngestError::UnknownApp => "unknown_app",
            IngestError::Throttled { .. } => "rate_limited",
            IngestError::Unavailable => "unavailable",
            IngestError::SpoolFull => "spool_full",
            IngestError::Internal(_) => "internal",
        }
    }
}

impl ResponseError for IngestError {
    fn status_code(&self) -> StatusCode {
        match self {
            IngestError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            IngestError::UnreadableBody => StatusCode::BAD_REQUEST,
            IngestError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            IngestError::Verify(VerifyError::Malformed(_) | VerifyError::NotAnObject) => {
                StatusCode::BAD_REQUEST
            }
            IngestError::Verify(_) => StatusCode::UNAUTHORIZED,
            IngestError::UnknownApp => StatusCode::NOT_FOUND,
            IngestError::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            IngestError::Unavailable | IngestError::SpoolFull => StatusCode::SERVICE_UNAVAILABLE,
            IngestError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        match self {
            IngestError::Internal(cause) => {
                tracing::error!(error = ?cause, "Webhook failed with an internal error.");
            }
            // A flood of refusals must not flood the log: past the budget, debug only.
            IngestError::Throttled { .. } => {
                tracing::debug!(error.code = self.code(), "Webhook refused: {self}");
            }
            _ => tracing::warn!(
                error.code = self.code(),
                status = status.as_u16(),
                "Webhook refused: {self}"
            ),
        }
        let mut response = HttpResponse::build(status);
        match self {
            IngestError::Unavailable => {
                response.insert_header(("Retry-After", "2"));
            }
            // The spool drains only once the database is back: not within seconds.
            IngestError::SpoolFull => {
                response.insert_header(("Retry-After", "30"));
            }
            IngestError::Throttled { retry_after } => {
                response.insert_header(("Retry-After", retry_after.to_string()));
            }
            _ => {}
        }
        let mut response =
            response.json(json!({ "error": self.code(), "message": self.to_string() }));
        response.extensions_mut().insert(Refusal(self.code()));
        response
    }
}

/// Why a webhook was refused (its error code), left on the response for the refusal counter
/// (`crate::startup::count_refusals`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Refusal(pub(crate) &'static str);
