//! `/internal/apps`: tenant administration.

use actix_web::HttpResponse;
use actix_web::web;
use actix_web::web::{Bytes, Data, Json, Path, Query};
use serde::Deserialize;
use serde_json::json;
use utoipa_actix_web::service_config::ServiceConfig;

use db::DbError;
use db::apps::{ApiKeyInfo, App};
use db::audit;
use db::dialpad::{Connection, DialpadSubscription, DialpadWebhook};
use uuid::Uuid;

use crate::auth::InternalAdmin;
use crate::error::ApiError;
use crate::keys::{NewKey, generate_webhook_secret, validate_webhook_secret};
use crate::routes::{params, rfc3339};
use crate::startup::ApiState;

/// This module's routes (`routes::configure`).
pub(crate) fn configure(cfg: &mut ServiceConfig) {
    cfg.map(|cfg| {
        cfg.route("/internal/apps", web::post().to(create_app))
            .route("/internal/apps", web::get().to(list_apps))
            .route("/internal/apps/{app_id}", web::get().to(get_app))
            .route("/internal/apps/{app_id}", web::patch().to(update_app))
            .route("/internal/apps/{app_id}/api-key", web::post().to(issue_key))
            .route("/internal/apps/{app_id}/api-keys", web::get().to(list_keys))
            .route(
                "/internal/apps/{app_id}/api-keys/{key_id}",
                web::delete().to(revoke_key),
            )
            .route("/internal/apps/{app_id}/audit", web::get().to(audit_log))
    });
}

/// Body of `POST /internal/apps`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateAppRequest {
    /// 1–200 characters.
    name: String,
    /// The inbound webhook secret to use; generated when absent. 16–255 printable ASCII
    /// characters (Dialpad wants a single-line string).
    webhook_secret: Option<String>,
}

impl CreateAppRequest {
    fn validate(&self) -> Result<(&str, Option<&str>), ApiError> {
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(ApiError::InvalidRequest(
                "name: must be 1 to 200 characters".into(),
            ));
        }
        if let Some(secret) = &self.webhook_secret {
            validate_webhook_secret(secret)?;
        }
        Ok((name, self.webhook_secret.as_deref()))
    }
}

/// `POST /internal/apps`: creates a tenant with its first API key and inbound webhook secret.
///
/// Answers `201 {"app_id", "name", "api_key", "webhook_path", "webhook_secret", "message"}`;
/// the key and the secret are shown only here.
#[tracing::instrument(skip_all)]
pub(crate) async fn create_app(
    admin: InternalAdmin,
    state: Data<ApiState>,
    body: Json<CreateAppRequest>,
) -> Result<HttpResponse, ApiError> {
    let (name, given_secret) = body.validate()?;
    let webhook_secret = given_secret.map_or_else(generate_webhook_secret, str::to_owned);
    let key = NewKey::generate();
    let key_hash = hash_key(&state, &key).await?;

    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let app = App::create_with_key(
        &mut conn,
        &state.keyring,
        name,
        &webhook_secret,
        &key.key_id,
        &key_hash,
        &admin.actor,
    )
    .await?;
    tracing::info!(app.id = %app.id, "App created.");
    Ok(HttpResponse::Created().json(json!({
        "app_id": app.id,
        "name": app.name,
        "api_key": key.key,
        "webhook_path": format!("/webhooks/dialpad/{}", app.id),
        "webhook_secret": webhook_secret,
        "message": "Store api_key and webhook_secret now: they are not shown again. Next: \
                    connect the app to Dialpad (GET /auth/dialpad/connect?app_id=... or POST \
                    /internal/connections?app_id=...), then POST \
                    /internal/webhooks/create?app_id=... registers webhook_path at Dialpad, \
                    signed with webhook_secret.",
    })))
}

/// The bcrypt hash of a new key, computed off the async executor (it is deliberately slow).
async fn hash_key(state: &ApiState, key: &NewKey) -> Result<String, ApiError> {
    let (cost, to_hash) = (state.bcrypt_cost, key.key.clone());
    tokio::task::spawn_blocking(move || bcrypt::hash(to_hash, cost))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .map_err(|e| ApiError::Internal(e.into()))
}

fn app_id(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound)
}

fn app_json(app: &App) -> serde_json::Value {
    json!({
        "app_id": app.id,
        "name": app.name,
        "active": app.active,
        "created_at": rfc3339(Some(app.created_at)),
        "updated_at": rfc3339(Some(app.updated_at)),
    })
}

/// Query of `GET /internal/apps`.
#[derive(Debug, Deserialize)]
pub(crate) struct ListAppsQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

/// `GET /internal/apps?limit=&cursor=`: apps, oldest first: `{"apps": [{"app_id", "name",
/// "active", "created_at", "updated_at"}], "next_cursor"}` (`limit` 1–200, default 50).
pub(crate) async fn list_apps(
    _admin: InternalAdmin,
    state: Data<ApiState>,
    query: Query<ListAppsQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = params::limit(query.limit.as_deref())?;
    let after = query
        .cursor
        .as_deref()
        .map(|raw| -> Result<_, ApiError> {
            let bad = || ApiError::InvalidParameter {
                name: "cursor",
                message: "must be a next_cursor from a previous page".into(),
            };
            let (at, id) = raw.split_once('_').ok_or_else(bad)?;
            let at = at
                .parse()
                .ok()
                .and_then(chrono::DateTime::from_timestamp_micros)
                .ok_or_else(bad)?;
            Ok((at, id.parse().map_err(|_| bad())?))
        })
        .transpose()?;
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let apps = App::list(&mut conn, after, limit).await?;
    let next = (apps.len() as i64 == limit)
        .then(|| apps.last())
        .flatten()
        .map(|app| format!("{}_{}", app.created_at.timestamp_micros(), app.id));
    Ok(HttpResponse::Ok().json(json!({
        "apps": apps.iter().map(app_json).collect::<Vec<_>>(),
        "next_cursor": next,
    })))
}

/// Body of `PATCH /internal/apps/{app_id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateAppRequest {
    /// 1–200 characters.
    name: Option<String>,
    /// `false` deactivates the app: its keys stop working at once (its data is kept).
    active: Option<bool>,
}

/// `PATCH /internal/apps/{app_id}` `{"name"?, "active"?}`: renames and/or (de)activates the
/// app; each change is audited. `200` with the app; 404 when unknown.
#[tracing::instrument(skip_all)]
pub(crate) async fn update_app(
    admin: InternalAdmin,
    state: Data<ApiState>,
    id: Path<String>,
    body: Json<UpdateAppRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = app_id(&id)?;
    let name = body.name.as_deref().map(str::trim);
    if name.is_some_and(|name| name.is_empty() || name.chars().count() > 200) {
        return Err(ApiError::InvalidRequest(
            "name: must be 1 to 200 characters".into(),
        ));
    }
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let app = App::update(&mut conn, id, name, body.active, &admin.actor)
        .await?
        .ok_or(ApiError::NotFound)?;
    state.keys.forget_rows();
    tracing::info!(app.id = %app.id, app.active = app.active, "App updated.");
    Ok(HttpResponse::Ok().json(app_json(&app)))
}

/// Body of `POST /internal/apps/{app_id}/api-key` (optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IssueKeyRequest {
    /// Revoke the app's other keys in the same step (rotation). Default false: old keys stay
    /// valid until revoked.
    #[serde(default)]
    revoke_existing: bool,
}

#[derive(Debug, Deserialize)]
pub(crate) struct IssueKeyQuery {
    revoke_existing: Option<bool>,
}

fn key_json(key: &ApiKeyInfo) -> serde_json::Value {
    json!({
        "key_id": key.key_id,
        "created_at": rfc3339(Some(key.created_at)),
        "last_used_at": rfc3339(key.last_used_at),
        "revoked_at": rfc3339(key.revoked_at),
    })
}

/// `POST /internal/apps/{app_id}/api-key` (`revoke_existing=true` as query or body): issues a
/// new key. `201 {"api_key", "key_id", "created_at", "revoked"}`: the key is shown only here;
/// `revoked` counts the keys revoked with it. 404 when the app is unknown.
#[tracing::instrument(skip_all)]
pub(crate) async fn issue_key(
    admin: InternalAdmin,
    state: Data<ApiState>,
    id: Path<String>,
    query: Query<IssueKeyQuery>,
    body: Bytes,
) -> Result<HttpResponse, ApiError> {
    let id = app_id(&id)?;
    let request: IssueKeyRequest = if body.iter().all(u8::is_ascii_whitespace) {
        IssueKeyRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::InvalidJson(e.to_string()))?
    };
    let revoke_existing = query.revoke_existing.unwrap_or(request.revoke_existing);
    let key = NewKey::generate();
    let key_hash = hash_key(&state, &key).await?;
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
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
    Ok(HttpResponse::Created().json(json!({
        "api_key": key.key,
        "key_id": issued.key_id,
        "created_at": rfc3339(Some(issued.created_at)),
        "revoked": revoked,
    })))
}

/// `GET /internal/apps/{app_id}/api-keys`: the app's keys, newest first, never their secret:
/// `{"keys": [{"key_id", "created_at", "last_used_at", "revoked_at"}]}`. 404 unknown app.
pub(crate) async fn list_keys(
    _admin: InternalAdmin,
    state: Data<ApiState>,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = app_id(&id)?;
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    App::find(&mut conn, id).await?.ok_or(ApiError::NotFound)?;
    let keys = ApiKeyInfo::list(&mut conn, id).await?;
    Ok(HttpResponse::Ok().json(json!({
        "keys": keys.iter().map(key_json).collect::<Vec<_>>(),
    })))
}

/// `DELETE /internal/apps/{app_id}/api-keys/{key_id}`: revokes the key, at once on every api
/// replica (each request checks revocation in the database). `200` with the key (already
/// revoked: unchanged); 404 when the app has no such key.
#[tracing::instrument(skip_all)]
pub(crate) async fn revoke_key(
    admin: InternalAdmin,
    state: Data<ApiState>,
    path: Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, key_id) = path.into_inner();
    let id = app_id(&id)?;
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let key = ApiKeyInfo::revoke(&mut conn, id, &key_id, &admin.actor)
        .await?
        .ok_or(ApiError::NotFound)?;
    state.keys.forget_rows();
    tracing::info!(app.id = %id, key.id = %key.key_id, "API key revoked.");
    Ok(HttpResponse::Ok().json(key_json(&key)))
}

/// Query of `GET /internal/apps/{app_id}/audit`.
#[derive(Debug, Deserialize)]
pub(crate) struct AuditQuery {
    cursor: Option<String>,
}

/// `GET /internal/apps/{app_id}/audit?cursor=`: the app's audit log, newest first, 100 per
/// page: `{"entries": [{"id", "action", "actor", "details", "created_at"}], "next_cursor"}`.
pub(crate) async fn audit_log(
    _admin: InternalAdmin,
    state: Data<ApiState>,
    id: Path<String>,
    query: Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    const PAGE: i64 = 100;
    let id = app_id(&id)?;
    let before = params::id_cursor(query.cursor.as_deref())?;
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    App::find(&mut conn, id).await?.ok_or(ApiError::NotFound)?;
    let entries = audit::list(&mut conn, id, before, PAGE).await?;
    let next = (entries.len() as i64 == PAGE)
        .then(|| entries.last().map(|e| e.id.to_string()))
        .flatten();
    Ok(HttpResponse::Ok().json(json!({
        "entries": entries.iter().map(|e| json!({
            "id": e.id.to_string(),
            "action": e.action,
            "actor": e.actor,
            "details": e.details,
            "created_at": rfc3339(Some(e.created_at)),
        })).collect::<Vec<_>>(),
        "next_cursor": next,
    })))
}

/// `GET /internal/apps/{app_id}`: the app with its Dialpad connection, webhooks and
/// subscriptions (never a secret or token).
///
/// Answers `200 {"app_id", "name", "active", "created_at", "updated_at", "dialpad":
/// {"connection": null | {"auth_type", "environment", "status", "last_error",
/// "dialpad_company_id", "scopes", "token_expires_at", "refreshed_at", "connected_at"},
/// "webhooks": [...], "subscriptions": [...]}}`; 404 `not_found` for an unknown app.
#[tracing::instrument(skip_all, fields(app.id = %app_id))]
pub(crate) async fn get_app(
    _admin: InternalAdmin,
    state: Data<ApiState>,
    app_id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let app_id = app_id.parse().map_err(|_| ApiError::NotFound)?;
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let app = App::find(&mut conn, app_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let connection = Connection::find(&mut conn, app_id).await?;
    let webhooks = DialpadWebhook::list_live(&mut conn, app_id).await?;
    let subscriptions = DialpadSubscription::list_live(&mut conn, app_id).await?;
    Ok(HttpResponse::Ok().json(json!({
        "app_id": app.id,
        "name": app.name,
        "active": app.active,
        "created_at": rfc3339(Some(app.created_at)),
        "updated_at": rfc3339(Some(app.updated_at)),
        "dialpad": {
            "connection": connection.as_ref().map(connection_json),
            "webhooks": webhooks.iter().map(super::dialpad::webhook_json).collect::<Vec<_>>(),
            "subscriptions": subscriptions
                .iter()
                .map(super::dialpad::subscription_json)
                .collect::<Vec<_>>(),
        },
    })))
}

/// A connection as admins see it: its state, never its tokens.
pub(crate) fn connection_json(connection: &Connection) -> serde_json::Value {
    json!({
        "auth_type": connection.auth_type,
        "environment": connection.environment,
        "status": connection.status,
        "last_error": connection.last_error,
        "dialpad_company_id": connection.dialpad_company_id.map(|id| id.to_string()),
        "scopes": connection.scopes,
        "token_expires_at": rfc3339(connection.token_expires_at),
        "refreshed_at": rfc3339(connection.refreshed_at),
        "connected_at": rfc3339(Some(connection.created_at)),
    })
}
