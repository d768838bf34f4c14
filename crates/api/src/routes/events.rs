//! `/internal/events*`, `/internal/replay`: operating the queue (admin bearer secret).
//!
//! These only move events back to `pending`; the worker applies them as any other event.

use actix_web::HttpResponse;
use actix_web::web;
use actix_web::web::{Data, Json, Path, Query};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use db::DbError;
use db::apps::App;
use db::operations::{self, EventRecord};
use db::queue::EventStatus;

use crate::auth::InternalAdmin;
use crate::error::ApiError;
use crate::routes::params;
use crate::routes::rfc3339;
use crate::startup::ApiState;

/// This module's routes (`routes::configure`).
pub(crate) fn configure(cfg: &mut ServiceConfig) {
    cfg.map(|cfg| {
        cfg.route("/internal/events", web::get().to(list_events))
            .route("/internal/events/reroute", web::post().to(reroute_events))
            .route("/internal/events/{id}", web::get().to(get_event))
            .route("/internal/events/{id}/retry", web::post().to(retry_event))
            .route("/internal/replay", web::post().to(replay))
    });
}

const MAX_REROUTE: usize = 1_000;

/// An event as operators see it; `payload` only when asked for one event.
fn event_json(event: &EventRecord, with_payload: bool) -> Value {
    let mut body = json!({
        "id": event.id.to_string(),
        "app_id": event.app_id,
        "kind": event.kind,
        "event_type": event.event_type,
        "dialpad_id": event.dialpad_id.map(|id| id.to_string()),
        "event_timestamp": rfc3339(event.event_timestamp),
        "status": event.status,
        "attempts": event.attempts,
        "run_at": rfc3339(Some(event.run_at)),
        "last_error": event.last_error,
        "received_at": rfc3339(Some(event.received_at)),
        "processed_at": rfc3339(event.processed_at),
    });
    if with_payload {
        body["payload"] = event.payload.clone();
    }
    body
}

/// Query of `GET /internal/events`.
#[derive(Debug, Deserialize)]
pub(crate) struct ListEventsQuery {
    status: Option<String>,
    app_id: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

fn parse_status(raw: Option<&str>) -> Result<EventStatus, ApiError> {
    let invalid = || ApiError::InvalidParameter {
        name: "status",
        message: "must be one of pending, done, ignored, dead, unroutable".into(),
    };
    Ok(match raw.ok_or_else(invalid)? {
        "pending" => EventStatus::Pending,
        "done" => EventStatus::Done,
        "ignored" => EventStatus::Ignored,
        "dead" => EventStatus::Dead,
        "unroutable" => EventStatus::Unroutable,
        _ => return Err(invalid()),
    })
}

/// `GET /internal/events?status=&app_id=&limit=&cursor=`: events with that status (`pending`,
/// `done`, `ignored`, `dead`, `unroutable`), newest first, optionally of one app.
/// `200 {"events": [...], "next_cursor"}`; pass `next_cursor` as `cursor` for the next page
/// (`null` on the last). `limit` 1–200, default 50. Payloads are left out (see
/// `GET /internal/events/{id}`).
pub(crate) async fn list_events(
    _admin: InternalAdmin,
    state: Data<ApiState>,
    query: Query<ListEventsQuery>,
) -> Result<HttpResponse, ApiError> {
    let status = parse_status(query.status.as_deref())?;
    let app_id = query
        .app_id
        .as_deref()
        .map(|raw| {
            raw.parse::<Uuid>().map_err(|_| ApiError::InvalidParameter {
                name: "app_id",
                message: "must be a UUID".into(),
            })
        })
        .transpose()?;
    let limit = params::limit(query.limit.as_deref())?;
    let before_id = params::id_cursor(query.cursor.as_deref())?;
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let page = operations::list_events(&mut conn, status, app_id, before_id, limit).await?;
    Ok(HttpResponse::Ok().json(json!({
        "events": page.events.iter().map(|e| event_json(e, false)).collect::<Vec<_>>(),
        "next_cursor": page.next_before_id.map(|id| id.to_string()),
    })))
}

fn event_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound)
}

/// `GET /internal/events/{id}`: one event with its Dialpad payload; 404 when unknown.
pub(crate) async fn get_event(
    _admin: InternalAdmin,
    state: Data<ApiState>,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = event_id(&id)?;
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let event = operations::find_event(&mut conn, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(event_json(&event, true)))
}

/// `POST /internal/events/{id}/retry`: puts a dead event back in the queue with fresh
/// attempts. `200 {"id", "status": "pending"}`; 404 unknown; 409 `conflict` when it is not
/// dead.
#[tracing::instrument(skip_all, fields(event.id = %id))]
pub(crate) async fn retry_event(
    _admin: InternalAdmin,
    state: Data<ApiState>,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = event_id(&id)?;
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    if !operations::retry_dead(&mut conn, id).await? {
        let event = operations::find_event(&mut conn, id)
            .await?
            .ok_or(ApiError::NotFound)?;
        return Err(ApiError::Conflict(format!(
            "only dead events can be retried; this one is {}",
            event.status
        )));
    }
    tracing::info!("Dead event queued again.");
    Ok(HttpResponse::Ok().json(json!({ "id": id.to_string(), "status": "pending" })))
}

/// Body of `POST /internal/events/reroute`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RerouteRequest {
    app_id: Uuid,
    /// Ids of unroutable events (strings or numbers), 1–1000.
    event_ids: Vec<Value>,
}

/// `POST /internal/events/reroute` `{"app_id", "event_ids"}`: gives unroutable events (received
/// on the unscoped route) their tenant and queues them. `200 {"queued", "duplicates"}`:
/// duplicates are events the app already has, marked `ignored`. Ids that are not unroutable
/// are skipped. 404 for an unknown app.
#[tracing::instrument(skip_all)]
pub(crate) async fn reroute_events(
    _admin: InternalAdmin,
    state: Data<ApiState>,
    body: Json<RerouteRequest>,
) -> Result<HttpResponse, ApiError> {
    let ids: Vec<i64> = body
        .event_ids
        .iter()
        .map(|id| match id {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        })
        .collect::<Option<_>>()
        .filter(|ids: &Vec<i64>| (1..=MAX_REROUTE).contains(&ids.len()))
        .ok_or_else(|| {
            ApiError::InvalidRequest(format!("event_ids: 1 to {MAX_REROUTE} event ids"))
        })?;
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    App::find(&mut conn, body.app_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let rerouted = operations::reroute_unroutable(&mut conn, body.app_id, &ids).await?;
    tracing::info!(app.id = %body.app_id, queued = rerouted.queued, duplicates = rerouted.duplicates, "Unroutable events re-routed.");
    Ok(HttpResponse::Ok().json(json!({
        "queued": rerouted.queued,
        "duplicates": rerouted.duplicates,
    })))
}

/// Body of `POST /internal/replay`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReplayRequest {
    app_id: Uuid,
    /// RFC 3339; default: the beginning.
    from: Option<DateTime<Utc>>,
    /// RFC 3339, exclusive; default: now.
    to: Option<DateTime<Utc>>,
}

/// `POST /internal/replay` `{"app_id", "from"?, "to"?}`: rebuilds the app's domain rows from
/// its stored events (the event log is the source of truth). Every leg and message with an
/// event in `[from, to)` is queued again with its whole log; the worker rebuilds it.
/// `202 {"queued"}` (events queued). 400 when `from` is not before `to`; 404 unknown app.
#[tracing::instrument(skip_all)]
pub(crate) async fn replay(
    _admin: InternalAdmin,
    state: Data<ApiState>,
    body: Json<ReplayRequest>,
) -> Result<HttpResponse, ApiError> {
    if let (Some(from), Some(to)) = (body.from, body.to)
        && from >= to
    {
        return Err(ApiError::InvalidRequest("from: must be before to".into()));
    }
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    App::find(&mut conn, body.app_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let queued = operations::replay(&mut conn, body.app_id, body.from, body.to).await?;
    tracing::info!(app.id = %body.app_id, queued, "Replay queued.");
    Ok(HttpResponse::Accepted().json(json!({ "queued": queued })))
}
