//! `/api/messages` and `/api/voicemails`: a tenant's SMS/MMS and voicemails, with the list
//! conventions of `/api/calls` (`routes::params`).

use actix_web::web::{Data, Query};
use actix_web::{HttpRequest, HttpResponse, get};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::schema::Object;
use utoipa::{IntoParams, ToSchema};

use db::listing::{self, MessageFilter};
use db::logical_calls::VoicemailRow;
use db::messages::MessageRow;

use crate::auth::Tenant;
use crate::error::{ApiError, ErrorBody};
use crate::routes::params::{
    DirectionQuery, PageMeta, PageQuery, RangeQuery, next_cursor, one_of, string_enum,
};
use crate::routes::rfc3339;
use crate::startup::ApiState;
use crate::totals::TotalKey;

/// Values of a message's `status`.
const MESSAGE_STATUSES: &[&str] = &["pending", "success", "failed"];

/// One SMS or MMS, folded from its events (a delivery update updates its message). Ids are
/// strings, times RFC 3339 UTC.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Message {
    /// Dialpad's message id.
    message_id: String,
    /// `inbound` or `outbound`.
    direction: Option<String>,
    from: Option<String>,
    /// Every recipient (E.164).
    to: Vec<String>,
    text: Option<String>,
    mms: bool,
    mms_url: Option<String>,
    /// `pending`, `success` or `failed` (Dialpad's `message_status`).
    status: Option<String>,
    /// Dialpad's `message_delivery_result`, when it reported one.
    delivery_result: Option<String>,
    is_internal: Option<bool>,
    /// The Dialpad user who sent it.
    sender_id: Option<String>,
    /// Dialpad's target: `{id, type, name, phone, email, ...}`.
    #[schema(value_type = Option<Object>)]
    target: Option<Value>,
    /// Dialpad's contact (the other party).
    #[schema(value_type = Option<Object>)]
    contact: Option<Value>,
    sent_at: Option<String>,
    /// When its delivery status last changed.
    status_updated_at: Option<String>,
    /// How many events were folded into it.
    event_count: i32,
}

impl From<MessageRow> for Message {
    fn from(message: MessageRow) -> Self {
        Message {
            message_id: message.message_id.to_string(),
            direction: message.direction,
            from: message.from_number,
            to: message.to_numbers,
            text: message.text,
            mms: message.mms,
            mms_url: message.mms_url,
            status: message.message_status,
            delivery_result: message.delivery_result,
            is_internal: message.is_internal,
            sender_id: message.sender_id,
            target: message.target,
            contact: message.contact,
            sent_at: rfc3339(message.sent_at),
            status_updated_at: rfc3339(message.status_updated_at),
            event_count: message.event_count,
        }
    }
}

/// One voicemail: a leg that went to voicemail, with its transcript once it arrived.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Voicemail {
    /// The leg's Dialpad `call_id`.
    call_id: String,
    /// The phone call it belongs to (`GET /api/calls/{call_id}`).
    logical_call_id: Option<String>,
    from: Option<String>,
    to: Option<String>,
    /// Dialpad's contact (the caller).
    #[schema(value_type = Option<Object>)]
    contact: Option<Value>,
    /// Dialpad's target (whose voicemail box).
    #[schema(value_type = Option<Object>)]
    target: Option<Value>,
    /// Length in milliseconds.
    duration: Option<i64>,
    /// Dialpad's link to the recording.
    link: Option<String>,
    recording_id: Option<String>,
    transcription_text: Option<String>,
    left_at: Option<String>,
}

impl From<VoicemailRow> for Voicemail {
    fn from(voicemail: VoicemailRow) -> Self {
        Voicemail {
            call_id: voicemail.call_id.to_string(),
            logical_call_id: voicemail.logical_call_id.map(|id| id.to_string()),
            from: voicemail.from_number,
            to: voicemail.to_number,
            contact: voicemail.contact,
            target: voicemail.target,
            duration: voicemail.duration_ms,
            link: voicemail.link,
            recording_id: voicemail.recording_id,
            transcription_text: voicemail.transcription_text,
            left_at: rfc3339(voicemail.left_at),
        }
    }
}

fn message_status_schema() -> Object {
    string_enum(MESSAGE_STATUSES, "The delivery status.")
}

/// The filters of `GET /api/messages` beyond the shared ones.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct MessagesQuery {
    /// The delivery status (described in `message_status_schema`).
    #[param(schema_with = message_status_schema)]
    status: Option<String>,
}

/// A page of `GET /api/messages`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MessageList {
    /// Newest first (`sent_at`).
    messages: Vec<Message>,
    #[serde(flatten)]
    page: PageMeta,
}

/// List the tenant's messages
///
/// SMS and MMS, newest first (`sent_at`); a delivery update updates its message. `from`/`to`
/// are on `sent_at`; `number` matches the sender or any recipient; paging as `GET /api/calls`.
#[utoipa::path(
    tag = "messages",
    security(("app_api_key" = [])),
    params(PageQuery, RangeQuery, DirectionQuery, MessagesQuery),
    responses(
        (status = 200, description = "A page of messages", body = MessageList),
        (status = 400, description = "`invalid_parameter`: the message names the parameter", body = ErrorBody),
    )
)]
#[get("/api/messages")]
#[tracing::instrument(skip_all, fields(app.id = %tenant.app_id))]
pub(crate) async fn list_messages(
    tenant: Tenant,
    state: Data<ApiState>,
    page: Query<PageQuery>,
    range: Query<RangeQuery>,
    direction: Query<DirectionQuery>,
    messages: Query<MessagesQuery>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let window = page.window()?;
    let (from, to) = range.time_range()?;
    let filter = MessageFilter {
        direction: direction.direction()?,
        status: one_of("status", messages.status.as_deref(), MESSAGE_STATUSES)?,
        from,
        to,
        number: range.number()?,
    };
    let state = state.get_ref();
    let build = |stamp| async move {
        let mut conn = state.conn().await?;
        let page = listing::messages(&mut conn, tenant.app_id, &filter, window).await?;
        let count = listing::count_messages(&mut conn, tenant.app_id, &filter);
        let key = TotalKey::Messages(tenant.app_id, filter.clone());
        let total = state
            .totals
            .total(key, stamp, &window, page.total, count)
            .await?;
        let next = next_cursor(&page.rows, window.limit, |m| (m.sent_at, m.message_id));
        Ok(MessageList {
            messages: page.rows.into_iter().map(Message::from).collect(),
            page: PageMeta::new(total, window, next),
        })
    };
    state.pages.json(&request, tenant.app_id, build).await
}

/// A page of `GET /api/voicemails`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct VoicemailList {
    /// Newest first (`left_at`).
    voicemails: Vec<Voicemail>,
    #[serde(flatten)]
    page: PageMeta,
}

/// List the tenant's voicemails
///
/// Newest first (`left_at`), with their transcript once it arrived. `from`/`to` are on
/// `left_at`; paging as `GET /api/calls`.
#[utoipa::path(
    tag = "messages",
    security(("app_api_key" = [])),
    params(PageQuery, RangeQuery),
    responses(
        (status = 200, description = "A page of voicemails", body = VoicemailList),
        (status = 400, description = "`invalid_parameter`: the message names the parameter", body = ErrorBody),
    )
)]
#[get("/api/voicemails")]
#[tracing::instrument(skip_all, fields(app.id = %tenant.app_id))]
pub(crate) async fn list_voicemails(
    tenant: Tenant,
    state: Data<ApiState>,
    page: Query<PageQuery>,
    range: Query<RangeQuery>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let window = page.window()?;
    let (from, to) = range.time_range()?;
    let filter = MessageFilter {
        from,
        to,
        number: range.number()?,
        ..MessageFilter::default()
    };
    let state = state.get_ref();
    let build = |stamp| async move {
        let mut conn = state.conn().await?;
        let page = listing::voicemails(&mut conn, tenant.app_id, &filter, window).await?;
        let count = listing::count_voicemails(&mut conn, tenant.app_id, &filter);
        let key = TotalKey::Voicemails(tenant.app_id, filter.clone());
        let total = state
            .totals
            .total(key, stamp, &window, page.total, count)
            .await?;
        let next = next_cursor(&page.rows, window.limit, |v| (v.left_at, v.call_id));
        Ok(VoicemailList {
            voicemails: page.rows.into_iter().map(Voicemail::from).collect(),
            page: PageMeta::new(total, window, next),
        })
    };
    state.pages.json(&request, tenant.app_id, build).await
}
