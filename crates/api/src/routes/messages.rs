//! `/api/messages` and `/api/voicemails`: a tenant's SMS/MMS and voicemails, with the list
//! conventions of `/api/calls` (`routes::params`).

use actix_web::HttpResponse;
use actix_web::web::{Data, Query};
use serde_json::json;

use db::DbError;
use db::listing::{self, MessageFilter};
use db::logical_calls::VoicemailRow;
use db::messages::MessageRow;

use crate::auth::Tenant;
use crate::error::ApiError;
use crate::routes::params::{ListQuery, next_cursor, one_of};
use crate::routes::rfc3339;
use crate::startup::ApiState;

fn message_json(message: MessageRow) -> serde_json::Value {
    json!({
        "message_id": message.message_id.to_string(),
        "direction": message.direction,
        "from": message.from_number,
        "to": message.to_numbers,
        "text": message.text,
        "mms": message.mms,
        "mms_url": message.mms_url,
        "status": message.message_status,
        "delivery_result": message.delivery_result,
        "is_internal": message.is_internal,
        "sender_id": message.sender_id.map(|id| id.to_string()),
        "target": message.target,
        "contact": message.contact,
        "sent_at": rfc3339(message.sent_at),
        "status_updated_at": rfc3339(message.status_updated_at),
        "event_count": message.event_count,
    })
}

fn voicemail_json(voicemail: VoicemailRow) -> serde_json::Value {
    json!({
        "call_id": voicemail.call_id.to_string(),
        "logical_call_id": voicemail.logical_call_id.map(|id| id.to_string()),
        "from": voicemail.from_number,
        "to": voicemail.to_number,
        "contact": voicemail.contact,
        "target": voicemail.target,
        "duration": voicemail.duration_ms,
        "link": voicemail.link,
        "recording_id": voicemail.recording_id,
        "transcription_text": voicemail.transcription_text,
        "left_at": rfc3339(voicemail.left_at),
    })
}

/// `GET /api/messages`: the tenant's messages, newest first (`sent_at`); a delivery update
/// updates its message. Filters `direction`, `status` (`pending`, `success`, `failed`),
/// `from`/`to` (on `sent_at`), `number` (sender or any recipient); paging as `/api/calls`.
/// `{"messages", "total", "limit", "offset", "next_cursor"}`.
#[tracing::instrument(skip_all, fields(app.id = %tenant.app_id))]
pub(crate) async fn list_messages(
    tenant: Tenant,
    state: Data<ApiState>,
    query: Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let window = query.window()?;
    let (from, to) = query.time_range()?;
    let filter = MessageFilter {
        direction: query.direction()?,
        status: one_of(
            "status",
            query.status.as_deref(),
            &["pending", "success", "failed"],
        )?,
        from,
        to,
        number: query.number()?,
    };
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let page = listing::messages(&mut conn, tenant.app_id, &filter, window).await?;
    let next = next_cursor(&page.rows, window.limit, |m| (m.sent_at, m.message_id));
    Ok(HttpResponse::Ok().json(json!({
        "messages": page.rows.into_iter().map(message_json).collect::<Vec<_>>(),
        "total": page.total,
        "limit": window.limit,
        "offset": window.offset,
        "next_cursor": next,
    })))
}

/// `GET /api/voicemails`: the tenant's voicemails, newest first (`left_at`), with their
/// transcript once it arrived. Filters `from`/`to` (on `left_at`), `number`; paging as
/// `/api/calls`. `{"voicemails", "total", "limit", "offset", "next_cursor"}`.
#[tracing::instrument(skip_all, fields(app.id = %tenant.app_id))]
pub(crate) async fn list_voicemails(
    tenant: Tenant,
    state: Data<ApiState>,
    query: Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let window = query.window()?;
    let (from, to) = query.time_range()?;
    let filter = MessageFilter {
        from,
        to,
        number: query.number()?,
        ..MessageFilter::default()
    };
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let page = listing::voicemails(&mut conn, tenant.app_id, &filter, window).await?;
    let next = next_cursor(&page.rows, window.limit, |v| (v.left_at, v.call_id));
    Ok(HttpResponse::Ok().json(json!({
        "voicemails": page.rows.into_iter().map(voicemail_json).collect::<Vec<_>>(),
        "total": page.total,
        "limit": window.limit,
        "offset": window.offset,
        "next_cursor": next,
    })))
}
