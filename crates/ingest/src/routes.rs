//! The route table and handlers.

use std::future::Future;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use actix_web::web::{self, Bytes, BytesMut, Data, Path, ServiceConfig};
use actix_web::{HttpRequest, HttpResponse};
use futures_util::StreamExt;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use db::queue::{Enqueued, NewWebhookEvent};
use db::{DbError, Pool};

use crate::error::IngestError;
use crate::secrets::{Lookup, SecretCache};
use crate::signature::{self, VerifyError};
use crate::spool::{Spool, SpoolError, SpooledEvent};
use crate::writer::EventWriter;

/// Largest accepted body: 1 MiB (a Dialpad event is a few KiB).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Shared handler state.
#[derive(Debug)]
pub(crate) struct IngestState {
    pub(crate) pool: Pool,
    pub(crate) unscoped_secret: SecretString,
    /// `UNSCOPED_WEBHOOK_APP_ID`: the tenant of the unscoped route, if the deployment has one.
    pub(crate) unscoped_app_id: Option<Uuid>,
    pub(crate) secrets: SecretCache,
    pub(crate) refusals: Refusals,
    pub(crate) retry_budget: Duration,
    /// `INGEST_BODY_TIMEOUT_MS`: the most a request's body may take to arrive.
    pub(crate) body_timeout: Duration,
    /// The outage spool (`INGEST_SPOOL_DIR`), if configured and opened.
    pub(crate) spool: Option<Spool>,
    /// Why the configured spool could not be opened (shown by `/readyz`).
    pub(crate) spool_error: Option<String>,
}

/// The whole route table.
pub(crate) fn configure(cfg: &mut ServiceConfig) {
    cfg.route("/webhooks/dialpad", web::post().to(receive_unscoped))
        .route(
            "/webhooks/dialpad/{app_id}",
            web::post().to(receive_for_app),
        );
}

/// `POST /webhooks/dialpad/{app_id}`: verify with the app's secrets, store for that app.
#[tracing::instrument(skip_all, fields(app.id = %app_id))]
async fn receive_for_app(
    state: Data<IngestState>,
    writer: Data<EventWriter>,
    app_id: Path<String>,
    request: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, IngestError> {
    let client = state.refusals.client(&request);
    let throttled = state.refusals.is_throttled(&client);
    let outcome = accept_for_app(&state, &writer, &app_id, &request, body, throttled).await;
    state.refusals.charge(&client, outcome)
}

/// `throttled`: the client is past its refusal budget, so a failed signature is refused at
/// once instead of waiting for the app's secrets to be read again.
async fn accept_for_app(
    state: &IngestState,
    writer: &EventWriter,
    app_id: &str,
    request: &HttpRequest,
    body: web::Payload,
    throttled: bool,
) -> Result<HttpResponse, IngestError> {
    let app_id = Uuid::parse_str(app_id).map_err(|_| IngestError::UnknownApp)?;
    let body = read_body(request, body, state.body_timeout).await?;
    let found = |lookup: Lookup| match lookup {
        Lookup::Found(secrets) => Ok(secrets),
        Lookup::Unknown => Err(IngestError::UnknownApp),
        Lookup::Busy => Err(IngestError::Unavailable),
    };
    let known = found(
        with_db_retry(state.retry_budget, || {
            state.secrets.get(&state.pool, app_id)
        })
        .await?,
    )?;
    let event = match verify(&body, &known.secrets) {
        // The secret may have changed since it was read (a webhook was just created).
        Err(VerifyError::InvalidSignature) if !throttled => {
            let fresh = found(
                with_db_retry(state.retry_budget, || {
                    state.secrets.refresh(&state.pool, app_id, &known)
                })
                .await?,
            )?;
            verify(&body, &fresh.secrets)?
        }
        verified => verified?,
    };
    store(
        state,
        writer,
        Some(app_id),
        event,
        crate::request_id::of(request),
    )
    .await
}

/// `POST /webhooks/dialpad`: verify with `DIALPAD_WEBHOOK_SECRET`. The event belongs to
/// `UNSCOPED_WEBHOOK_APP_ID` when it is set; otherwise no tenant is known, so it is stored as
/// `unroutable` for operators, never dropped.
#[tracing::instrument(skip_all)]
async fn receive_unscoped(
    state: Data<IngestState>,
    writer: Data<EventWriter>,
    request: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, IngestError> {
    let outcome = async {
        let body = read_body(&request, body, state.body_timeout).await?;
        let event = signature::verify(&body, state.unscoped_secret.expose_secret().as_bytes())?;
        store(
            &state,
            &writer,
            state.unscoped_app_id,
            event,
            crate::request_id::of(&request),
        )
        .await
    }
    .await;
    let client = state.refusals.client(&request);
    state.refusals.charge(&client, outcome)
}

/// Refused webhooks per client address (`INGEST_FAILED_VERIFICATIONS_PER_MIN`).
pub(crate) struct Refusals {
    per_address: DefaultKeyedRateLimiter<String>,
    /// Addresses past their budget, until when.
    throttled: moka::sync::Cache<String, Instant>,
    trusted_proxy_hops: usize,
}

impl std::fmt::Debug for Refusals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refusals").finish_non_exhaustive()
    }
}

impl Refusals {
    pub(crate) fn new(per_minute: u32, trusted_proxy_hops: usize) -> Self {
        let quota = Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN));
        Refusals {
            per_address: RateLimiter::keyed(quota),
            throttled: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(60))
                .build(),
            trusted_proxy_hops,
        }
    }

    /// The client's address (`TRUSTED_PROXY_HOPS`, see `bootstrap::http::client_address`).
    fn client(&self, request: &HttpRequest) -> String {
        bootstrap::http::client_address(
            request.headers(),
            request.peer_addr(),
            self.trusted_proxy_hops,
        )
    }

    /// Whether the client is past its budget now.
    fn is_throttled(&self, client: &str) -> bool {
        self.throttled
            .get(client)
            .is_some_and(|until| until > Instant::now())
    }

    /// Counts a refusal (a 4xx) against the client's address; past the budget it is answered
    /// 429 with `Retry-After` instead. Accepted webhooks and our own failures (5xx) pass
    /// untouched: a correctly signed webhook is never throttled.
    fn charge(
        &self,
        client: &str,
        outcome: Result<HttpResponse, IngestError>,
    ) -> Result<HttpResponse, IngestError> {
        let refused = matches!(
            &outcome,
            Err(error) if !matches!(
                error,
                IngestError::Unavailable | IngestError::SpoolFull | IngestError::Internal(_)
            )
        );
        if !refused {
            return outcome;
        }
        match self.per_address.check_key(&client.to_owned()) {
            Ok(()) => outcome,
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                self.throttled
                    .insert(client.to_owned(), Instant::now() + wait);
                Err(IngestError::Throttled {
                    retry_after: bootstrap::http::retry_after_secs(wait),
                })
            }
        }
    }
}

fn verify(body: &[u8], secrets: &[SecretString]) -> Result<Map<String, Value>, VerifyError> {
    signature::verify_with_any(body, secrets.iter().map(|s| s.expose_secret().as_bytes()))
}

/// Commits the event with its request id, then answers `200 {"id", "duplicate"}` (a duplicate
/// keeps the request id it was first stored with). With an outage spool, an event the
/// database did not take within the retry budget, or any event while the spool holds others
/// (so that order is kept), is spooled instead and answered `202 {"spooled": true}`.
async fn store(
    state: &IngestState,
    writer: &EventWriter,
    app_id: Option<Uuid>,
    event: Map<String, Value>,
    request_id: Option<String>,
) -> Result<HttpResponse, IngestError> {
    let mut new_event = NewWebhookEvent::from_verified(app_id, event);
    new_event.request_id = request_id;
    let kind = new_event.kind;
    if let Some(spool) = state.spool.as_ref().filter(|spool| spool.is_holding()) {
        return spool_event(spool, &new_event).await;
    }
    let committed = with_db_retry(state.retry_budget, || writer.store(new_event.clone())).await;
    let outcome = match (committed, &state.spool) {
        (Err(IngestError::Unavailable), Some(spool)) => {
            return spool_event(spool, &new_event).await;
        }
        (committed, _) => committed?,
    };
    tracing::debug!(
        event.id = outcome.id(),
        event.kind = kind,
        event.duplicate = matches!(outcome, Enqueued::Duplicate(_)),
        "Webhook stored."
    );
    Ok(HttpResponse::Ok().json(json!({
        "id": outcome.id(),
        "duplicate": matches!(outcome, Enqueued::Duplicate(_)),
    })))
}

/// Appends the event to the outage spool; `202 {"spooled": true}` once it is on disk.
async fn spool_event(spool: &Spool, event: &NewWebhookEvent) -> Result<HttpResponse, IngestError> {
    match spool.append(&SpooledEvent::of(event)).await {
        Ok(()) => {
            tracing::info!(
                event.kind = event.kind,
                "Database unavailable: webhook spooled."
            );
            Ok(HttpResponse::Accepted().json(json!({ "spooled": true })))
        }
        Err(SpoolError::Full) => Err(IngestError::SpoolFull),
        Err(SpoolError::Io(cause)) => {
            tracing::error!(error = %cause, "Webhook could not be spooled.");
            Err(IngestError::Unavailable)
        }
    }
}

/// Reads the raw body whatever its Content-Type, refusing more than [`MAX_BODY_BYTES`].
async fn read_body(
    request: &HttpRequest,
    mut body: web::Payload,
    timeout: Duration,
) -> Result<Bytes, IngestError> {
    let too_large = IngestError::PayloadTooLarge {
        limit_bytes: MAX_BODY_BYTES,
    };
    let declared = request
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES) {
        return Err(too_large);
    }
    let mut buffer = BytesMut::with_capacity(declared.unwrap_or(4096).min(MAX_BODY_BYTES));
    // A client that sends its body slowly (slowloris) holds a connection: bound the whole read.
    let read = async {
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|_| IngestError::UnreadableBody)?;
            if buffer.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(too_large);
            }
            buffer.extend_from_slice(&chunk);
        }
        Ok(())
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| IngestError::BodyTimeout)??;
    Ok(buffer.freeze())
}

/// Runs `operation`, retrying with backoff while the database is unreachable, for at most
/// `budget` in all (an attempt still running at the deadline is abandoned); then answers 503 so
/// Dialpad retries. Other database errors are not retried. An abandoned insert may still
/// commit: Dialpad's retry is then a duplicate, stored once (the dedupe key).
async fn with_db_retry<T, F, Fut>(budget: Duration, mut operation: F) -> Result<T, IngestError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, DbError>>,
{
    let deadline = tokio::time::Instant::now() + budget;
    let mut pause = Duration::from_millis(50);
    loop {
        let Ok(attempt) = tokio::time::timeout_at(deadline, operation()).await else {
            tracing::error!("Database too slow for the whole retry budget.");
            return Err(IngestError::Unavailable);
        };
        match attempt {
            Ok(value) => return Ok(value),
            Err(error) if error.is_unavailable() => {
                if tokio::time::Instant::now() + pause >= deadline {
                    tracing::error!(error = %error, "Database unavailable for the whole retry budget.");
                    return Err(IngestError::Unavailable);
                }
                tracing::warn!(error = %error, "Database unavailable; retrying.");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
            Err(error) => return Err(IngestError::Internal(error.into())),
        }
    }
}
