//! Live streams of the push catalogue (`docs/events.md`): `GET /api/events/stream`
//! (Server-Sent Events) and `GET /api/events/ws` (WebSocket), fed by the replica's
//! `crate::stream::StreamHub`, and `POST /api/stream-tokens`, which lets a browser open them.
//!
//! A stream is opened with the `x-app-api-key` header, or with `?token=` (a stream token):
//! browsers cannot set headers on `EventSource` or WebSocket, and an API key is never accepted in
//! a URL (URLs end up in logs and browser history).

use std::time::Duration;

use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use actix_web::web::{Bytes, Data, Payload, Query};
use actix_web::{FromRequest, HttpRequest, HttpResponse, get, post};
use futures_util::StreamExt;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use db::push::{FeedEvent, STREAM_TOKEN_TTL_S, StreamToken};

use crate::auth::Tenant;
use crate::error::{ApiError, ErrorBody};
use crate::routes::timestamp;
use crate::startup::ApiState;
use crate::stream::Subscription;

/// This module's routes (`routes::configure`).
pub(crate) fn configure(cfg: &mut ServiceConfig) {
    cfg.service(create_stream_token)
        .service(event_stream)
        .service(event_socket);
}

/// Query parameters that would carry an API key: refused, with a pointer to tokens.
const KEY_PARAMETERS: &[&str] = &["api_key", "apikey", "key", "x-app-api-key", "x_app_api_key"];

/// How long an SSE client waits before reconnecting, milliseconds (its `retry:` field).
const SSE_RETRY_MS: u64 = 2_000;

/// Query of the stream endpoints.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct StreamQuery {
    /// A stream token (`POST /api/stream-tokens`), instead of the `x-app-api-key` header.
    token: Option<String>,
    /// SSE only: resume after this event id, as the `Last-Event-ID` header does (which wins).
    last_event_id: Option<String>,
}

/// A stream token: opens the app's streams as `?token=` until `expires_at`.
#[derive(Serialize, ToSchema)]
pub(crate) struct StreamTokenView {
    /// `st_...`; shown only here. Not an API key: it only opens streams.
    token: String,
    /// RFC 3339 UTC.
    expires_at: String,
    /// Seconds it stays valid (300).
    expires_in: i64,
}

impl std::fmt::Debug for StreamTokenView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamTokenView")
            .field("token", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Get a stream token
///
/// A token that opens this app's live streams (`/api/events/stream`, `/api/events/ws`) as
/// `?token=` for 5 minutes: browsers cannot send the `x-app-api-key` header on `EventSource`
/// or WebSocket. Get it from your backend and hand it to the page; an open stream outlives its
/// token.
#[utoipa::path(
    tag = "push",
    security(("app_api_key" = [])),
    responses((status = 201, description = "The token", body = StreamTokenView))
)]
#[post("/api/stream-tokens")]
#[tracing::instrument(skip_all, fields(app.id = %tenant.app_id))]
pub(crate) async fn create_stream_token(
    tenant: Tenant,
    state: Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = state.conn().await?;
    let (token, expires_at) = StreamToken::issue(&mut conn, tenant.app_id).await?;
    Ok(HttpResponse::Created().json(StreamTokenView {
        token: token.expose_secret().to_owned(),
        expires_at: timestamp(expires_at),
        expires_in: STREAM_TOKEN_TTL_S,
    }))
}

/// Stream events (SSE)
///
/// The push catalogue's events for this app as they are processed, as Server-Sent Events:
/// `id:` (the event's position in the app's feed), `event:` (its name) and `data:` (the body
/// webhooks get). Reconnecting with `Last-Event-ID` (browsers do it themselves) resumes after
/// that event, within `STREAM_RESUME_WINDOW_S` (15 min), with no gap and no repeat. An idle
/// stream gets a `: heartbeat` comment every `STREAM_HEARTBEAT_MS` (15 s). Open with the
/// `x-app-api-key` header or `?token=`; at most `STREAM_MAX_CONNECTIONS_PER_APP` (20) open
/// streams per app on one server (then 429 `too_many_streams`).
#[utoipa::path(
    tag = "push",
    params(StreamQuery, ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id")),
    security((), ("app_api_key" = [])),
    responses(
        (status = 200, description = "An endless `text/event-stream`", content_type = "text/event-stream", body = String),
        (status = 400, description = "`invalid_parameter`: a bad `Last-Event-ID`, or an API key in the URL", body = ErrorBody),
        (status = 401, description = "`missing_api_key`, `invalid_api_key` or `invalid_stream_token`", body = ErrorBody),
        (status = 429, description = "`too_many_streams` or `rate_limited`", body = ErrorBody),
    )
)]
#[get("/api/events/stream")]
pub(crate) async fn event_stream(
    request: HttpRequest,
    state: Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let query = stream_query(&request)?;
    let app_id = stream_client(&request, &state, &query).await?;
    let header = request
        .headers()
        .get("last-event-id")
        .map(|value| value.to_str().unwrap_or("-").to_owned());
    let last_event_id = header
        .or(query.last_event_id)
        .map(|id| {
            id.trim()
                .parse::<i64>()
                .ok()
                .filter(|id| *id >= 0)
                .ok_or(ApiError::InvalidParameter {
                    name: "Last-Event-ID",
                    message: "must be an event id this stream sent (a non-negative integer)".into(),
                })
        })
        .transpose()?;
    let subscription = state.streams.open(app_id, last_event_id).await?;
    let heartbeat = heartbeat(&state);
    let (frames, body) = tokio::sync::mpsc::channel::<Bytes>(64);
    actix_web::rt::spawn(send_events(subscription, frames, heartbeat));
    let body = futures_util::stream::unfold(body, |mut body| async move {
        body.recv()
            .await
            .map(|frame| (Ok::<_, std::convert::Infallible>(frame), body))
    });
    Ok(HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/event-stream"))
        .insert_header((CACHE_CONTROL, "no-cache"))
        // Proxies (nginx and the like) must not buffer the stream.
        .insert_header(("x-accel-buffering", "no"))
        .streaming(body))
}

/// Writes the SSE frames of `subscription` until the client is gone (its body is dropped) or
/// the database fails (the stream ends; the client reconnects with `Last-Event-ID`).
async fn send_events(
    mut subscription: Subscription,
    frames: tokio::sync::mpsc::Sender<Bytes>,
    heartbeat: Duration,
) {
    let mut frame = Bytes::from(format!("retry: {SSE_RETRY_MS}\n\n"));
    loop {
        if frames.send(frame).await.is_err() {
            return;
        }
        frame = tokio::select! {
            () = frames.closed() => return,
            next = tokio::time::timeout(heartbeat, subscription.next()) => match next {
                Ok(Ok(event)) => sse_frame(&event),
                Ok(Err(error)) => {
                    tracing::warn!(error = %error, "A live stream cannot read its feed; closing it.");
                    return;
                }
                Err(_) => Bytes::from_static(b": heartbeat\n\n"),
            },
        };
    }
}

/// One SSE event: `id`, `event`, and the body as one `data` line (compact JSON has no newline).
fn sse_frame(event: &FeedEvent) -> Bytes {
    Bytes::from(format!(
        "id: {}\nevent: {}\ndata: {}\n\n",
        event.position, event.event_type, event.body
    ))
}

/// Stream events (WebSocket)
///
/// The push catalogue's events for this app as they are processed, one JSON text message each
/// (the body webhooks get). The server pings every `STREAM_HEARTBEAT_MS` (15 s) and ignores
/// what the client sends but pings and close. No resume: use the SSE stream for that. Open with
/// the `x-app-api-key` header or `?token=`; the same per-app limit as SSE.
#[utoipa::path(
    tag = "push",
    params(StreamQuery),
    security((), ("app_api_key" = [])),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 400, description = "`invalid_parameter` (an API key in the URL) or not a WebSocket handshake", body = ErrorBody),
        (status = 401, description = "`missing_api_key`, `invalid_api_key` or `invalid_stream_token`", body = ErrorBody),
        (status = 429, description = "`too_many_streams` or `rate_limited`", body = ErrorBody),
    )
)]
#[get("/api/events/ws")]
pub(crate) async fn event_socket(
    request: HttpRequest,
    payload: Payload,
    state: Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let query = stream_query(&request)?;
    let app_id = stream_client(&request, &state, &query).await?;
    if query.last_event_id.is_some() {
        return Err(ApiError::InvalidParameter {
            name: "last_event_id",
            message: "the WebSocket stream does not resume; use /api/events/stream".into(),
        });
    }
    let subscription = state.streams.open(app_id, None).await?;
    let (response, session, messages) = actix_ws::handle(&request, payload)
        .map_err(|error| ApiError::InvalidRequest(format!("not a WebSocket handshake: {error}")))?;
    actix_web::rt::spawn(send_messages(
        subscription,
        session,
        messages,
        heartbeat(&state),
    ));
    Ok(response)
}

/// Sends `subscription`'s events as text messages, pings every `heartbeat`, answers pings,
/// until the client closes or goes away.
async fn send_messages(
    mut subscription: Subscription,
    mut session: actix_ws::Session,
    mut messages: actix_ws::MessageStream,
    heartbeat: Duration,
) {
    let mut ping = tokio::time::interval(heartbeat);
    ping.tick().await;
    loop {
        tokio::select! {
            next = subscription.next() => match next {
                Ok(event) => {
                    if session.text(event.body.to_string()).await.is_err() {
                        return;
                    }
                }
                Err(error) => {
                    tracing::warn!(error = %error, "A live stream cannot read its feed; closing it.");
                    break;
                }
            },
            message = messages.next() => match message {
                Some(Ok(actix_ws::Message::Ping(bytes))) => {
                    if session.pong(&bytes).await.is_err() {
                        return;
                    }
                }
                Some(Ok(actix_ws::Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => {
                if session.ping(b"").await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = session.close(None).await;
}

fn heartbeat(state: &ApiState) -> Duration {
    Duration::from_millis(state.streams.settings().stream_heartbeat_ms.max(100))
}

/// The stream query, refusing an API key in the URL.
fn stream_query(request: &HttpRequest) -> Result<StreamQuery, ApiError> {
    let pairs = Query::<Vec<(String, String)>>::from_query(request.query_string())
        .map(Query::into_inner)
        .unwrap_or_default();
    if pairs
        .iter()
        .any(|(name, _)| KEY_PARAMETERS.contains(&name.to_ascii_lowercase().as_str()))
    {
        return Err(ApiError::InvalidParameter {
            name: "query",
            message: "an API key is never accepted in a URL: send the x-app-api-key header, or \
                      POST /api/stream-tokens for a token and pass ?token="
                .into(),
        });
    }
    Query::<StreamQuery>::from_query(request.query_string())
        .map(Query::into_inner)
        .map_err(|error| ApiError::InvalidParameter {
            name: "query",
            message: error.to_string(),
        })
}

/// The app a stream is for: its token's, else its `x-app-api-key`'s.
async fn stream_client(
    request: &HttpRequest,
    state: &ApiState,
    query: &StreamQuery,
) -> Result<Uuid, ApiError> {
    match &query.token {
        Some(token) => {
            let mut conn = state.conn().await?;
            StreamToken::app_of(&mut conn, token)
                .await?
                .ok_or(ApiError::InvalidStreamToken)
        }
        None => Ok(Tenant::extract(request).await?.app_id),
    }
}

/// `Debug` of the token answer, holding `secret` (for the redaction test).
#[cfg(test)]
pub(super) fn debug_sample(secret: &str) -> String {
    format!(
        "{:?}",
        StreamTokenView {
            token: secret.into(),
            expires_at: String::new(),
            expires_in: STREAM_TOKEN_TTL_S,
        }
    )
}
