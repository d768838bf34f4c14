//! `/api/calls`: a tenant's call legs.

use actix_web::web::{Data, Json, Query};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use db::calls::{self, Call};

use crate::auth::Tenant;
use crate::error::ApiError;
use crate::routes::rfc3339;
use crate::startup::ApiState;

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 200;

/// Query of `GET /api/calls`; kept as text so errors can name the parameter.
#[derive(Debug, Deserialize)]
pub(crate) struct ListCallsQuery {
    limit: Option<String>,
    offset: Option<String>,
}

fn parse_int(
    name: &'static str,
    raw: Option<&str>,
    default: i64,
    min: i64,
    max: i64,
) -> Result<i64, ApiError> {
    let Some(raw) = raw else { return Ok(default) };
    raw.parse::<i64>()
        .ok()
        .filter(|value| (min..=max).contains(value))
        .ok_or_else(|| ApiError::InvalidParameter {
            name,
            message: format!("must be an integer from {min} to {max}"),
        })
}

/// One call leg as clients see it. Dialpad ids are int64 and are sent as strings so JavaScript
/// clients keep them exact; times are RFC 3339 UTC; durations are integer milliseconds.
#[derive(Debug, Serialize)]
pub(crate) struct CallResponse {
    id: String,
    call_id: String,
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

/// Body of `GET /api/calls`.
#[derive(Debug, Serialize)]
pub(crate) struct CallListResponse {
    calls: Vec<CallResponse>,
    /// All of the tenant's call legs.
    total: i64,
    limit: i64,
    offset: i64,
}

/// `GET /api/calls?limit=&offset=`: the tenant's call legs, newest first (`started_at`).
/// `limit` 1–200 (default 50), `offset` ≥ 0.
#[tracing::instrument(skip_all, fields(app.id = %tenant.app_id))]
pub(crate) async fn list_calls(
    tenant: Tenant,
    state: Data<ApiState>,
    query: Query<ListCallsQuery>,
) -> Result<Json<CallListResponse>, ApiError> {
    let limit = parse_int("limit", query.limit.as_deref(), DEFAULT_LIMIT, 1, MAX_LIMIT)?;
    let offset = parse_int("offset", query.offset.as_deref(), 0, 0, i64::MAX)?;
    let mut conn = state.pool.get().await.map_err(db::DbError::from)?;
    let page = calls::list_for_app(&mut conn, tenant.app_id, limit, offset).await?;
    Ok(Json(CallListResponse {
        calls: page.calls.into_iter().map(CallResponse::from).collect(),
        total: page.total,
        limit,
        offset,
    }))
}
