//! Create, list, get and update apps (`/internal/apps`, `/internal/apps/{app_id}`).

use actix_web::HttpResponse;
use actix_web::web::{Data, Json, Path, Query};
use actix_web::{get, patch, post};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use db::apps::App;
use db::dialpad::{Connection, DialpadSubscription, DialpadWebhook};
use uuid::Uuid;

use super::{app_id, hash_key};
use crate::auth::InternalAdmin;
use crate::error::{ApiError, ErrorBody};
use crate::keys::{NewKey, generate_webhook_secret, validate_webhook_secret};
use crate::routes::dialpad::{SubscriptionView, WebhookView};
use crate::routes::{JsonObject, params, rfc3339, timestamp};
use crate::startup::ApiState;

/// Body of `POST /internal/apps`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateAppRequest {
    /// The app's name, 1–200 characters (trimmed).
    #[schema(min_length = 1, max_length = 200, example = "Acme Support")]
    name: String,
    /// The inbound webhook secret to use; generated when absent. 16–255 printable ASCII
    /// characters, no spaces (Dialpad wants a single-line string). A secret: echoed once in
    /// the `201` answer, never returned again.
    #[schema(min_length = 16, max_length = 255)]
    webhook_secret: Option<String>,
}

impl std::fmt::Debug for CreateAppRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateAppRequest")
            .field("name", &self.name)
            .field(
                "webhook_secret",
                &crate::routes::redacted(self.webhook_secret.as_ref()),
            )
            .finish()
    }
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

/// A new app with its first API key and webhook secret, shown only in this answer.
#[derive(Serialize, ToSchema)]
pub(crate) struct CreatedApp {
    /// The app's id (a UUID).
    #[schema(value_type = String, format = "uuid")]
    app_id: Uuid,
    name: String,
    /// The tenant API key, `raw_{key_id}_{secret}`, for the `x-app-api-key` header. Shown only
    /// here: only its bcrypt hash is stored.
    api_key: String,
    /// The app's ingest route, `/webhooks/dialpad/{app_id}`, on the ingest service.
    webhook_path: String,
    /// The inbound webhook secret Dialpad signs the app's events with (the given one, or a
    /// generated one). Shown only here.
    webhook_secret: String,
    /// What to store and the next onboarding steps.
    message: String,
}

impl std::fmt::Debug for CreatedApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedApp")
            .field("app_id", &self.app_id)
            .field("name", &self.name)
            .field("api_key", &crate::routes::redacted(Some(&self.api_key)))
            .field("webhook_path", &self.webhook_path)
            .field(
                "webhook_secret",
                &crate::routes::redacted(Some(&self.webhook_secret)),
            )
            .field("message", &self.message)
            .finish()
    }
}

/// Create an app
///
/// Creates a tenant with its first API key and its inbound webhook secret (given, or generated:
/// 43 characters). The key and the secret are shown only in this answer. Next: connect the app
/// to Dialpad (`GET /auth/dialpad/connect` or `POST /internal/connections`), then
/// `POST /internal/webhooks/create` and `POST /internal/subscriptions`.
#[utoipa::path(
    tag = "apps",
    security(("internal_api_secret" = [])),
    request_body = CreateAppRequest,
    responses(
        (status = 201, description = "The app, its API key and webhook secret (shown only here)", body = CreatedApp),
        (status = 400, description = "`invalid_request`: the message names the field (`name`, `webhook_secret`); `invalid_json`: the body is not a valid request (unknown fields included)", body = ErrorBody),
    )
)]
#[post("/internal/apps")]
#[tracing::instrument(skip_all)]
pub(crate) async fn create_app(
    admin: InternalAdmin,
    state: Data<ApiState>,
    body: JsonObject<CreateAppRequest>,
) -> Result<HttpResponse, ApiError> {
    let (name, given_secret) = body.validate()?;
    let webhook_secret = given_secret.map_or_else(generate_webhook_secret, str::to_owned);
    let key = NewKey::generate();
    let key_hash = hash_key(&state, &key).await?;

    let mut conn = state.conn().await?;
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
    Ok(HttpResponse::Created().json(CreatedApp {
        app_id: app.id,
        name: app.name,
        api_key: key.key,
        webhook_path: format!("/webhooks/dialpad/{}", app.id),
        webhook_secret,
        message: "Store api_key and webhook_secret now: they are not shown again. Next: \
                  connect the app to Dialpad (GET /auth/dialpad/connect?app_id=... or POST \
                  /internal/connections?app_id=...), then POST \
                  /internal/webhooks/create?app_id=... registers webhook_path at Dialpad, \
                  signed with webhook_secret."
            .into(),
    }))
}

/// An app (tenant). Times are RFC 3339 UTC.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = App)]
pub(crate) struct AppView {
    /// The app's id (a UUID).
    #[schema(value_type = String, format = "uuid")]
    app_id: Uuid,
    name: String,
    /// `false` once deactivated: its API keys are refused, its data is kept.
    active: bool,
    created_at: String,
    updated_at: String,
}

impl From<&App> for AppView {
    fn from(app: &App) -> Self {
        AppView {
            app_id: app.id,
            name: app.name.clone(),
            active: app.active,
            created_at: timestamp(app.created_at),
            updated_at: timestamp(app.updated_at),
        }
    }
}

/// Query of `GET /internal/apps`. Parameters are read as text so that an error can name the
/// parameter.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListAppsQuery {
    /// Apps per page, 1–200 (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    limit: Option<String>,
    /// A previous page's `next_cursor` (opaque): the apps after it.
    cursor: Option<String>,
}

/// A page of `GET /internal/apps`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AppList {
    /// Oldest first (`created_at`).
    apps: Vec<AppView>,
    /// The `cursor` of the next page; `null` when this page is the last.
    next_cursor: Option<String>,
}

/// List the apps
///
/// Every app, active or not, oldest first. Paging: pass `next_cursor` as `cursor` for the next
/// page (`null` on the last).
#[utoipa::path(
    tag = "apps",
    security(("internal_api_secret" = [])),
    params(ListAppsQuery),
    responses(
        (status = 200, description = "A page of apps", body = AppList),
        (status = 400, description = "`invalid_parameter`: the message names the parameter (`limit`, `cursor`)", body = ErrorBody),
    )
)]
#[get("/internal/apps")]
pub(crate) async fn list_apps(
    _admin: InternalAdmin,
    state: Data<ApiState>,
    query: Query<ListAppsQuery>,
) -> Result<Json<AppList>, ApiError> {
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
            // Only a time Postgres can hold: a forged one past its range would fail the query.
            let at = at
                .parse::<i64>()
                .ok()
                .and_then(chrono::DateTime::from_timestamp_micros)
                .filter(|at| domain::json::storable_time(at.timestamp_millis()).is_some())
                .ok_or_else(bad)?;
            Ok((at, id.parse().map_err(|_| bad())?))
        })
        .transpose()?;
    let mut conn = state.conn().await?;
    let apps = App::list(&mut conn, after, limit).await?;
    let next = (apps.len() as i64 == limit)
        .then(|| apps.last())
        .flatten()
        .map(|app| format!("{}_{}", app.created_at.timestamp_micros(), app.id));
    Ok(Json(AppList {
        apps: apps.iter().map(AppView::from).collect(),
        next_cursor: next,
    }))
}

/// Body of `PATCH /internal/apps/{app_id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateAppRequest {
    /// The new name, 1–200 characters (trimmed).
    #[schema(min_length = 1, max_length = 200)]
    name: Option<String>,
    /// `false` deactivates the app: its keys stop working at once (its data is kept); `true`
    /// reactivates it.
    active: Option<bool>,
}

/// Update an app
///
/// Renames and/or (de)activates the app; each change is audited. Deactivating refuses its API
/// keys at once, on every replica; its data is kept.
#[utoipa::path(
    tag = "apps",
    security(("internal_api_secret" = [])),
    params(("app_id" = String, Path, description = "The app's id (a UUID; anything else is not found)", format = "uuid")),
    request_body = UpdateAppRequest,
    responses(
        (status = 200, description = "The app as updated", body = AppView),
        (status = 400, description = "`invalid_request`: the message names the field (`name`); `invalid_json`: the body is not a valid request (unknown fields included)", body = ErrorBody),
        (status = 404, description = "`not_found`: no such app", body = ErrorBody),
    )
)]
#[patch("/internal/apps/{app_id}")]
#[tracing::instrument(skip_all)]
pub(crate) async fn update_app(
    admin: InternalAdmin,
    state: Data<ApiState>,
    id: Path<String>,
    body: JsonObject<UpdateAppRequest>,
) -> Result<Json<AppView>, ApiError> {
    let id = app_id(&id)?;
    let name = body.name.as_deref().map(str::trim);
    if name.is_some_and(|name| name.is_empty() || name.chars().count() > 200) {
        return Err(ApiError::InvalidRequest(
            "name: must be 1 to 200 characters".into(),
        ));
    }
    let mut conn = state.conn().await?;
    let app = App::update(&mut conn, id, name, body.active, &admin.actor)
        .await?
        .ok_or(ApiError::NotFound)?;
    state.keys.forget_rows();
    tracing::info!(app.id = %app.id, app.active = app.active, "App updated.");
    Ok(Json(AppView::from(&app)))
}

/// An app's Dialpad connection as admins see it: its state, never its tokens. Times are
/// RFC 3339 UTC.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = DialpadConnection)]
pub(crate) struct ConnectionView {
    /// `oauth` or `api_key`.
    auth_type: String,
    /// `sandbox` or `production`.
    environment: String,
    /// `active`, or `reauth_required` once Dialpad refused to refresh its OAuth token (connect
    /// it again).
    status: String,
    /// Why it needs re-authorisation, when it does.
    last_error: Option<String>,
    /// Dialpad's company id (int64, as a string); `null` when Dialpad would not tell (only
    /// company admins may read it).
    dialpad_company_id: Option<String>,
    /// The OAuth scopes granted, space-separated.
    scopes: Option<String>,
    /// When the OAuth access token expires (it is refreshed before); `null` for an API key.
    token_expires_at: Option<String>,
    /// When the OAuth token was last refreshed.
    refreshed_at: Option<String>,
    /// When the app was (last) connected.
    connected_at: String,
}

impl From<&Connection> for ConnectionView {
    fn from(connection: &Connection) -> Self {
        ConnectionView {
            auth_type: connection.auth_type.clone(),
            environment: connection.environment.clone(),
            status: connection.status.clone(),
            last_error: connection.last_error.clone(),
            dialpad_company_id: connection.dialpad_company_id.map(|id| id.to_string()),
            scopes: connection.scopes.clone(),
            token_expires_at: rfc3339(connection.token_expires_at),
            refreshed_at: rfc3339(connection.refreshed_at),
            connected_at: timestamp(connection.created_at),
        }
    }
}

/// An app's setup at Dialpad.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AppDialpad {
    /// `null` when the app is not connected (it then uses the server's `DIALPAD_API_KEY`, if
    /// set).
    connection: Option<ConnectionView>,
    /// Live webhooks, newest first.
    webhooks: Vec<WebhookView>,
    /// Live subscriptions, newest first.
    subscriptions: Vec<SubscriptionView>,
}

/// An app with its Dialpad setup.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AppWithDialpad {
    #[serde(flatten)]
    app: AppView,
    /// Its connection, webhooks and subscriptions (never a secret or token).
    dialpad: AppDialpad,
}

/// Get an app
///
/// The app with its Dialpad connection, live webhooks and subscriptions; never a secret or a
/// token.
#[utoipa::path(
    tag = "apps",
    security(("internal_api_secret" = [])),
    params(("app_id" = String, Path, description = "The app's id (a UUID; anything else is not found)", format = "uuid")),
    responses(
        (status = 200, description = "The app", body = AppWithDialpad),
        (status = 404, description = "`not_found`: no such app", body = ErrorBody),
    )
)]
#[get("/internal/apps/{app_id}")]
#[tracing::instrument(skip_all, fields(app.id = %app_id))]
pub(crate) async fn get_app(
    _admin: InternalAdmin,
    state: Data<ApiState>,
    app_id: Path<String>,
) -> Result<Json<AppWithDialpad>, ApiError> {
    let app_id = app_id.parse().map_err(|_| ApiError::NotFound)?;
    let mut conn = state.conn().await?;
    let app = App::find(&mut conn, app_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let connection = Connection::find(&mut conn, app_id).await?;
    let webhooks = DialpadWebhook::list_live(&mut conn, app_id).await?;
    let subscriptions = DialpadSubscription::list_live(&mut conn, app_id).await?;
    Ok(Json(AppWithDialpad {
        app: AppView::from(&app),
        dialpad: AppDialpad {
            connection: connection.as_ref().map(ConnectionView::from),
            webhooks: webhooks.iter().map(WebhookView::from).collect(),
            subscriptions: subscriptions.iter().map(SubscriptionView::from).collect(),
        },
    }))
}

/// `Debug` of each type here that holds a secret, filled with `secret` (for the redaction test).
#[cfg(test)]
pub(super) fn debug_samples(secret: &str) -> Vec<String> {
    vec![
        format!(
            "{:?}",
            CreateAppRequest {
                name: "Acme".into(),
                webhook_secret: Some(secret.into()),
            }
        ),
        format!(
            "{:?}",
            CreatedApp {
                app_id: Uuid::nil(),
                name: "Acme".into(),
                api_key: secret.into(),
                webhook_path: "/webhooks/dialpad/x".into(),
                webhook_secret: secret.into(),
                message: String::new(),
            }
        ),
    ]
}
