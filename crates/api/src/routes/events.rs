//! `/internal/events*`, `/internal/replay`: operating the queue (admin bearer secret).
//!
//! These only move events back to `pending`; the worker applies them as any other event.

use actix_web::HttpResponse;
use actix_web::web::{Data, Json, Path, Query};
use actix_web::{get, post};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::Required;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{Array, ArrayBuilder, ObjectBuilder, SchemaType, Type};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use db::apps::App;
use db::operations::{self, EventRecord};
use db::queue::EventStatus;

use crate::auth::InternalAdmin;
use crate::error::{ApiError, ErrorBody};
use crate::routes::params::{self, string_enum};
use crate::routes::{JsonObject, rfc3339, timestamp};
use crate::startup::ApiState;

/// This module's routes (`routes::configure`). `/internal/events/reroute` comes before
/// `/internal/events/{id}`.
pub(crate) fn configure(cfg: &mut ServiceConfig) {
    cfg.service(list_events)
        .service(reroute_events)
        .service(get_event)
        .service(retry_event)
        .service(replay);
}

const MAX_REROUTE: usize = 1_000;

/// Values of `status` (`GET /internal/events`).
const EVENT_STATUSES: &[EventStatus] = &[
    EventStatus::Pending,
    EventStatus::Done,
    EventStatus::Ignored,
    EventStatus::Dead,
    EventStatus::Unroutable,
];

fn event_status_names() -> Vec<&'static str> {
    EVENT_STATUSES.iter().map(|s| s.as_str()).collect()
}

/// A webhook event as operators see it. Ids are strings, times RFC 3339 UTC.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WebhookEvent)]
pub(crate) struct EventView {
    /// Our event id (an integer, as a string).
    id: String,
    /// Its tenant; `null` for an `unroutable` event (received on the unscoped route).
    #[schema(value_type = Option<String>, format = "uuid")]
    app_id: Option<Uuid>,
    /// What it is, from its shape: `call`, `sms`, or a kind stored without modelling
    /// (`contact`, `agent_status`, `unknown`).
    kind: String,
    /// A call's `state`, an SMS's `message_status`, a contact event's `event`.
    event_type: Option<String>,
    /// The Dialpad id it is about (a call's `call_id`, a message's id), as a string.
    dialpad_id: Option<String>,
    /// Dialpad's `event_timestamp`.
    event_timestamp: Option<String>,
    /// `pending`, `done`, `ignored`, `dead` or `unroutable`.
    status: String,
    /// How many times the worker tried it.
    attempts: i32,
    /// When the worker may (next) claim it.
    run_at: String,
    /// The last failure, or why it was ignored.
    last_error: Option<String>,
    /// When ingest accepted it.
    received_at: String,
    /// When the worker finished with it.
    processed_at: Option<String>,
    /// The `x-request-id` ingest answered it with: its log lines (ingest's and the worker's)
    /// carry it.
    request_id: Option<String>,
}

impl From<&EventRecord> for EventView {
    fn from(event: &EventRecord) -> Self {
        EventView {
            id: event.id.to_string(),
            app_id: event.app_id,
            kind: event.kind.clone(),
            event_type: event.event_type.clone(),
            dialpad_id: event.dialpad_id.map(|id| id.to_string()),
            event_timestamp: rfc3339(event.event_timestamp),
            status: event.status.clone(),
            attempts: event.attempts,
            run_at: timestamp(event.run_at),
            last_error: event.last_error.clone(),
            received_at: timestamp(event.received_at),
            processed_at: rfc3339(event.processed_at),
            request_id: event.request_id.clone(),
        }
    }
}

/// A webhook event with its Dialpad payload.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WebhookEventWithPayload)]
pub(crate) struct EventWithPayload {
    #[serde(flatten)]
    event: EventView,
    /// The Dialpad event itself (the webhook JWT's claims).
    #[schema(value_type = Object)]
    payload: Value,
}

/// `status` of `GET /internal/events`: required, one of [`EVENT_STATUSES`]. Written by hand
/// because a derived parameter with its own schema cannot be marked required.
#[derive(Debug, Deserialize)]
pub(crate) struct StatusQuery {
    status: Option<String>,
}

impl IntoParams for StatusQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            ParameterBuilder::new()
                .name("status")
                .parameter_in(ParameterIn::Query)
                .required(Required::True)
                .schema(Some(string_enum(
                    &event_status_names(),
                    "The events' status: `pending` (queued), `done` (applied), `ignored` (stored, \
                     not modelled), `dead` (failed every attempt) or `unroutable` (no tenant).",
                )))
                .build(),
        ]
    }
}

/// The other filters and paging of `GET /internal/events`. Parameters are read as text so
/// that an error can name the parameter.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListEventsQuery {
    /// Only this app's events (a UUID).
    #[param(format = "uuid")]
    app_id: Option<String>,
    /// Events per page, 1–200 (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    limit: Option<String>,
    /// A previous page's `next_cursor`: the events before it.
    cursor: Option<String>,
}

fn parse_status(raw: Option<&str>) -> Result<EventStatus, ApiError> {
    let invalid = || ApiError::InvalidParameter {
        name: "status",
        message: format!("must be one of {}", event_status_names().join(", ")),
    };
    let raw = raw.ok_or_else(invalid)?;
    EVENT_STATUSES
        .iter()
        .copied()
        .find(|status| status.as_str() == raw)
        .ok_or_else(invalid)
}

/// A page of `GET /internal/events`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WebhookEventList)]
pub(crate) struct EventList {
    /// Newest first, without their payload.
    events: Vec<EventView>,
    /// The `cursor` of the next page; `null` when this page is the last.
    next_cursor: Option<String>,
}

/// List webhook events
///
/// Events with the given status, newest first, optionally of one app; payloads are left out
/// (`GET /internal/events/{id}` has it). Paging: pass `next_cursor` as `cursor` for the next
/// page (`null` on the last).
#[utoipa::path(
    tag = "operations",
    security(("internal_api_secret" = [])),
    params(StatusQuery, ListEventsQuery),
    responses(
        (status = 200, description = "A page of events", body = EventList),
        (status = 400, description = "`invalid_parameter`: the message names the parameter (`status` missing or unknown, `app_id`, `limit`, `cursor`)", body = ErrorBody),
    )
)]
#[get("/internal/events")]
pub(crate) async fn list_events(
    _admin: InternalAdmin,
    state: Data<ApiState>,
    status: Query<StatusQuery>,
    query: Query<ListEventsQuery>,
) -> Result<Json<EventList>, ApiError> {
    let status = parse_status(status.status.as_deref())?;
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
    let mut conn = state.conn().await?;
    let page = operations::list_events(&mut conn, status, app_id, before_id, limit).await?;
    Ok(Json(EventList {
        events: page.events.iter().map(EventView::from).collect(),
        next_cursor: page.next_before_id.map(|id| id.to_string()),
    }))
}

fn event_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound)
}

/// Get a webhook event
///
/// One event with its Dialpad payload.
#[utoipa::path(
    tag = "operations",
    security(("internal_api_secret" = [])),
    params(("id" = String, Path, description = "Our event id (an integer; anything else is not found)", example = "42")),
    responses(
        (status = 200, description = "The event", body = EventWithPayload),
        (status = 404, description = "`not_found`: no such event", body = ErrorBody),
    )
)]
#[get("/internal/events/{id}")]
pub(crate) async fn get_event(
    _admin: InternalAdmin,
    state: Data<ApiState>,
    id: Path<String>,
) -> Result<Json<EventWithPayload>, ApiError> {
    let id = event_id(&id)?;
    let mut conn = state.conn().await?;
    let event = operations::find_event(&mut conn, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(EventWithPayload {
        event: EventView::from(&event),
        payload: event.payload,
    }))
}

/// A dead event queued again.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RetriedEvent {
    /// Our event id.
    id: String,
    /// `pending`.
    status: String,
}

/// Retry a dead event
///
/// Puts a dead event back in the queue with fresh attempts; the worker applies it as any other
/// event.
#[utoipa::path(
    tag = "operations",
    security(("internal_api_secret" = [])),
    params(("id" = String, Path, description = "Our event id (an integer; anything else is not found)", example = "42")),
    responses(
        (status = 200, description = "The event is `pending` again", body = RetriedEvent),
        (status = 404, description = "`not_found`: no such event", body = ErrorBody),
        (status = 409, description = "`conflict`: the event is not dead (the message says its status)", body = ErrorBody),
    )
)]
#[post("/internal/events/{id}/retry")]
#[tracing::instrument(skip_all, fields(event.id = %id))]
pub(crate) async fn retry_event(
    _admin: InternalAdmin,
    state: Data<ApiState>,
    id: Path<String>,
) -> Result<Json<RetriedEvent>, ApiError> {
    let id = event_id(&id)?;
    let mut conn = state.conn().await?;
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
    Ok(Json(RetriedEvent {
        id: id.to_string(),
        status: EventStatus::Pending.as_str().into(),
    }))
}

fn event_ids_schema() -> Array {
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(SchemaType::from_iter([Type::String, Type::Integer]))
                .examples(["42"]),
        )
        .min_items(Some(1))
        .max_items(Some(MAX_REROUTE))
        .description(Some(
            "Ids of unroutable events (strings or integers), 1–1000. Ids that are not \
             unroutable are skipped.",
        ))
        .build()
}

/// Body of `POST /internal/events/reroute`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RerouteRequest {
    /// The app the events belong to.
    #[schema(value_type = String, format = "uuid")]
    app_id: Uuid,
    /// Ids of unroutable events (described in `event_ids_schema`).
    #[schema(schema_with = event_ids_schema)]
    event_ids: Vec<Value>,
}

/// What `POST /internal/events/reroute` did.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RerouteResult {
    /// Events given to the app and queued.
    queued: usize,
    /// Events the app already had (the same Dialpad event), marked `ignored`.
    duplicates: usize,
}

/// Re-route unroutable events
///
/// Gives unroutable events (received on the unscoped ingest route, so without a tenant) their
/// app and queues them. Events the app already has are marked `ignored` as duplicates; ids
/// that are not unroutable events are skipped.
#[utoipa::path(
    tag = "operations",
    security(("internal_api_secret" = [])),
    request_body = RerouteRequest,
    responses(
        (status = 200, description = "How many events were queued, and how many were duplicates", body = RerouteResult),
        (status = 400, description = "`invalid_request`: `event_ids` is not 1 to 1000 event ids; `invalid_json`: the body is not a valid request (`app_id` not a UUID, unknown fields)", body = ErrorBody),
        (status = 404, description = "`not_found`: no such app", body = ErrorBody),
    )
)]
#[post("/internal/events/reroute")]
#[tracing::instrument(skip_all)]
pub(crate) async fn reroute_events(
    _admin: InternalAdmin,
    state: Data<ApiState>,
    body: JsonObject<RerouteRequest>,
) -> Result<Json<RerouteResult>, ApiError> {
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
    let mut conn = state.conn().await?;
    App::find(&mut conn, body.app_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let rerouted = operations::reroute_unroutable(&mut conn, body.app_id, &ids).await?;
    tracing::info!(app.id = %body.app_id, queued = rerouted.queued, duplicates = rerouted.duplicates, "Unroutable events re-routed.");
    Ok(Json(RerouteResult {
        queued: rerouted.queued,
        duplicates: rerouted.duplicates,
    }))
}

/// Body of `POST /internal/replay`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReplayRequest {
    /// The app to rebuild.
    #[schema(value_type = String, format = "uuid")]
    app_id: Uuid,
    /// Start of the range (RFC 3339, inclusive); default: the beginning.
    #[schema(value_type = Option<String>, format = DateTime, example = "2026-11-19T16:00:00Z")]
    from: Option<DateTime<Utc>>,
    /// End of the range (RFC 3339, exclusive); default: now.
    #[schema(value_type = Option<String>, format = DateTime)]
    to: Option<DateTime<Utc>>,
}

/// What `POST /internal/replay` queued.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ReplayQueued {
    /// Events queued again.
    queued: usize,
}

/// Replay an app's events
///
/// Rebuilds the app's domain rows from its stored events (the event log is the source of
/// truth): every leg and message with an event in `[from, to)` is queued again with its whole
/// log, and the worker rebuilds it.
#[utoipa::path(
    tag = "operations",
    security(("internal_api_secret" = [])),
    request_body = ReplayRequest,
    responses(
        (status = 202, description = "Queued: the worker rebuilds the rows", body = ReplayQueued),
        (status = 400, description = "`invalid_request`: `from` is not before `to`; `invalid_json`: the body is not a valid request (`app_id` not a UUID, times not RFC 3339, unknown fields)", body = ErrorBody),
        (status = 404, description = "`not_found`: no such app", body = ErrorBody),
    )
)]
#[post("/internal/replay")]
#[tracing::instrument(skip_all)]
pub(crate) async fn replay(
    _admin: InternalAdmin,
    state: Data<ApiState>,
    body: JsonObject<ReplayRequest>,
) -> Result<HttpResponse, ApiError> {
    if let (Some(from), Some(to)) = (body.from, body.to)
        && from >= to
    {
        return Err(ApiError::InvalidRequest("from: must be before to".into()));
    }
    let mut conn = state.conn().await?;
    App::find(&mut conn, body.app_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let queued = operations::replay(&mut conn, body.app_id, body.from, body.to).await?;
    tracing::info!(app.id = %body.app_id, queued, "Replay queued.");
    Ok(HttpResponse::Accepted().json(ReplayQueued { queued }))
}
