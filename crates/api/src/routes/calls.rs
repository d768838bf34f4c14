//! `/api/calls`: a tenant's phone calls (logical calls) and their legs.

use actix_web::HttpResponse;
use actix_web::web::{Data, Path, Query};
use serde::Serialize;
use serde_json::{Value, json};

use db::DbError;
use db::calls::Call;
use db::listing::{self, CallFilter};
use db::logical_calls::LogicalCallRow;

use crate::auth::Tenant;
use crate::error::ApiError;
use crate::routes::params::{ListQuery, next_cursor, one_of};
use crate::routes::rfc3339;
use crate::startup::ApiState;

/// Statuses of a phone call (`domain::logical_call`), and of a leg (all but `abandoned`).
const CALL_STATUSES: &[&str] = &[
    "ringing",
    "queued",
    "connected",
    "on_hold",
    "completed",
    "missed",
    "voicemail",
    "abandoned",
];

/// One call leg as clients see it. Dialpad ids are int64 and are sent as strings so JavaScript
/// clients keep them exact; times are RFC 3339 UTC; durations are integer milliseconds.
#[derive(Debug, Serialize)]
pub(crate) struct CallResponse {
    id: String,
    call_id: String,
    /// The phone call this leg belongs to (`GET /api/calls/{id}`).
    logical_call_id: Option<String>,
    master_call_id: Option<String>,
    entry_point_call_id: Option<String>,
    operator_call_id: Option<String>,
    /// `inbound` or `outbound`.
    direction: Option<String>,
    from: Option<String>,
    to: Option<String>,
    external_number: Option<String>,
    internal_number: Option<String>,
    /// Our status: `ringing`, `queued`, `connected`, `on_hold`, `completed`, `missed`, `voicemail`.
    status: String,
    /// The latest Dialpad state.
    state: String,
    started_at: Option<String>,
    rang_at: Option<String>,
    queued_at: Option<String>,
    connected_at: Option<String>,
    ended_at: Option<String>,
    /// Connected to ended, ms (Dialpad `duration`).
    duration: Option<i64>,
    /// Started to ended, ms (Dialpad `total_duration`).
    total_duration: Option<i64>,
    /// Talk time excluding hold, ms.
    talk_time: Option<i64>,
    /// Hold time, ms.
    hold_time: Option<i64>,
    was_recorded: bool,
    recording_url: Option<String>,
    voicemail_link: Option<String>,
    transcription_text: Option<String>,
    is_transferred: bool,
    mos_score: Option<f64>,
    target: Option<Value>,
    contact: Option<Value>,
    custom_data: Option<String>,
    event_count: i32,
    last_event_at: Option<String>,
    updated_at: Option<String>,
}

fn millis(value: Option<f64>) -> Option<i64> {
    // Durations are far below 2^53 ms, so rounding then casting is exact.
    value.map(|ms| ms.round() as i64)
}

impl From<Call> for CallResponse {
    fn from(call: Call) -> Self {
        CallResponse {
            id: call.id.to_string(),
            call_id: call.call_id.to_string(),
            logical_call_id: call.logical_call_id.map(|id| id.to_string()),
            master_call_id: call.master_call_id.map(|id| id.to_string()),
            entry_point_call_id: call.entry_point_call_id.map(|id| id.to_string()),
            operator_call_id: call.operator_call_id.map(|id| id.to_string()),
            direction: call.direction,
            from: call.from_number,
            to: call.to_number,
            external_number: call.external_number,
            internal_number: call.internal_number,
            status: call.status,
            state: call.state,
            started_at: rfc3339(call.started_at),
            rang_at: rfc3339(call.rang_at),
            queued_at: rfc3339(call.queued_at),
            connected_at: rfc3339(call.connected_at),
            ended_at: rfc3339(call.ended_at),
            duration: millis(call.duration_ms),
            total_duration: millis(call.total_duration_ms),
            talk_time: call.talk_time_ms,
            hold_time: call.hold_time_ms,
            was_recorded: call.was_recorded,
            recording_url: call.recording_url,
            voicemail_link: call.voicemail_link,
            transcription_text: call.transcription_text,
            is_transferred: call.is_transferred,
            mos_score: call.mos_score,
            target: call.target,
            contact: call.contact,
            custom_data: call.custom_data,
            event_count: call.event_count,
            last_event_at: rfc3339(call.last_event_at),
            updated_at: rfc3339(Some(call.updated_at)),
        }
    }
}

/// One phone call as clients see it: its legs aggregated (`domain::logical_call`). Ids are
/// strings, times RFC 3339 UTC, durations integer milliseconds.
#[derive(Debug, Serialize)]
pub(crate) struct LogicalCallResponse {
    /// The call's id: its root leg's `call_id` (any leg's id also finds it).
    call_id: String,
    /// `ringing`, `queued`, `connected`, `on_hold`, `completed`, `missed`, `voicemail`,
    /// `abandoned`.
    status: String,
    direction: Option<String>,
    from: Option<String>,
    to: Option<String>,
    started_at: Option<String>,
    /// First connect on a person (user) leg.
    answered_at: Option<String>,
    ended_at: Option<String>,
    /// `ended_at - answered_at`, ms.
    duration: Option<i64>,
    /// `ended_at - started_at`, ms.
    total_duration: Option<i64>,
    /// Summed over person legs, ms.
    talk_time: i64,
    hold_time: i64,
    transferred: bool,
    first_answered_by: Option<Value>,
    final_handler: Option<Value>,
    voicemail: bool,
    was_recorded: bool,
    contact: Option<Value>,
    target: Option<Value>,
    /// How many Dialpad legs (`call_id`s) the call has.
    leg_count: i32,
    last_event_at: Option<String>,
}

impl From<LogicalCallRow> for LogicalCallResponse {
    fn from(call: LogicalCallRow) -> Self {
        LogicalCallResponse {
            call_id: call.logical_call_id.to_string(),
            status: call.status,
            direction: call.direction,
            from: call.from_number,
            to: call.to_number,
            started_at: rfc3339(call.started_at),
            answered_at: rfc3339(call.answered_at),
            ended_at: rfc3339(call.ended_at),
            duration: call.duration_ms,
            total_duration: call.total_duration_ms,
            talk_time: call.talk_time_ms,
            hold_time: call.hold_time_ms,
            transferred: call.transferred,
            first_answered_by: call.first_answered_by,
            final_handler: call.final_handler,
            voicemail: call.voicemail,
            was_recorded: call.was_recorded,
            contact: call.contact,
            target: call.target,
            leg_count: call.leg_count,
            last_event_at: rfc3339(call.last_event_at),
        }
    }
}

fn call_filter(query: &ListQuery) -> Result<CallFilter, ApiError> {
    let (from, to) = query.time_range()?;
    Ok(CallFilter {
        direction: query.direction()?,
        statuses: one_of("status", query.status.as_deref(), CALL_STATUSES)?.map(|s| vec![s]),
        state: query.state.clone(),
        from,
        to,
        number: query.number()?,
        live: false,
        target_id: query
            .target_id
            .as_deref()
            .map(|raw| {
                raw.parse().map_err(|_| ApiError::InvalidParameter {
                    name: "target_id",
                    message: "must be a Dialpad id (an integer)".into(),
                })
            })
            .transpose()?,
    })
}

/// `GET /api/calls`: the tenant's phone calls, newest first (`started_at`), one row per call
/// with its `leg_count`; `view=legs` lists the Dialpad legs instead.
///
/// Filters: `direction`, `status`, `state` (a leg's Dialpad state), `from`/`to` (on
/// `started_at`, RFC 3339), `number` (either party, E.164), `target_id`. Paging: `limit`
/// (1–200, default 50) with `offset`, or `cursor` (a previous page's `next_cursor`, for deep
/// pages). Answers `{"calls", "total", "limit", "offset", "next_cursor"}`; `total` counts every
/// match (`null` on cursor pages: count once on the first page, then walk).
#[tracing::instrument(skip_all, fields(app.id = %tenant.app_id))]
pub(crate) async fn list_calls(
    tenant: Tenant,
    state: Data<ApiState>,
    query: Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let view = one_of("view", query.view.as_deref(), &["calls", "legs"])?;
    let filter = call_filter(&query)?;
    list(
        &state,
        tenant,
        &query,
        filter,
        view.as_deref() == Some("legs"),
    )
    .await
}

/// `GET /api/calls/active`: the tenant's calls that have not ended (`ringing`, `queued`,
/// `connected`, `on_hold`), with the conventions of `GET /api/calls`.
#[tracing::instrument(skip_all, fields(app.id = %tenant.app_id))]
pub(crate) async fn active_calls(
    tenant: Tenant,
    state: Data<ApiState>,
    query: Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let view = one_of("view", query.view.as_deref(), &["calls", "legs"])?;
    let mut filter = call_filter(&query)?;
    filter.live = true;
    list(
        &state,
        tenant,
        &query,
        filter,
        view.as_deref() == Some("legs"),
    )
    .await
}

async fn list(
    state: &ApiState,
    tenant: Tenant,
    query: &ListQuery,
    filter: CallFilter,
    legs: bool,
) -> Result<HttpResponse, ApiError> {
    let window = query.window()?;
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let (calls, total, next) = if legs {
        let page = listing::legs(&mut conn, tenant.app_id, &filter, window).await?;
        let next = next_cursor(&page.rows, window.limit, |c| (c.started_at, c.call_id));
        let calls: Vec<Value> = page
            .rows
            .into_iter()
            .map(|c| serde_json::to_value(CallResponse::from(c)))
            .collect::<Result<_, _>>()
            .map_err(|e| ApiError::Internal(e.into()))?;
        (calls, page.total, next)
    } else {
        let page = listing::logical_calls(&mut conn, tenant.app_id, &filter, window).await?;
        let next = next_cursor(&page.rows, window.limit, |c| {
            (c.started_at, c.logical_call_id)
        });
        let calls: Vec<Value> = page
            .rows
            .into_iter()
            .map(|c| serde_json::to_value(LogicalCallResponse::from(c)))
            .collect::<Result<_, _>>()
            .map_err(|e| ApiError::Internal(e.into()))?;
        (calls, page.total, next)
    };
    Ok(HttpResponse::Ok().json(json!({
        "calls": calls,
        "total": total,
        "limit": window.limit,
        "offset": window.offset,
        "next_cursor": next,
    })))
}

fn call_id(raw: &str) -> Result<i64, ApiError> {
    // Not a Dialpad id: nothing to find (and nothing to tell about other tenants).
    raw.parse().map_err(|_| ApiError::NotFound)
}

/// `GET /api/calls/{call_id}`: the phone call any of its legs' ids (or its own id) names, with
/// its legs (oldest first): `{...call, "legs": [...]}`. 404 for an unknown id or another
/// tenant's call.
#[tracing::instrument(skip_all, fields(app.id = %tenant.app_id))]
pub(crate) async fn get_call(
    tenant: Tenant,
    state: Data<ApiState>,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = call_id(&id)?;
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let (call, legs) = listing::logical_call_with_legs(&mut conn, tenant.app_id, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let mut body = serde_json::to_value(LogicalCallResponse::from(call))
        .map_err(|e| ApiError::Internal(e.into()))?;
    body["legs"] =
        serde_json::to_value(legs.into_iter().map(CallResponse::from).collect::<Vec<_>>())
            .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(HttpResponse::Ok().json(body))
}

/// `GET /api/calls/{call_id}/events`: the call's raw Dialpad events, every leg's, in Dialpad's
/// order (`event_timestamp`): `{"call_id", "events": [{"id", "call_id", "state",
/// "event_timestamp", "received_at", "payload"}]}`. A leg whose old events were pruned by
/// retention shows one `snapshot` event in their place. 404 as `GET /api/calls/{call_id}`.
#[tracing::instrument(skip_all, fields(app.id = %tenant.app_id))]
pub(crate) async fn call_events(
    tenant: Tenant,
    state: Data<ApiState>,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = call_id(&id)?;
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let (call, legs) = listing::logical_call_with_legs(&mut conn, tenant.app_id, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let leg_ids: Vec<i64> = legs.iter().map(|leg| leg.call_id).collect();
    let events = listing::call_events(&mut conn, tenant.app_id, &leg_ids).await?;
    Ok(HttpResponse::Ok().json(json!({
        "call_id": call.logical_call_id.to_string(),
        "events": events.iter().map(|event| json!({
            "id": event.id.to_string(),
            "call_id": event.dialpad_id.map(|id| id.to_string()),
            "state": event.event_type,
            "event_timestamp": rfc3339(event.event_timestamp),
            "received_at": rfc3339(Some(event.received_at)),
            "payload": event.payload,
        })).collect::<Vec<_>>(),
    })))
}
