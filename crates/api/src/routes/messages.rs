//! `/api/messages` and `/api/voicemails`: a tenant's SMS/MMS and voicemails, with the list
//! conventions of `/api/calls` (`routes::params`).

use actix_web::web::{Data, Query};
use actix_web::{HttpRequest, HttpResponse, get};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::Object;
use utoipa::{IntoParams, ToSchema};

use db::listing::{self, MessageFilter};

use crate::auth::Tenant;
use crate::error::{ApiError, ErrorBody};
use crate::routes::params::{
    DirectionQuery, PageMeta, PageQuery, RangeQuery, next_cursor, one_of, string_enum,
};
use crate::startup::ApiState;
use crate::totals::TotalKey;

/// Values of a message's `status`.
const MESSAGE_STATUSES: &[&str] = &["pending", "success", "failed"];

/// One SMS/MMS as clients see it (shared with push bodies, which carry it as `data`).
pub(crate) use db::views::MessageView as Message;

/// One voicemail as clients see it (shared with push bodies).
pub(crate) use db::views::VoicemailView as Voicemail;

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
