//! Request ids: every ingest response carries `x-request-id`, the caller's when it sent a
//! usable one (a proxy's or a load balancer's), else a new one; the request's log lines carry
//! it (`request.id`), and so does the stored event (`webhook_events.request_id`), which the
//! worker logs with the event's failures. One id follows a webhook from the edge to its row.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, HttpRequest};
use tracing::Instrument;

/// The header, in and out.
pub(crate) const REQUEST_ID_HEADER: &str = "x-request-id";

/// Longest caller-supplied id kept, in bytes; a longer one is replaced.
const MAX_LEN: usize = 64;

/// The request's id, in its extensions.
#[derive(Debug, Clone)]
pub(crate) struct RequestId(pub(crate) String);

/// The id of `request` (set by [`assign`]); `None` outside the middleware.
pub(crate) fn of(request: &HttpRequest) -> Option<String> {
    request
        .extensions()
        .get::<RequestId>()
        .map(|id| id.0.clone())
}

/// A caller's id is kept when it is 1 to 64 characters of letters, digits, `-`, `_`, `.` or
/// `:` (it goes into logs and a column: nothing else is trusted).
fn usable(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Middleware (`actix_web::middleware::from_fn`): assigns the request id, runs the request in
/// a span carrying it, and answers with it.
///
/// # Errors
/// Those of the wrapped service, unchanged.
pub(crate) async fn assign(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|id| usable(id))
        .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_owned);
    request.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!("request", request.id = %id);
    let mut response = next.call(request).instrument(span).await?;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID_HEADER), value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_plain_ids_are_kept() {
        assert!(usable("3f2a-9c_1.x:y"));
        assert!(usable(&"a".repeat(64)));
        assert!(!usable(&"a".repeat(65)));
        assert!(!usable(""));
        assert!(!usable("a b"));
        assert!(!usable("a\nb"));
        assert!(!usable("<script>"));
    }
}
