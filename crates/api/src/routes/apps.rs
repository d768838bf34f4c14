//! `/internal/apps`: tenant administration.

use actix_web::HttpResponse;
use actix_web::web::{Data, Json, Path};
use serde::Deserialize;
use serde_json::json;

use db::DbError;
use db::apps::App;
use db::dialpad::{Connection, DialpadSubscription, DialpadWebhook};

use crate::auth::InternalAdmin;
use crate::error::ApiError;
use crate::keys::{NewKey, generate_webhook_secret, validate_webhook_secret};
use crate::routes::rfc3339;
use crate::startup::ApiState;

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
    _admin: InternalAdmin,
    state: Data<ApiState>,
    body: Json<CreateAppRequest>,
) -> Result<HttpResponse, ApiError> {
    let (name, given_secret) = body.validate()?;
    let webhook_secret = given_secret.map_or_else(generate_webhook_secret, str::to_owned);
    let key = NewKey::generate();
    let cost = state.bcrypt_cost;
    let to_hash = key.key.clone();
    let key_hash = tokio::task::spawn_blocking(move || bcrypt::hash(to_hash, cost))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .map_err(|e| ApiError::Internal(e.into()))?;

    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let app = App::create_with_key(
        &mut conn,
        &state.keyring,
        name,
        &webhook_secret,
        &key.key_id,
        &key_hash,
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
