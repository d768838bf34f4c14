//! An app's audit log (`/internal/apps/{app_id}/audit`).

use actix_web::get;
use actix_web::web::{Data, Json, Path, Query};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use db::apps::App;
use db::audit::{self, AuditEntry};

use super::app_id;
use crate::auth::InternalAdmin;
use crate::error::{ApiError, ErrorBody};
use crate::routes::{params, timestamp};
use crate::startup::ApiState;

/// Query of `GET /internal/apps/{app_id}/audit`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditQuery {
    /// A previous page's `next_cursor`: the entries before it.
    cursor: Option<String>,
}

/// One change to an app, as recorded. Never holds a secret.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = AuditEntry)]
pub(crate) struct AuditEntryView {
    /// The entry's id (an integer, as a string).
    id: String,
    /// `app.created`, `app.renamed`, `app.deactivated`, `app.reactivated`, `api_key.issued` or
    /// `api_key.revoked`.
    action: String,
    /// Who made the change: `admin@{client address}`.
    actor: String,
    /// What changed (never a secret), e.g. `{"key_id": ...}` or `{"from": ..., "to": ...}`.
    #[schema(value_type = Object)]
    details: Value,
    /// RFC 3339 UTC.
    created_at: String,
}

impl From<&AuditEntry> for AuditEntryView {
    fn from(entry: &AuditEntry) -> Self {
        AuditEntryView {
            id: entry.id.to_string(),
            action: entry.action.clone(),
            actor: entry.actor.clone(),
            details: entry.details.clone(),
            created_at: timestamp(entry.created_at),
        }
    }
}

/// A page of an app's audit log.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AuditLog {
    /// Newest first, at most 100.
    entries: Vec<AuditEntryView>,
    /// The `cursor` of the next page; `null` when this page is the last.
    next_cursor: Option<String>,
}

/// Get an app's audit log
///
/// Every change made to the app (creation, renames, (de)activation, keys issued and revoked),
/// newest first, 100 per page; pass `next_cursor` as `cursor` for the next page.
#[utoipa::path(
    tag = "apps",
    security(("internal_api_secret" = [])),
    params(
        ("app_id" = String, Path, description = "The app's id (a UUID; anything else is not found)", format = "uuid"),
        AuditQuery,
    ),
    responses(
        (status = 200, description = "A page of the audit log", body = AuditLog),
        (status = 400, description = "`invalid_parameter`: `cursor` is not a `next_cursor`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such app", body = ErrorBody),
    )
)]
#[get("/internal/apps/{app_id}/audit")]
pub(crate) async fn audit_log(
    _admin: InternalAdmin,
    state: Data<ApiState>,
    id: Path<String>,
    query: Query<AuditQuery>,
) -> Result<Json<AuditLog>, ApiError> {
    const PAGE: i64 = 100;
    let id = app_id(&id)?;
    let before = params::id_cursor(query.cursor.as_deref())?;
    let mut conn = state.conn().await?;
    App::find(&mut conn, id).await?.ok_or(ApiError::NotFound)?;
    let entries = audit::list(&mut conn, id, before, PAGE).await?;
    let next = (entries.len() as i64 == PAGE)
        .then(|| entries.last().map(|e| e.id.to_string()))
        .flatten();
    Ok(Json(AuditLog {
        entries: entries.iter().map(AuditEntryView::from).collect(),
        next_cursor: next,
    }))
}
