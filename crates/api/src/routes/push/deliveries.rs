//! A subscription's attempt log (`GET /api/webhooks/subscriptions/{id}/deliveries`) and resending
//! a delivery (`POST /api/webhooks/deliveries/{id}/resend`).

use actix_web::web::{Data, Json, Path, Query};
use actix_web::{HttpResponse, get, post};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use db::push::{self, AttemptRecord, PushSubscription};

use super::subscription_id;
use crate::auth::Tenant;
use crate::error::{ApiError, ErrorBody};
use crate::routes::timestamp;
use crate::startup::ApiState;

/// Attempts per page.
const PAGE: i64 = 100;

/// Query of the attempt log.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AttemptsQuery {
    /// A previous page's `next_cursor`: the attempts before it.
    cursor: Option<String>,
}

/// One delivery attempt. Times are RFC 3339 UTC.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WebhookDeliveryAttempt)]
pub(crate) struct AttemptView {
    /// The delivery (resend it with `POST /api/webhooks/deliveries/{delivery_id}/resend`).
    delivery_id: String,
    /// The event's id: its `webhook-id`.
    event_id: String,
    event: String,
    /// 1 for the first attempt of the delivery.
    attempt: i32,
    /// The receiver's status code; `null` when it did not answer (timeout, connection error).
    status_code: Option<i32>,
    /// Milliseconds.
    latency_ms: i32,
    error: Option<String>,
    attempted_at: String,
    /// The delivery now: `pending` (a retry is due), `delivered` or `failed` (retries spent).
    delivery_status: String,
}

impl From<AttemptRecord> for AttemptView {
    fn from(a: AttemptRecord) -> Self {
        AttemptView {
            delivery_id: a.delivery_id.to_string(),
            event_id: a.event_id.to_string(),
            event: a.event_type,
            attempt: a.attempt,
            status_code: a.status_code,
            latency_ms: a.latency_ms,
            error: a.error,
            attempted_at: timestamp(a.attempted_at),
            delivery_status: a.delivery_status,
        }
    }
}

/// A page of the attempt log.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WebhookDeliveryAttempts)]
pub(crate) struct AttemptList {
    /// Newest first, 100 per page.
    attempts: Vec<AttemptView>,
    /// Pass as `cursor` for the next page; `null` on the last.
    next_cursor: Option<String>,
}

/// List delivery attempts
///
/// The subscription's delivery attempts, newest first: event, attempt, the receiver's status
/// code, latency, error and time.
#[utoipa::path(
    tag = "push",
    security(("app_api_key" = [])),
    params(("id" = String, Path, description = "The subscription's id"), AttemptsQuery),
    responses(
        (status = 200, description = "A page of attempts", body = AttemptList),
        (status = 400, description = "`invalid_parameter`: `cursor`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such subscription for this app", body = ErrorBody),
    )
)]
#[get("/api/webhooks/subscriptions/{id}/deliveries")]
pub(crate) async fn list_attempts(
    tenant: Tenant,
    state: Data<ApiState>,
    id: Path<String>,
    query: Query<AttemptsQuery>,
) -> Result<Json<AttemptList>, ApiError> {
    let id = subscription_id(&id)?;
    let before = match query.cursor.as_deref() {
        None => None,
        Some(cursor) => Some(
            cursor
                .parse::<i64>()
                .map_err(|_| ApiError::InvalidParameter {
                    name: "cursor",
                    message: "cursor must be a previous page's next_cursor".into(),
                })?,
        ),
    };
    let mut conn = state.conn().await?;
    PushSubscription::find(&mut conn, tenant.app_id, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let mut rows = push::attempts(&mut conn, tenant.app_id, id, before, PAGE + 1).await?;
    let next_cursor = (rows.len() > PAGE as usize).then(|| {
        rows.truncate(PAGE as usize);
        rows.last().map(|a| a.id.to_string())
    });
    Ok(Json(AttemptList {
        attempts: rows.into_iter().map(AttemptView::from).collect(),
        next_cursor: next_cursor.flatten(),
    }))
}

/// A delivery queued again.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ResentWebhookDelivery)]
pub(crate) struct Resent {
    delivery_id: String,
    /// Always `pending`: sent as soon as a delivery loop is free.
    status: &'static str,
}

/// Resend a delivery
///
/// Queues the delivery again, now, with the same `webhook-id` and body and a fresh retry
/// schedule; its subscription must be active for it to be sent.
#[utoipa::path(
    tag = "push",
    security(("app_api_key" = [])),
    params(("id" = String, Path, description = "The delivery's id (`delivery_id` in the attempt log)")),
    responses(
        (status = 202, description = "Queued", body = Resent),
        (status = 404, description = "`not_found`: no such delivery for this app", body = ErrorBody),
    )
)]
#[post("/api/webhooks/deliveries/{id}/resend")]
#[tracing::instrument(skip_all, fields(app.id = %tenant.app_id))]
pub(crate) async fn resend_delivery(
    tenant: Tenant,
    state: Data<ApiState>,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let delivery_id: i64 = id.parse().map_err(|_| ApiError::NotFound)?;
    let mut conn = state.conn().await?;
    if !push::resend(&mut conn, tenant.app_id, delivery_id).await? {
        return Err(ApiError::NotFound);
    }
    Ok(HttpResponse::Accepted().json(Resent {
        delivery_id: delivery_id.to_string(),
        status: "pending",
    }))
}
