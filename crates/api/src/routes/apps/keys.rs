//! An app's API keys: issue (and rotate), list, revoke (`/internal/apps/{app_id}/api-key(s)`).

use actix_web::HttpResponse;
use actix_web::web::{Bytes, Data, Json, Path, Query};
use actix_web::{delete, get, post};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use db::api_keys::ApiKeyInfo;
use db::apps::App;

use super::{app_id, hash_key};
use crate::auth::InternalAdmin;
use crate::error::{ApiError, ErrorBody};
use crate::keys::NewKey;
use crate::routes::{optional_body, rfc3339, timestamp};
use crate::startup::ApiState;

/// Body of `POST /internal/apps/{app_id}/api-key` (optional: an empty body means the defaults).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct IssueKeyRequest {
    /// Revoke the app's other keys in the same step (rotation). Default false: old keys stay
    /// valid until revoked.
    #[serde(default)]
    revoke_existing: bool,
}

/// Query of `POST /internal/apps/{app_id}/api-key`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct IssueKeyQuery {
    /// Revoke the app's other keys in the same step; overrides the body's `revoke_existing`.
    revoke_existing: Option<bool>,
}

/// An API key as admins see it, never its secret. Times are RFC 3339 UTC.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ApiKey)]
pub(crate) struct KeyView {
    /// The key's public id: the `{key_id}` of `raw_{key_id}_{secret}`.
    key_id: String,
    created_at: String,
    /// When the key last authenticated a request (recorded at most once a minute); `null` if
    /// never.
    last_used_at: Option<String>,
    /// When it was revoked; `null` while it is valid.
    revoked_at: Option<String>,
}

impl From<&ApiKeyInfo> for KeyView {
    fn from(key: &ApiKeyInfo) -> Self {
        KeyView {
            key_id: key.key_id.clone(),
            created_at: timestamp(key.created_at),
            last_used_at: rfc3339(key.last_used_at),
            revoked_at: rfc3339(key.revoked_at),
        }
    }
}

/// A new API key, shown only in this answer.
#[derive(Serialize, ToSchema)]
#[schema(as = IssuedApiKey)]
pub(crate) struct IssuedKey {
    /// The tenant API key, `raw_{key_id}_{secret}`, for the `x-app-api-key` header. Shown only
    /// here: only its bcrypt hash is stored.
    api_key: String,
    /// The key's public id.
    key_id: String,
    /// RFC 3339 UTC.
    created_at: String,
    /// How many of the app's other keys were revoked with it (`revoke_existing`).
    revoked: usize,
}

impl std::fmt::Debug for IssuedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedKey")
            .field("api_key", &crate::routes::redacted(Some(&self.api_key)))
            .field("key_id", &self.key_id)
            .field("created_at", &self.created_at)
            .field("revoked", &self.revoked)
            .finish()
    }
}

/// Issue an API key
///
/// Issues a new key for the app; `revoke_existing=true` (as query or body) revokes its other
/// keys in the same step (rotation). The key is shown only in this answer.
#[utoipa::path(
    tag = "apps",
    security(("internal_api_secret" = [])),
    params(
        ("app_id" = String, Path, description = "The app's id (a UUID; anything else is not found)", format = "uuid"),
        IssueKeyQuery,
    ),
    request_body(content = Option<IssueKeyRequest>, description = "Optional: an empty body means the defaults"),
    responses(
        (status = 201, description = "The new key (shown only here)", body = IssuedKey),
        (status = 400, description = "`invalid_json`: the body is not a valid request; `invalid_parameter`: `revoke_existing` is not a boolean", body = ErrorBody),
        (status = 404, description = "`not_found`: no such app", body = ErrorBody),
    )
)]
#[post("/internal/apps/{app_id}/api-key")]
#[tracing::instrument(skip_all)]
pub(crate) async fn issue_key(
    admin: InternalAdmin,
    state: Data<ApiState>,
    id: Path<String>,
    query: Query<IssueKeyQuery>,
    body: Bytes,
) -> Result<HttpResponse, ApiError> {
    let id = app_id(&id)?;
    let request: IssueKeyRequest = optional_body(&body)?;
    let revoke_existing = query.revoke_existing.unwrap_or(request.revoke_existing);
    let key = NewKey::generate();
    let key_hash = hash_key(&state, &key).await?;
    let mut conn = state.conn().await?;
    let (issued, revoked) = ApiKeyInfo::issue(
        &mut conn,
        id,
        &key.key_id,
        &key_hash,
        revoke_existing,
        &admin.actor,
    )
    .await?
    .ok_or(ApiError::NotFound)?;
    state.keys.forget_rows();
    tracing::info!(app.id = %id, key.id = %issued.key_id, revoked, "API key issued.");
    Ok(HttpResponse::Created().json(IssuedKey {
        api_key: key.key,
        key_id: issued.key_id,
        created_at: timestamp(issued.created_at),
        revoked,
    }))
}

/// The keys of an app.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ApiKeyList)]
pub(crate) struct KeyList {
    /// Newest first, revoked ones included.
    keys: Vec<KeyView>,
}

/// List an app's API keys
///
/// The app's keys, revoked ones included, newest first; never their secret.
#[utoipa::path(
    tag = "apps",
    security(("internal_api_secret" = [])),
    params(("app_id" = String, Path, description = "The app's id (a UUID; anything else is not found)", format = "uuid")),
    responses(
        (status = 200, description = "The app's keys", body = KeyList),
        (status = 404, description = "`not_found`: no such app", body = ErrorBody),
    )
)]
#[get("/internal/apps/{app_id}/api-keys")]
pub(crate) async fn list_keys(
    _admin: InternalAdmin,
    state: Data<ApiState>,
    id: Path<String>,
) -> Result<Json<KeyList>, ApiError> {
    let id = app_id(&id)?;
    let mut conn = state.conn().await?;
    App::find(&mut conn, id).await?.ok_or(ApiError::NotFound)?;
    let keys = ApiKeyInfo::list(&mut conn, id).await?;
    Ok(Json(KeyList {
        keys: keys.iter().map(KeyView::from).collect(),
    }))
}

/// Revoke an API key
///
/// Revokes the key at once on every api replica (each request checks revocation in the
/// database). Revoking a revoked key changes nothing and answers it as it is.
#[utoipa::path(
    tag = "apps",
    security(("internal_api_secret" = [])),
    params(
        ("app_id" = String, Path, description = "The app's id (a UUID; anything else is not found)", format = "uuid"),
        ("key_id" = String, Path, description = "The key's public id (`key_id`)"),
    ),
    responses(
        (status = 200, description = "The key, revoked", body = KeyView),
        (status = 404, description = "`not_found`: the app has no such key (or no such app)", body = ErrorBody),
    )
)]
#[delete("/internal/apps/{app_id}/api-keys/{key_id}")]
#[tracing::instrument(skip_all)]
pub(crate) async fn revoke_key(
    admin: InternalAdmin,
    state: Data<ApiState>,
    path: Path<(String, String)>,
) -> Result<Json<KeyView>, ApiError> {
    let (id, key_id) = path.into_inner();
    let id = app_id(&id)?;
    let mut conn = state.conn().await?;
    let key = ApiKeyInfo::revoke(&mut conn, id, &key_id, &admin.actor)
        .await?
        .ok_or(ApiError::NotFound)?;
    state.keys.forget_rows();
    tracing::info!(app.id = %id, key.id = %key.key_id, "API key revoked.");
    Ok(Json(KeyView::from(&key)))
}

/// `Debug` of each type here that holds a secret, filled with `secret` (for the redaction test).
#[cfg(test)]
pub(super) fn debug_samples(secret: &str) -> Vec<String> {
    vec![format!(
        "{:?}",
        IssuedKey {
            api_key: secret.into(),
            key_id: "k".into(),
            created_at: String::new(),
            revoked: 0,
        }
    )]
}
