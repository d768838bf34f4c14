//! `/api/calls`: a tenant's phone calls (logical calls) and their legs.

use actix_web::web::{Data, Json, Path, Query};
use actix_web::{HttpRequest, HttpResponse, get};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::schema::Object;
use utoipa::{IntoParams, ToSchema};

use diesel_async::AsyncPgConnection;
use uuid::Uuid;

use db::calls::Call;
use db::listing::{self, CallFilter};
use db::logical_calls::LogicalCallRow;

use crate::auth::Tenant;
use crate::error::{ApiError, ErrorBody};
use crate::routes::params::{
    DirectionQuery, PageMeta, PageQuery, RangeQuery, next_cursor, one_of, string_enum,
};
use crate::routes::{rfc3339, timestamp};
use crate::startup::ApiState;
use crate::totals::TotalKey;

/// Values of `view`.
const VIEWS: &[&str] = &["calls", "legs"];

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
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = CallLeg)]
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
    /// Dialpad's target (the user, office, call center... the call was routed to): `{id,
    /// type, name, phone, email, ...}` as Dialpad sent it.
    #[schema(value_type = Option<Object>)]
    target: Option<Value>,
    /// Dialpad's contact (the other party): `{id, type, name, phone, email, ...}`.
    #[schema(value_type = Option<Object>)]
    contact: Option<Value>,
    custom_data: Option<String>,
    event_count: i32,
    last_event_at: Option<String>,
    updated_at: String,
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
            updated_at: timestamp(call.updated_at),
        }
    }
}

/// One phone call as clients see it: its legs aggregated (`domain::logical_call`). Ids are
/// strings, times RFC 3339 UTC, durations integer milliseconds.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = PhoneCall)]
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
    /// The target of the first person leg that connected: `{id, type, name, ...}`.
    #[schema(value_type = Option<Object>)]
    first_answered_by: Option<Value>,
    /// The target of the last person leg that connected.
    #[schema(value_type = Option<Object>)]
    final_handler: Option<Value>,
    voicemail: bool,
    was_recorded: bool,
    /// Dialpad's contact (the other party), as on its root leg.
    #[schema(value_type = Option<Object>)]
    contact: Option<Value>,
    /// Dialpad's target, as on its root leg.
    #[schema(value_type = Option<Object>)]
    target: Option<Value>,
    /// How many Dialpad legs (`call_id`s) the call has.
    leg_count: i32,
    last_event_at: Option<String>,
    /// Dialpad's recording link, from the leg that recorded.
    recording_url: Option<String>,
    /// Dialpad's MOS call-quality score (1-5), from the answered person leg.
    mos_score: Option<f64>,
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
            recording_url: call.recording_url,
            mos_score: call.mos_score,
        }
    }
}

fn view_schema() -> Object {
    string_enum(
        VIEWS,
        "`calls` (default): one row per phone call; `legs`: one row per Dialpad leg.",
    )
}

fn status_schema() -> Object {
    string_enum(
        CALL_STATUSES,
        "Our status (`abandoned`: a phone call's only, an inbound call that queued and was \
         never answered).",
    )
}

/// The filters of `GET /api/calls` beyond the shared ones.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct CallsQuery {
    /// Phone calls or legs (described in `view_schema`).
    #[param(schema_with = view_schema)]
    view: Option<String>,
    /// Our status (described in `status_schema`).
    #[param(schema_with = status_schema)]
    status: Option<String>,
    /// A Dialpad call state (`hangup`, `voicemail`, ...): of the leg, or of any leg of the
    /// phone call.
    state: Option<String>,
    /// A Dialpad target id (user, office, call center...): of the leg, or of any leg. Ids are
    /// compared as text, an integer in canonical decimal (`042` finds `42`).
    #[param(value_type = Option<String>, example = "6460210548400128")]
    target_id: Option<String>,
}

fn call_filter(
    calls: &CallsQuery,
    range: &RangeQuery,
    direction: &DirectionQuery,
) -> Result<CallFilter, ApiError> {
    let (from, to) = range.time_range()?;
    Ok(CallFilter {
        direction: direction.direction()?,
        status: one_of("status", calls.status.as_deref(), CALL_STATUSES)?,
        state: calls.state.clone(),
        from,
        to,
        number: range.number()?,
        live: false,
        target_id: calls
            .target_id
            .as_deref()
            .map(|raw| {
                domain::json::canonical_id(raw).ok_or_else(|| ApiError::InvalidParameter {
                    name: "target_id",
                    message: format!(
                        "must be a Dialpad id: an integer, or a text of 1 to {} bytes",
                        domain::json::MAX_TOKEN_BYTES
                    ),
                })
            })
            .transpose()?,
    })
}

/// Phone calls, or legs with `view=legs`.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum CallRows {
    Calls(Vec<LogicalCallResponse>),
    Legs(Vec<CallResponse>),
}

// Documented as `anyOf`, not the derive's `oneOf`: an empty page is a valid list of either, so
// it would match both alternatives, which `oneOf` forbids.
impl utoipa::PartialSchema for CallRows {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AnyOfBuilder, ArrayBuilder, Ref};
        let list_of = |name: &str| ArrayBuilder::new().items(Ref::from_schema_name(name));
        AnyOfBuilder::new()
            .item(list_of(&LogicalCallResponse::name()))
            .item(list_of(&CallResponse::name()))
            .description(Some("Phone calls, or legs with `view=legs`."))
            .into()
    }
}

impl ToSchema for CallRows {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        use utoipa::PartialSchema;
        schemas.push((
            LogicalCallResponse::name().into(),
            LogicalCallResponse::schema(),
        ));
        LogicalCallResponse::schemas(schemas);
        schemas.push((CallResponse::name().into(), CallResponse::schema()));
        CallResponse::schemas(schemas);
    }
}

/// A page of `GET /api/calls` or `GET /api/calls/active`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CallList {
    /// Phone calls, or legs with `view=legs`; newest first (`started_at`).
    calls: CallRows,
    #[serde(flatten)]
    page: PageMeta,
}

/// List the tenant's phone calls
///
/// Newest first (`started_at`), one row per phone call with its `leg_count`; `view=legs` lists
/// the Dialpad legs instead. Filters combine with AND. Paging: `limit` with `offset`, or
/// `cursor` (a previous page's `next_cursor`) for deep pages; `total` counts every match on
/// offset pages and is `null` on cursor pages (count once, then walk).
#[utoipa::path(
    tag = "calls",
    security(("app_api_key" = [])),
    params(PageQuery, RangeQuery, DirectionQuery, CallsQuery),
    responses(
        (status = 200, description = "A page of calls", body = CallList),
        (status = 400, description = "`invalid_parameter`: the message names the parameter", body = ErrorBody),
    )
)]
#[get("/api/calls")]
#[tracing::instrument(skip_all, fields(app.id = %tenant.app_id))]
pub(crate) async fn list_calls(
    tenant: Tenant,
    state: Data<ApiState>,
    page: Query<PageQuery>,
    range: Query<RangeQuery>,
    direction: Query<DirectionQuery>,
    calls: Query<CallsQuery>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let filter = call_filter(&calls, &range, &direction)?;
    list(&state, &request, tenant, &page, &calls, filter).await
}

/// List the tenant's live calls
///
/// Calls that have not ended (`ringing`, `queued`, `connected`, `on_hold`), with the filters,
/// paging and `view` of `GET /api/calls`; served by a partial index however long the history.
#[utoipa::path(
    tag = "calls",
    security(("app_api_key" = [])),
    params(PageQuery, RangeQuery, DirectionQuery, CallsQuery),
    responses(
        (status = 200, description = "A page of live calls", body = CallList),
        (status = 400, description = "`invalid_parameter`: the message names the parameter", body = ErrorBody),
    )
)]
#[get("/api/calls/active")]
#[tracing::instrument(skip_all, fields(app.id = %tenant.app_id))]
pub(crate) async fn active_calls(
    tenant: Tenant,
    state: Data<ApiState>,
    page: Query<PageQuery>,
    range: Query<RangeQuery>,
    direction: Query<DirectionQuery>,
    calls: Query<CallsQuery>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let mut filter = call_filter(&calls, &range, &direction)?;
    filter.live = true;
    list(&state, &request, tenant, &page, &calls, filter).await
}

/// A page of calls or legs (a [`CallList`]), cached until the tenant's data changes.
async fn list(
    state: &ApiState,
    request: &HttpRequest,
    tenant: Tenant,
    page: &PageQuery,
    calls: &CallsQuery,
    filter: CallFilter,
) -> Result<HttpResponse, ApiError> {
    let legs = one_of("view", calls.view.as_deref(), VIEWS)?.as_deref() == Some("legs");
    let window = page.window()?;
    let app_id = tenant.app_id;
    let build = |stamp| async move {
        let mut conn = state.conn().await?;
        let (rows, total, next) = if legs {
            let page = listing::legs(&mut conn, app_id, &filter, window).await?;
            let count = listing::count_legs(&mut conn, app_id, &filter);
            let key = TotalKey::Legs(app_id, filter.clone());
            let total = state
                .totals
                .total(key, stamp, &window, page.total, count)
                .await?;
            let next = next_cursor(&page.rows, window.limit, |c| (c.started_at, c.call_id));
            let rows = page.rows.into_iter().map(CallResponse::from).collect();
            (CallRows::Legs(rows), total, next)
        } else {
            let page = listing::logical_calls(&mut conn, app_id, &filter, window).await?;
            let count = listing::count_logical_calls(&mut conn, app_id, &filter);
            let key = TotalKey::Calls(app_id, filter.clone());
            let total = state
                .totals
                .total(key, stamp, &window, page.total, count)
                .await?;
            let next = next_cursor(&page.rows, window.limit, |c| {
                (c.started_at, c.logical_call_id)
            });
            let rows = page
                .rows
                .into_iter()
                .map(LogicalCallResponse::from)
                .collect();
            (CallRows::Calls(rows), total, next)
        };
        Ok(CallList {
            calls: rows,
            page: PageMeta::new(total, window, next),
        })
    };
    state.pages.json(request, app_id, build).await
}

/// The path of one phone call's endpoints.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct CallPath {
    /// A Dialpad call id: the phone call's or any of its legs'.
    #[param(example = "6312883045720064")]
    call_id: String,
}

impl CallPath {
    /// The tenant's phone call this path names, with its legs (oldest first).
    ///
    /// # Errors
    /// [`ApiError::NotFound`] for an id that is not a Dialpad id or no call of this tenant's
    /// (nothing tells about other tenants); database errors.
    async fn find(
        &self,
        conn: &mut AsyncPgConnection,
        app_id: Uuid,
    ) -> Result<(LogicalCallRow, Vec<Call>), ApiError> {
        let id = self.call_id.parse().map_err(|_| ApiError::NotFound)?;
        listing::logical_call_with_legs(conn, app_id, id)
            .await?
            .ok_or(ApiError::NotFound)
    }
}

/// A phone call with its legs.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PhoneCallWithLegs {
    #[serde(flatten)]
    call: LogicalCallResponse,
    /// Its legs, oldest first.
    legs: Vec<CallResponse>,
}

/// Get a phone call with its legs
///
/// Any of its legs' ids (or its own id) finds the phone call.
#[utoipa::path(
    tag = "calls",
    security(("app_api_key" = [])),
    params(CallPath),
    responses(
        (status = 200, description = "The phone call", body = PhoneCallWithLegs),
        (status = 404, description = "`not_found`: no such call for this tenant (another tenant's call included)", body = ErrorBody),
    )
)]
#[get("/api/calls/{call_id}")]
#[tracing::instrument(skip_all, fields(app.id = %tenant.app_id))]
pub(crate) async fn get_call(
    tenant: Tenant,
    state: Data<ApiState>,
    path: Path<CallPath>,
) -> Result<Json<PhoneCallWithLegs>, ApiError> {
    let mut conn = state.conn().await?;
    let (call, legs) = path.find(&mut conn, tenant.app_id).await?;
    Ok(Json(PhoneCallWithLegs {
        call: call.into(),
        legs: legs.into_iter().map(CallResponse::from).collect(),
    }))
}

/// One raw Dialpad event of a call.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CallEvent {
    /// Our event id.
    id: String,
    /// The leg's Dialpad `call_id`.
    call_id: Option<String>,
    /// The Dialpad state (`calling`, `connected`, `hangup`, ...), or `snapshot` for a leg's
    /// events pruned by retention.
    state: Option<String>,
    /// Dialpad's `event_timestamp`.
    event_timestamp: Option<String>,
    /// When ingest accepted it.
    received_at: String,
    /// The webhook's payload as Dialpad signed it (the JWT's claims).
    #[schema(value_type = Object)]
    payload: Value,
}

/// The event timeline of a phone call.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CallEvents {
    /// The phone call's id.
    call_id: String,
    /// Every leg's events in Dialpad's order (`event_timestamp`).
    events: Vec<CallEvent>,
}

/// Get a phone call's raw events
///
/// Every leg's Dialpad events in Dialpad's order (`event_timestamp`). A leg whose old events
/// were pruned by retention shows one `snapshot` event in their place.
#[utoipa::path(
    tag = "calls",
    security(("app_api_key" = [])),
    params(CallPath),
    responses(
        (status = 200, description = "The events", body = CallEvents),
        (status = 404, description = "`not_found`: no such call for this tenant", body = ErrorBody),
    )
)]
#[get("/api/calls/{call_id}/events")]
#[tracing::instrument(skip_all, fields(app.id = %tenant.app_id))]
pub(crate) async fn call_events(
    tenant: Tenant,
    state: Data<ApiState>,
    path: Path<CallPath>,
) -> Result<Json<CallEvents>, ApiError> {
    let mut conn = state.conn().await?;
    let (call, legs) = path.find(&mut conn, tenant.app_id).await?;
    let leg_ids: Vec<i64> = legs.iter().map(|leg| leg.call_id).collect();
    let events = listing::call_events(&mut conn, tenant.app_id, &leg_ids).await?;
    Ok(Json(CallEvents {
        call_id: call.logical_call_id.to_string(),
        events: events
            .into_iter()
            .map(|event| CallEvent {
                id: event.id.to_string(),
                call_id: event.dialpad_id.map(|id| id.to_string()),
                state: event.event_type,
                event_timestamp: rfc3339(event.event_timestamp),
                received_at: timestamp(event.received_at),
                payload: event.payload,
            })
            .collect(),
    }))
}
