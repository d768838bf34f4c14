//! `/internal/webhooks`, `/internal/subscriptions`, `/internal/connections`: onboarding an app
//! at Dialpad by API (admin bearer secret).
//!
//! Onboarding is: `POST /internal/apps` → connect (`GET /auth/dialpad/connect` for OAuth, or
//! `POST /internal/connections` with the app's Dialpad API key; apps without either use the
//! server's `DIALPAD_API_KEY`) → `POST /internal/webhooks/create` → `POST /internal/subscriptions`.

use actix_web::HttpResponse;
use actix_web::web;
use actix_web::web::{Bytes, Data, Path, Query};
use reqwest::Url;
use secrecy::SecretString;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use db::DbError;
use db::apps::App;
use db::dialpad::{Connection, DialpadSubscription, DialpadWebhook, NewDialpadWebhook};
use domain::call::SUBSCRIBED_CALL_STATES;

use crate::auth::InternalAdmin;
use crate::dialpad::{DialpadError, SubscriptionKind, credential_for};
use crate::error::ApiError;
use crate::keys::validate_webhook_secret;
use crate::routes::rfc3339;
use crate::startup::ApiState;

/// This module's routes (`routes::configure`).
pub(crate) fn configure(cfg: &mut ServiceConfig) {
    cfg.map(|cfg| {
        cfg.route(
            "/internal/connections",
            web::post().to(connect_with_api_key),
        )
        .route("/internal/webhooks/create", web::post().to(create_webhook))
        .route("/internal/webhooks", web::get().to(list_webhooks))
        .route(
            "/internal/webhooks/{webhook_id}",
            web::delete().to(delete_webhook),
        )
        .route(
            "/internal/subscriptions",
            web::post().to(create_subscriptions),
        )
        .route("/internal/subscriptions", web::get().to(list_subscriptions))
        .route(
            "/internal/subscriptions/{subscription_id}",
            web::delete().to(delete_subscription),
        )
    });
}

/// Every call state Dialpad's subscription API accepts (the `call_states` enum of its `OpenAPI`
/// spec, FACTS §4.2, <https://developers.dialpad.com/reference/webhook_call_event_subscriptioncreate>).
const DIALPAD_CALL_STATES: &[&str] = &[
    "admin",
    "admin_recording",
    "ai_playbook",
    "all",
    "barge",
    "blocked",
    "call_transcription",
    "calling",
    "connected",
    "csat",
    "dispositions",
    "eavesdrop",
    "hangup",
    "hold",
    "merged",
    "missed",
    "monitor",
    "parked",
    "pcsat",
    "postcall",
    "preanswer",
    "queued",
    "recap_action_items",
    "recap_outcome",
    "recap_purposes",
    "recap_summary",
    "recording",
    "ringing",
    "takeover",
    "transcription",
    "voicemail",
    "voicemail_uploaded",
];

/// Dialpad's subscription `target_type` enum (FACTS §3.2).
const TARGET_TYPES: &[&str] = &[
    "callcenter",
    "callrouter",
    "channel",
    "coachinggroup",
    "coachingteam",
    "department",
    "office",
    "room",
    "staffgroup",
    "user",
];

/// `?app_id=` of the onboarding endpoints.
#[derive(Debug, Deserialize)]
pub(crate) struct AppQuery {
    app_id: Option<String>,
}

impl AppQuery {
    pub(crate) fn app_id(&self) -> Result<Uuid, ApiError> {
        let raw = self.app_id.as_deref().ok_or(ApiError::InvalidParameter {
            name: "app_id",
            message: "is required".into(),
        })?;
        raw.parse().map_err(|_| ApiError::InvalidParameter {
            name: "app_id",
            message: "must be a UUID".into(),
        })
    }

    /// The app named by `app_id`: 400 when missing or malformed, 404 when unknown.
    async fn app(&self, state: &ApiState) -> Result<App, ApiError> {
        let app_id = self.app_id()?;
        let mut conn = state.pool.get().await.map_err(DbError::from)?;
        App::find(&mut conn, app_id)
            .await?
            .ok_or(ApiError::NotFound)
    }
}

/// An optional JSON body: empty means all defaults.
fn optional_body<T: DeserializeOwned + Default>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::InvalidJson(e.to_string()))
}

fn parse_dialpad_id(name: &'static str, raw: &str) -> Result<i64, ApiError> {
    raw.parse().map_err(|_| ApiError::InvalidParameter {
        name,
        message: "must be a Dialpad id (an integer)".into(),
    })
}

/// A webhook as admins see it (never its secret).
pub(crate) fn webhook_json(webhook: &DialpadWebhook) -> Value {
    json!({
        "webhook_id": webhook.dialpad_webhook_id.to_string(),
        "hook_url": webhook.hook_url,
        "signature_algo": webhook.signature_algo,
        "signature_type": webhook.signature_type,
        "created_at": rfc3339(Some(webhook.created_at)),
    })
}

/// A subscription as admins see it.
pub(crate) fn subscription_json(subscription: &DialpadSubscription) -> Value {
    json!({
        "subscription_id": subscription.dialpad_subscription_id.to_string(),
        "kind": subscription.kind,
        "webhook_id": subscription.dialpad_webhook_id.to_string(),
        "options": subscription.options,
        "created_at": rfc3339(Some(subscription.created_at)),
    })
}

/// Body of `POST /internal/webhooks/create` (optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateWebhookRequest {
    /// Where Dialpad should deliver; default `$PUBLIC_INGEST_URL/webhooks/dialpad/{app_id}`.
    webhook_url: Option<String>,
    /// The secret Dialpad signs with; replaces the app's inbound secret. Default: the app's
    /// current inbound secret.
    webhook_secret: Option<String>,
}

fn validate_hook_url(url: &str) -> Result<(), ApiError> {
    let invalid = |why: &str| ApiError::InvalidRequest(format!("webhook_url: {why}"));
    let parsed = Url::parse(url).map_err(|_| invalid("must be an absolute URL"))?;
    if !matches!(parsed.scheme(), "https" | "http") {
        return Err(invalid("must be an http(s) URL"));
    }
    if parsed.fragment().is_some() || url.len() > 2048 || parsed.host().is_none() {
        return Err(invalid(
            "must have a host, no #fragment, and at most 2048 characters",
        ));
    }
    Ok(())
}

/// `POST /internal/webhooks/create?app_id=`: registers a webhook at Dialpad (`POST
/// /api/v2/webhooks`, FACTS §2) that delivers to the app's ingest route, signed (HS256 JWT) with
/// the app's inbound secret, and records it.
///
/// Answers `201 {"success": true, "webhook_id", "hook_url", "message", "next_step"}`
/// (`webhook_id` is Dialpad's int64 id, as a string). Errors: 400 `invalid_parameter` (no or
/// bad `app_id`), `invalid_request`/`invalid_json` (body), `dialpad_not_connected` /
/// `dialpad_reauth_required` (no credential); 404 unknown app; 502 `dialpad_error` (with
/// Dialpad's status) or `dialpad_unreachable`.
#[tracing::instrument(skip_all)]
pub(crate) async fn create_webhook(
    _admin: InternalAdmin,
    state: Data<ApiState>,
    query: Query<AppQuery>,
    body: Bytes,
) -> Result<HttpResponse, ApiError> {
    let request: CreateWebhookRequest = optional_body(&body)?;
    let app = query.app(&state).await?;
    let hook_url = match (&request.webhook_url, &state.public_ingest_url) {
        (Some(url), _) => url.trim().to_owned(),
        (None, Some(base)) => format!("{base}/webhooks/dialpad/{}", app.id),
        (None, None) => {
            return Err(ApiError::InvalidRequest(
                "webhook_url: required, as PUBLIC_INGEST_URL is not set on this server".into(),
            ));
        }
    };
    validate_hook_url(&hook_url)?;
    if let Some(secret) = &request.webhook_secret {
        validate_webhook_secret(secret)?;
    }
    let token = credential_for(&state, app.id).await?;
    let replaces_app_secret = request.webhook_secret.is_some();
    let secret = match request.webhook_secret {
        Some(given) => SecretString::from(given),
        None => {
            let mut conn = state.pool.get().await.map_err(DbError::from)?;
            App::webhook_secret(&mut conn, &state.keyring, app.id).await?
        }
    };

    let created = state
        .dialpad
        .create_webhook(&token, &hook_url, &secret)
        .await?;
    let signature = created.signature.as_ref();
    let webhook = NewDialpadWebhook {
        app_id: app.id,
        dialpad_webhook_id: created.id,
        hook_url: &created.hook_url,
        secret: &secret,
        signature_algo: signature.and_then(|s| s.algo.as_deref()).unwrap_or("HS256"),
        signature_type: signature.and_then(|s| s.kind.as_deref()).unwrap_or("jwt"),
    };
    let recorded = async {
        let mut conn = state.pool.get().await.map_err(DbError::from)?;
        DialpadWebhook::record(&mut conn, &state.keyring, &webhook, replaces_app_secret).await
    }
    .await;
    if let Err(error) = recorded {
        // Not recorded: remove it at Dialpad too, so no untracked webhook is left behind.
        if let Err(cleanup) = state.dialpad.delete_webhook(&token, created.id).await {
            tracing::error!(webhook.id = created.id, error = %cleanup, "Could not delete an unrecorded Dialpad webhook.");
        }
        return Err(error.into());
    }
    tracing::info!(app.id = %app.id, webhook.id = created.id, "Dialpad webhook created.");
    Ok(HttpResponse::Created().json(json!({
        "success": true,
        "webhook_id": created.id.to_string(),
        "hook_url": created.hook_url,
        "message": "Webhook created at Dialpad. Events it delivers are signed with the app's \
                    webhook secret and verified by ingest.",
        "next_step": format!(
            "POST /internal/subscriptions?app_id={} to subscribe this webhook to call and SMS events.",
            app.id
        ),
    })))
}

/// `GET /internal/webhooks?app_id=`: the app's live webhooks, newest first:
/// `200 {"webhooks": [{"webhook_id", "hook_url", "signature_algo", "signature_type",
/// "created_at"}]}`.
pub(crate) async fn list_webhooks(
    _admin: InternalAdmin,
    state: Data<ApiState>,
    query: Query<AppQuery>,
) -> Result<HttpResponse, ApiError> {
    let app = query.app(&state).await?;
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let webhooks = DialpadWebhook::list_live(&mut conn, app.id).await?;
    Ok(HttpResponse::Ok().json(json!({
        "webhooks": webhooks.iter().map(webhook_json).collect::<Vec<_>>(),
    })))
}

/// `DELETE /internal/webhooks/{webhook_id}?app_id=`: deletes the webhook at Dialpad (already
/// gone there counts as deleted) and marks it deleted here; its secret keeps verifying events
/// for a day, for Dialpad's retries.
///
/// Answers `200 {"success": true, "webhook_id"}`; 404 when the app has no such live webhook;
/// 409 `conflict` while subscriptions still use it; 502 when Dialpad fails.
#[tracing::instrument(skip_all)]
pub(crate) async fn delete_webhook(
    _admin: InternalAdmin,
    state: Data<ApiState>,
    webhook_id: Path<String>,
    query: Query<AppQuery>,
) -> Result<HttpResponse, ApiError> {
    let webhook_id = parse_dialpad_id("webhook_id", &webhook_id)?;
    let app = query.app(&state).await?;
    {
        let mut conn = state.pool.get().await.map_err(DbError::from)?;
        DialpadWebhook::find_live(&mut conn, app.id, webhook_id)
            .await?
            .ok_or(ApiError::NotFound)?;
        let users = DialpadSubscription::list_live(&mut conn, app.id)
            .await?
            .into_iter()
            .filter(|s| s.dialpad_webhook_id == webhook_id)
            .map(|s| s.dialpad_subscription_id.to_string())
            .collect::<Vec<_>>();
        if !users.is_empty() {
            return Err(ApiError::Conflict(format!(
                "webhook {webhook_id} is used by subscriptions {}: delete them first",
                users.join(", ")
            )));
        }
    }
    let token = credential_for(&state, app.id).await?;
    delete_at_dialpad(state.dialpad.delete_webhook(&token, webhook_id).await)?;
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    DialpadWebhook::mark_deleted(&mut conn, app.id, webhook_id).await?;
    tracing::info!(app.id = %app.id, webhook.id = webhook_id, "Dialpad webhook deleted.");
    Ok(HttpResponse::Ok().json(json!({ "success": true, "webhook_id": webhook_id.to_string() })))
}

/// A Dialpad delete that found nothing to delete has reached the state we want.
fn delete_at_dialpad(result: Result<(), DialpadError>) -> Result<(), ApiError> {
    match result {
        Err(error) if error.status().is_some_and(|s| s.as_u16() == 404) => Ok(()),
        other => Ok(other?),
    }
}

/// Body of `POST /internal/subscriptions` (optional).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct CreateSubscriptionsRequest {
    /// The webhook to deliver to (Dialpad's id); default: the app's newest live webhook.
    webhook_id: Option<String>,
    /// Call states to subscribe to; default: every state the worker models
    /// ([`SUBSCRIBED_CALL_STATES`]).
    call_states: Option<Vec<String>>,
    /// Also create the SMS subscription (default true).
    sms: bool,
    /// SMS `direction`: `all` (default), `inbound` or `outbound`.
    sms_direction: String,
    /// SMS between users of the same company too (default false, as Dialpad).
    include_internal: bool,
    /// Scope both subscriptions to one Dialpad target (`office`, `department`, `user`, ...);
    /// give both or neither. Default: the whole company.
    target_type: Option<String>,
    target_id: Option<String>,
}

impl Default for CreateSubscriptionsRequest {
    fn default() -> Self {
        CreateSubscriptionsRequest {
            webhook_id: None,
            call_states: None,
            sms: true,
            sms_direction: "all".into(),
            include_internal: false,
            target_type: None,
            target_id: None,
        }
    }
}

impl CreateSubscriptionsRequest {
    /// The Dialpad request bodies: the call subscription's, then the SMS one's if asked for.
    fn dialpad_bodies(&self, webhook_id: i64) -> Result<Vec<(SubscriptionKind, Value)>, ApiError> {
        let call_states: Vec<&str> = match &self.call_states {
            None => SUBSCRIBED_CALL_STATES.to_vec(),
            Some(states) => {
                if states.is_empty() {
                    return Err(ApiError::InvalidRequest(
                        "call_states: must not be empty".into(),
                    ));
                }
                if let Some(unknown) = states
                    .iter()
                    .find(|s| !DIALPAD_CALL_STATES.contains(&s.as_str()))
                {
                    return Err(ApiError::InvalidRequest(format!(
                        "call_states: {unknown:?} is not a Dialpad call state"
                    )));
                }
                states.iter().map(String::as_str).collect()
            }
        };
        if !matches!(self.sms_direction.as_str(), "all" | "inbound" | "outbound") {
            return Err(ApiError::InvalidRequest(
                "sms_direction: must be all, inbound or outbound".into(),
            ));
        }
        let target = match (&self.target_type, &self.target_id) {
            (None, None) => None,
            (Some(kind), Some(id)) if TARGET_TYPES.contains(&kind.as_str()) => {
                let id: i64 = id.parse().map_err(|_| {
                    ApiError::InvalidRequest("target_id: must be a Dialpad id (an integer)".into())
                })?;
                Some((kind.as_str(), id))
            }
            (Some(_), Some(_)) => {
                return Err(ApiError::InvalidRequest(format!(
                    "target_type: must be one of {}",
                    TARGET_TYPES.join(", ")
                )));
            }
            _ => {
                return Err(ApiError::InvalidRequest(
                    "target_type and target_id: give both or neither".into(),
                ));
            }
        };
        let with_target = |mut body: Value| {
            if let Some((kind, id)) = target {
                body["target_type"] = json!(kind);
                body["target_id"] = json!(id);
            }
            body
        };
        let mut bodies = vec![(
            SubscriptionKind::Call,
            with_target(json!({
                "endpoint_id": webhook_id,
                "call_states": call_states,
                "enabled": true,
            })),
        )];
        if self.sms {
            // `status: true` also delivers each delivery-status change (FACTS §3.3).
            bodies.push((
                SubscriptionKind::Sms,
                with_target(json!({
                    "endpoint_id": webhook_id,
                    "direction": self.sms_direction,
                    "enabled": true,
                    "include_internal": self.include_internal,
                    "status": true,
                })),
            ));
        }
        Ok(bodies)
    }
}

/// `POST /internal/subscriptions?app_id=`: subscribes the app's webhook at Dialpad to call
/// events (`POST /api/v2/subscriptions/call`) and, unless `"sms": false`, to SMS events
/// (`POST /api/v2/subscriptions/sms`), and records them.
///
/// Answers `201 {"success": true, "webhook_id", "subscriptions": [{"subscription_id", "kind",
/// "webhook_id", "options", "created_at"}], "message"}`. Errors as
/// `POST /internal/webhooks/create`, plus 400 when the app has no webhook. When the SMS
/// subscription fails after the call one was created, the call one is kept (and listed) and
/// the 502 message says so.
#[tracing::instrument(skip_all)]
pub(crate) async fn create_subscriptions(
    _admin: InternalAdmin,
    state: Data<ApiState>,
    query: Query<AppQuery>,
    body: Bytes,
) -> Result<HttpResponse, ApiError> {
    let request: CreateSubscriptionsRequest = optional_body(&body)?;
    let app = query.app(&state).await?;
    let webhook = {
        let mut conn = state.pool.get().await.map_err(DbError::from)?;
        match &request.webhook_id {
            Some(raw) => {
                let id = raw.parse().map_err(|_| {
                    ApiError::InvalidRequest("webhook_id: must be a Dialpad id (an integer)".into())
                })?;
                DialpadWebhook::find_live(&mut conn, app.id, id)
                    .await?
                    .ok_or_else(|| {
                        ApiError::InvalidRequest(format!(
                            "webhook_id: the app has no live webhook {id}"
                        ))
                    })?
            }
            None => DialpadWebhook::list_live(&mut conn, app.id)
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| {
                    ApiError::InvalidRequest(format!(
                        "the app has no webhook yet: POST /internal/webhooks/create?app_id={} first",
                        app.id
                    ))
                })?,
        }
    };
    let bodies = request.dialpad_bodies(webhook.dialpad_webhook_id)?;
    let token = credential_for(&state, app.id).await?;

    let mut created = Vec::new();
    for (kind, body) in bodies {
        let subscription = match state.dialpad.create_subscription(&token, kind, &body).await {
            Ok(subscription) => subscription,
            Err(error) if created.is_empty() => return Err(error.into()),
            Err(error) => {
                return Err(ApiError::Dialpad {
                    error,
                    note: Some("the call subscription was created and is kept"),
                });
            }
        };
        let mut options = body;
        if let Some(fields) = options.as_object_mut() {
            fields.remove("endpoint_id");
        }
        let mut conn = state.pool.get().await.map_err(DbError::from)?;
        let row = DialpadSubscription::record(
            &mut conn,
            app.id,
            kind.as_str(),
            subscription.id,
            webhook.dialpad_webhook_id,
            &options,
        )
        .await?;
        tracing::info!(app.id = %app.id, subscription.id = subscription.id, kind = kind.as_str(), "Dialpad subscription created.");
        created.push(row);
    }
    Ok(HttpResponse::Created().json(json!({
        "success": true,
        "webhook_id": webhook.dialpad_webhook_id.to_string(),
        "subscriptions": created.iter().map(subscription_json).collect::<Vec<_>>(),
        "message": "Subscribed. Dialpad now delivers these events to the webhook; the worker \
                    turns them into calls and messages.",
    })))
}

/// `GET /internal/subscriptions?app_id=`: the app's live subscriptions, newest first:
/// `200 {"subscriptions": [...]}`.
pub(crate) async fn list_subscriptions(
    _admin: InternalAdmin,
    state: Data<ApiState>,
    query: Query<AppQuery>,
) -> Result<HttpResponse, ApiError> {
    let app = query.app(&state).await?;
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let subscriptions = DialpadSubscription::list_live(&mut conn, app.id).await?;
    Ok(HttpResponse::Ok().json(json!({
        "subscriptions": subscriptions.iter().map(subscription_json).collect::<Vec<_>>(),
    })))
}

/// `DELETE /internal/subscriptions/{subscription_id}?app_id=`: deletes it at Dialpad (already
/// gone counts as deleted) and here. `200 {"success": true, "subscription_id"}`; 404 when the
/// app has no such live subscription; 502 when Dialpad fails.
#[tracing::instrument(skip_all)]
pub(crate) async fn delete_subscription(
    _admin: InternalAdmin,
    state: Data<ApiState>,
    subscription_id: Path<String>,
    query: Query<AppQuery>,
) -> Result<HttpResponse, ApiError> {
    let subscription_id = parse_dialpad_id("subscription_id", &subscription_id)?;
    let app = query.app(&state).await?;
    let subscription = {
        let mut conn = state.pool.get().await.map_err(DbError::from)?;
        DialpadSubscription::find_live(&mut conn, app.id, subscription_id)
            .await?
            .ok_or(ApiError::NotFound)?
    };
    let kind = SubscriptionKind::parse(&subscription.kind)
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("unknown subscription kind")))?;
    let token = credential_for(&state, app.id).await?;
    delete_at_dialpad(
        state
            .dialpad
            .delete_subscription(&token, kind, subscription_id)
            .await,
    )?;
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    DialpadSubscription::mark_deleted(&mut conn, subscription.id).await?;
    Ok(HttpResponse::Ok().json(json!({
        "success": true,
        "subscription_id": subscription_id.to_string(),
    })))
}

/// Body of `POST /internal/connections`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApiKeyConnectionRequest {
    /// The app's own Dialpad company API key.
    api_key: SecretString,
}

/// `POST /internal/connections?app_id=` `{"api_key"}`: connects the app with its own Dialpad
/// API key (the alternative to OAuth). The key is checked with `GET /api/v2/company` and
/// stored encrypted.
///
/// Answers `201 {"app_id", "auth_type": "api_key", "environment", "dialpad_company_id"}`;
/// 400 `invalid_request` when Dialpad refuses the key; 502 when Dialpad fails otherwise.
#[tracing::instrument(skip_all)]
pub(crate) async fn connect_with_api_key(
    _admin: InternalAdmin,
    state: Data<ApiState>,
    query: Query<AppQuery>,
    body: Bytes,
) -> Result<HttpResponse, ApiError> {
    let request: ApiKeyConnectionRequest =
        serde_json::from_slice(&body).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    let app = query.app(&state).await?;
    let company = match state.dialpad.company(&request.api_key).await {
        Ok(company) => company,
        Err(error)
            if error
                .status()
                .is_some_and(|s| matches!(s.as_u16(), 401 | 403)) =>
        {
            return Err(ApiError::InvalidRequest(format!(
                "api_key: Dialpad refused it ({})",
                error.status().map(|s| s.to_string()).unwrap_or_default()
            )));
        }
        Err(error) => return Err(error.into()),
    };
    let environment = state.dialpad.environment().as_str();
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    Connection::save_api_key(
        &mut conn,
        &state.keyring,
        app.id,
        environment,
        &request.api_key,
        Some(company.id),
    )
    .await?;
    tracing::info!(app.id = %app.id, "Dialpad connected by API key.");
    Ok(HttpResponse::Created().json(json!({
        "app_id": app.id,
        "auth_type": "api_key",
        "environment": environment,
        "dialpad_company_id": company.id.to_string(),
    })))
}
