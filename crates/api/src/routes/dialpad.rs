//! `/internal/webhooks`, `/internal/subscriptions`, `/internal/connections`: onboarding an app
//! at Dialpad by API (admin bearer secret).
//!
//! Onboarding is: `POST /internal/apps` → connect (`GET /auth/dialpad/connect` for OAuth, or
//! `POST /internal/connections` with the app's Dialpad API key; apps without either use the
//! server's `DIALPAD_API_KEY`) → `POST /internal/webhooks/create` → `POST /internal/subscriptions`.

use actix_web::HttpResponse;
use actix_web::web::{Bytes, Data, Json, Path, Query};
use actix_web::{delete, get, post};
use reqwest::Url;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa::openapi::schema::{Array, ArrayBuilder, Object};
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use db::apps::App;
use db::dialpad::{
    AUTH_API_KEY, Connection, DialpadSubscription, DialpadWebhook, NewDialpadWebhook,
};
use domain::call::SUBSCRIBED_CALL_STATES;

use crate::auth::InternalAdmin;
use crate::error::{ApiError, ErrorBody};
use crate::keys::validate_webhook_secret;
use crate::routes::ids::{AppQuery, parse_dialpad_id};
use crate::routes::params::string_enum;
use crate::routes::{object_body, optional_body, timestamp};
use crate::startup::ApiState;
use dialpad::{DialpadError, SubscriptionKind};

/// This module's routes (`routes::configure`). `/internal/webhooks/create` comes before
/// `/internal/webhooks/{webhook_id}`.
pub(crate) fn configure(cfg: &mut ServiceConfig) {
    cfg.service(connect_with_api_key)
        .service(create_webhook)
        .service(list_webhooks)
        .service(delete_webhook)
        .service(create_subscriptions)
        .service(list_subscriptions)
        .service(delete_subscription);
}

/// Every call state Dialpad's subscription API accepts (the `call_states` enum of its `OpenAPI`
/// spec, `docs/dialpad.md` §4.2, <https://developers.dialpad.com/reference/webhook_call_event_subscriptioncreate>).
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

/// Dialpad's subscription `target_type` enum (`docs/dialpad.md` §3.2).
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

/// Values of an SMS subscription's `direction`.
const SMS_DIRECTIONS: &[&str] = &["all", "inbound", "outbound"];

/// A webhook at Dialpad as admins see it (never its secret). Times are RFC 3339 UTC.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = DialpadWebhook)]
pub(crate) struct WebhookView {
    /// Dialpad's webhook id (int64, as a string).
    webhook_id: String,
    /// Where Dialpad delivers.
    hook_url: String,
    /// `HS256` (Dialpad's `signature.algo`).
    signature_algo: String,
    /// `jwt` (Dialpad's `signature.type`).
    signature_type: String,
    created_at: String,
}

impl From<&DialpadWebhook> for WebhookView {
    fn from(webhook: &DialpadWebhook) -> Self {
        WebhookView {
            webhook_id: webhook.dialpad_webhook_id.to_string(),
            hook_url: webhook.hook_url.clone(),
            signature_algo: webhook.signature_algo.clone(),
            signature_type: webhook.signature_type.clone(),
            created_at: timestamp(webhook.created_at),
        }
    }
}

/// A subscription at Dialpad as admins see it. Times are RFC 3339 UTC.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = DialpadSubscription)]
pub(crate) struct SubscriptionView {
    /// Dialpad's subscription id (int64, as a string).
    subscription_id: String,
    /// `call` or `sms`.
    kind: String,
    /// The webhook it delivers to (Dialpad's id, as a string).
    webhook_id: String,
    /// What was asked of Dialpad: for `call`, `{call_states, enabled}`; for `sms`,
    /// `{direction, enabled, include_internal, status}`; both with `target_type` and
    /// `target_id` when scoped to a target.
    #[schema(value_type = Object)]
    options: Value,
    created_at: String,
}

impl From<&DialpadSubscription> for SubscriptionView {
    fn from(subscription: &DialpadSubscription) -> Self {
        SubscriptionView {
            subscription_id: subscription.dialpad_subscription_id.to_string(),
            kind: subscription.kind.clone(),
            webhook_id: subscription.dialpad_webhook_id.to_string(),
            options: subscription.options.clone(),
            created_at: timestamp(subscription.created_at),
        }
    }
}

/// Body of `POST /internal/webhooks/create` (optional: an empty body means the defaults).
#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateWebhookRequest {
    /// Where Dialpad should deliver: an absolute http(s) URL with a host, no `#fragment`, at
    /// most 2048 characters. Default `$PUBLIC_INGEST_URL/webhooks/dialpad/{app_id}`, required
    /// when the server has no `PUBLIC_INGEST_URL`.
    #[schema(
        max_length = 2048,
        example = "https://ingest.example.com/webhooks/dialpad/0b6f3c1e-8a52-4a4e-9d51-0c7f1a2b3c4d"
    )]
    webhook_url: Option<String>,
    /// The secret Dialpad signs with (16–255 printable ASCII characters, no spaces); replaces
    /// the app's inbound secret. Default: the app's current inbound secret. Write-only: never
    /// returned.
    #[schema(min_length = 16, max_length = 255, write_only)]
    webhook_secret: Option<String>,
}

impl std::fmt::Debug for CreateWebhookRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateWebhookRequest")
            .field("webhook_url", &self.webhook_url)
            .field(
                "webhook_secret",
                &crate::routes::redacted(self.webhook_secret.as_ref()),
            )
            .finish()
    }
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

/// A webhook just created at Dialpad.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CreatedWebhook {
    /// Always `true`.
    success: bool,
    /// Dialpad's webhook id (int64, as a string).
    webhook_id: String,
    /// Where Dialpad delivers, as Dialpad recorded it.
    hook_url: String,
    message: String,
    /// The next onboarding step (`POST /internal/subscriptions?app_id=...`).
    next_step: String,
}

/// The 503 of handlers that may refresh an app's OAuth token (`credential_for`), with the
/// database's.
const NOT_CONFIGURED_503: &str = "`not_configured`: the app's OAuth token needs a refresh and the server lacks `DIALPAD_CLIENT_ID`/`DIALPAD_CLIENT_SECRET`; `unavailable`: the database cannot be reached (`Retry-After: 2`)";

/// Create a webhook at Dialpad
///
/// Registers a webhook at Dialpad (`POST /api/v2/webhooks`) that delivers to the app's ingest
/// route (or `webhook_url`), signed (HS256 JWT) with the app's inbound secret (or
/// `webhook_secret`, which then replaces it), and records it. Calls Dialpad with the app's
/// connection (its OAuth token, refreshed when near expiry, or its API key), else the server's
/// `DIALPAD_API_KEY`. When recording fails, the webhook is deleted at Dialpad again.
#[utoipa::path(
    tag = "dialpad",
    security(("internal_api_secret" = [])),
    params(AppQuery),
    request_body(content = Option<CreateWebhookRequest>, description = "Optional: an empty body means the defaults"),
    responses(
        (status = 201, description = "Created at Dialpad and recorded", body = CreatedWebhook),
        (status = 400, description = "`invalid_parameter`: `app_id` missing or not a UUID; `invalid_request`: the message names the field (`webhook_url`, `webhook_secret`); `invalid_json`: the body is not a valid request; `dialpad_not_connected`: no connection and no server `DIALPAD_API_KEY`; `dialpad_reauth_required`: the app must connect again", body = ErrorBody),
        (status = 404, description = "`not_found`: no such app", body = ErrorBody),
        (status = 502, description = "`dialpad_error`: Dialpad refused (the message says its status); `dialpad_unreachable`: timeout or connection failure", body = ErrorBody),
        (status = 503, description = NOT_CONFIGURED_503, body = ErrorBody),
    )
)]
#[post("/internal/webhooks/create")]
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
    let token = state.credentials().credential_for(app.id).await?;
    let replaces_app_secret = request.webhook_secret.is_some();
    let secret = match request.webhook_secret {
        Some(given) => SecretString::from(given),
        None => {
            let mut conn = state.conn().await?;
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
        let mut conn = state.conn().await?;
        Ok::<_, ApiError>(
            DialpadWebhook::record(&mut conn, &state.keyring, &webhook, replaces_app_secret)
                .await?,
        )
    }
    .await;
    if let Err(error) = recorded {
        // Not recorded: remove it at Dialpad too, so no untracked webhook is left behind.
        if let Err(cleanup) = state.dialpad.delete_webhook(&token, created.id).await {
            tracing::error!(webhook.id = created.id, error = %cleanup, "Could not delete an unrecorded Dialpad webhook.");
        }
        return Err(error);
    }
    tracing::info!(app.id = %app.id, webhook.id = created.id, "Dialpad webhook created.");
    Ok(HttpResponse::Created().json(CreatedWebhook {
        success: true,
        webhook_id: created.id.to_string(),
        hook_url: created.hook_url,
        message: "Webhook created at Dialpad. Events it delivers are signed with the app's \
                  webhook secret and verified by ingest."
            .into(),
        next_step: format!(
            "POST /internal/subscriptions?app_id={} to subscribe this webhook to call and SMS events.",
            app.id
        ),
    }))
}

/// An app's live webhooks.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WebhookList {
    /// Newest first.
    webhooks: Vec<WebhookView>,
}

/// List an app's webhooks
///
/// The app's live webhooks (as recorded here; Dialpad is not called), newest first.
#[utoipa::path(
    tag = "dialpad",
    security(("internal_api_secret" = [])),
    params(AppQuery),
    responses(
        (status = 200, description = "The app's live webhooks", body = WebhookList),
        (status = 400, description = "`invalid_parameter`: `app_id` missing or not a UUID", body = ErrorBody),
        (status = 404, description = "`not_found`: no such app", body = ErrorBody),
    )
)]
#[get("/internal/webhooks")]
pub(crate) async fn list_webhooks(
    _admin: InternalAdmin,
    state: Data<ApiState>,
    query: Query<AppQuery>,
) -> Result<Json<WebhookList>, ApiError> {
    let app = query.app(&state).await?;
    let mut conn = state.conn().await?;
    let webhooks = DialpadWebhook::list_live(&mut conn, app.id).await?;
    Ok(Json(WebhookList {
        webhooks: webhooks.iter().map(WebhookView::from).collect(),
    }))
}

/// A webhook deleted.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeletedWebhook {
    /// Always `true`.
    success: bool,
    /// Dialpad's webhook id (int64, as a string).
    webhook_id: String,
}

/// Delete a webhook
///
/// Deletes the webhook at Dialpad (already gone there counts as deleted) and marks it deleted
/// here; its secret keeps verifying events for a day, for Dialpad's retries. Refused while
/// subscriptions still use it.
#[utoipa::path(
    tag = "dialpad",
    security(("internal_api_secret" = [])),
    params(
        ("webhook_id" = String, Path, description = "Dialpad's webhook id (int64)", example = "5712390823018496"),
        AppQuery,
    ),
    responses(
        (status = 200, description = "Deleted", body = DeletedWebhook),
        (status = 400, description = "`invalid_parameter`: `webhook_id` not an integer, `app_id` missing or not a UUID; `dialpad_not_connected`, `dialpad_reauth_required`: no usable Dialpad credential", body = ErrorBody),
        (status = 404, description = "`not_found`: no such app, or the app has no such live webhook", body = ErrorBody),
        (status = 409, description = "`conflict`: subscriptions still use the webhook (the message lists them): delete them first", body = ErrorBody),
        (status = 502, description = "`dialpad_error`: Dialpad refused (the message says its status); `dialpad_unreachable`: timeout or connection failure", body = ErrorBody),
        (status = 503, description = NOT_CONFIGURED_503, body = ErrorBody),
    )
)]
#[delete("/internal/webhooks/{webhook_id}")]
#[tracing::instrument(skip_all)]
pub(crate) async fn delete_webhook(
    _admin: InternalAdmin,
    state: Data<ApiState>,
    webhook_id: Path<String>,
    query: Query<AppQuery>,
) -> Result<Json<DeletedWebhook>, ApiError> {
    let webhook_id = parse_dialpad_id("webhook_id", &webhook_id)?;
    let app = query.app(&state).await?;
    {
        let mut conn = state.conn().await?;
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
    let token = state.credentials().credential_for(app.id).await?;
    delete_at_dialpad(state.dialpad.delete_webhook(&token, webhook_id).await)?;
    let mut conn = state.conn().await?;
    DialpadWebhook::mark_deleted(&mut conn, app.id, webhook_id).await?;
    tracing::info!(app.id = %app.id, webhook.id = webhook_id, "Dialpad webhook deleted.");
    Ok(Json(DeletedWebhook {
        success: true,
        webhook_id: webhook_id.to_string(),
    }))
}

/// A Dialpad delete that found nothing to delete has reached the state we want.
fn delete_at_dialpad(result: Result<(), DialpadError>) -> Result<(), ApiError> {
    match result {
        Err(error) if error.status().is_some_and(|s| s.as_u16() == 404) => Ok(()),
        other => Ok(other?),
    }
}

fn call_states_schema() -> Array {
    ArrayBuilder::new()
        .items(string_enum(DIALPAD_CALL_STATES, "A Dialpad call state."))
        .min_items(Some(1))
        .description(Some(format!(
            "Call states to subscribe to, not empty. Default: every state the worker models \
             ({}).",
            SUBSCRIBED_CALL_STATES.join(", ")
        )))
        .build()
}

fn sms_direction_schema() -> Object {
    let mut schema = string_enum(
        SMS_DIRECTIONS,
        "The SMS subscription's `direction`: `all` (default), `inbound` or `outbound`.",
    );
    schema.default = Some(json!("all"));
    schema
}

fn target_type_schema() -> Object {
    string_enum(
        TARGET_TYPES,
        "Scope both subscriptions to one Dialpad target of this type; give `target_id` too. \
         Default: the whole company.",
    )
}

/// Body of `POST /internal/subscriptions` (optional: an empty body means the defaults).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct CreateSubscriptionsRequest {
    /// The webhook to deliver to (Dialpad's int64 id, as a string); default: the app's newest
    /// live webhook.
    #[schema(example = "5712390823018496")]
    webhook_id: Option<String>,
    /// Call states to subscribe to (described in `call_states_schema`); default: every state
    /// the worker models ([`SUBSCRIBED_CALL_STATES`]).
    #[schema(schema_with = call_states_schema)]
    call_states: Option<Vec<String>>,
    /// Also create the SMS subscription (default true).
    #[schema(default = true)]
    sms: bool,
    /// SMS `direction` (described in `sms_direction_schema`).
    #[schema(schema_with = sms_direction_schema)]
    sms_direction: String,
    /// SMS between users of the same company too (default false, as Dialpad).
    #[schema(default = false)]
    include_internal: bool,
    /// Scope both subscriptions to one Dialpad target (described in `target_type_schema`);
    /// give both or neither. Default: the whole company.
    #[schema(schema_with = target_type_schema)]
    target_type: Option<String>,
    /// The Dialpad target's id (int64, as a string), with `target_type`.
    #[schema(example = "6460210548400128")]
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
        if !SMS_DIRECTIONS.contains(&self.sms_direction.as_str()) {
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
            // `status: true` also delivers each delivery-status change (`docs/dialpad.md` §3.3).
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

/// Subscriptions just created at Dialpad.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CreatedSubscriptions {
    /// Always `true`.
    success: bool,
    /// The webhook they deliver to (Dialpad's id, as a string).
    webhook_id: String,
    /// The call subscription, then the SMS one if asked for.
    subscriptions: Vec<SubscriptionView>,
    message: String,
}

/// Subscribe a webhook to events
///
/// Subscribes the app's webhook at Dialpad to call events (`POST /api/v2/subscriptions/call`)
/// and, unless `"sms": false`, to SMS events with their delivery updates
/// (`POST /api/v2/subscriptions/sms`), and records them. When the SMS subscription fails after
/// the call one was created, the call one is kept (and listed by
/// `GET /internal/subscriptions`) and the 502 message says so.
#[utoipa::path(
    tag = "dialpad",
    security(("internal_api_secret" = [])),
    params(AppQuery),
    request_body(content = Option<CreateSubscriptionsRequest>, description = "Optional: an empty body means the defaults"),
    responses(
        (status = 201, description = "Created at Dialpad and recorded", body = CreatedSubscriptions),
        (status = 400, description = "`invalid_parameter`: `app_id` missing or not a UUID; `invalid_request`: the message names the field (`webhook_id` unknown, `call_states`, `sms_direction`, `target_type`/`target_id`), or the app has no webhook yet; `invalid_json`: the body is not a valid request; `dialpad_not_connected`: no connection and no server `DIALPAD_API_KEY`; `dialpad_reauth_required`: the app must connect again", body = ErrorBody),
        (status = 404, description = "`not_found`: no such app", body = ErrorBody),
        (status = 502, description = "`dialpad_error`: Dialpad refused (the message says its status, and whether the call subscription was kept); `dialpad_unreachable`: timeout or connection failure", body = ErrorBody),
        (status = 503, description = NOT_CONFIGURED_503, body = ErrorBody),
    )
)]
#[post("/internal/subscriptions")]
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
        let mut conn = state.conn().await?;
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
    let token = state.credentials().credential_for(app.id).await?;

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
        let mut conn = state.conn().await?;
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
    Ok(HttpResponse::Created().json(CreatedSubscriptions {
        success: true,
        webhook_id: webhook.dialpad_webhook_id.to_string(),
        subscriptions: created.iter().map(SubscriptionView::from).collect(),
        message: "Subscribed. Dialpad now delivers these events to the webhook; the worker \
                  turns them into calls and messages."
            .into(),
    }))
}

/// An app's live subscriptions.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SubscriptionList {
    /// Newest first.
    subscriptions: Vec<SubscriptionView>,
}

/// List an app's subscriptions
///
/// The app's live subscriptions (as recorded here; Dialpad is not called), newest first.
#[utoipa::path(
    tag = "dialpad",
    security(("internal_api_secret" = [])),
    params(AppQuery),
    responses(
        (status = 200, description = "The app's live subscriptions", body = SubscriptionList),
        (status = 400, description = "`invalid_parameter`: `app_id` missing or not a UUID", body = ErrorBody),
        (status = 404, description = "`not_found`: no such app", body = ErrorBody),
    )
)]
#[get("/internal/subscriptions")]
pub(crate) async fn list_subscriptions(
    _admin: InternalAdmin,
    state: Data<ApiState>,
    query: Query<AppQuery>,
) -> Result<Json<SubscriptionList>, ApiError> {
    let app = query.app(&state).await?;
    let mut conn = state.conn().await?;
    let subscriptions = DialpadSubscription::list_live(&mut conn, app.id).await?;
    Ok(Json(SubscriptionList {
        subscriptions: subscriptions.iter().map(SubscriptionView::from).collect(),
    }))
}

/// A subscription deleted.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeletedSubscription {
    /// Always `true`.
    success: bool,
    /// Dialpad's subscription id (int64, as a string).
    subscription_id: String,
}

/// Delete a subscription
///
/// Deletes the subscription at Dialpad (already gone there counts as deleted) and here.
#[utoipa::path(
    tag = "dialpad",
    security(("internal_api_secret" = [])),
    params(
        ("subscription_id" = String, Path, description = "Dialpad's subscription id (int64)", example = "4855239406092288"),
        AppQuery,
    ),
    responses(
        (status = 200, description = "Deleted", body = DeletedSubscription),
        (status = 400, description = "`invalid_parameter`: `subscription_id` not an integer, `app_id` missing or not a UUID; `dialpad_not_connected`, `dialpad_reauth_required`: no usable Dialpad credential", body = ErrorBody),
        (status = 404, description = "`not_found`: no such app, or the app has no such live subscription", body = ErrorBody),
        (status = 502, description = "`dialpad_error`: Dialpad refused (the message says its status); `dialpad_unreachable`: timeout or connection failure", body = ErrorBody),
        (status = 503, description = NOT_CONFIGURED_503, body = ErrorBody),
    )
)]
#[delete("/internal/subscriptions/{subscription_id}")]
#[tracing::instrument(skip_all)]
pub(crate) async fn delete_subscription(
    _admin: InternalAdmin,
    state: Data<ApiState>,
    subscription_id: Path<String>,
    query: Query<AppQuery>,
) -> Result<Json<DeletedSubscription>, ApiError> {
    let subscription_id = parse_dialpad_id("subscription_id", &subscription_id)?;
    let app = query.app(&state).await?;
    let subscription = {
        let mut conn = state.conn().await?;
        DialpadSubscription::find_live(&mut conn, app.id, subscription_id)
            .await?
            .ok_or(ApiError::NotFound)?
    };
    let kind = SubscriptionKind::parse(&subscription.kind)
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("unknown subscription kind")))?;
    let token = state.credentials().credential_for(app.id).await?;
    delete_at_dialpad(
        state
            .dialpad
            .delete_subscription(&token, kind, subscription_id)
            .await,
    )?;
    let mut conn = state.conn().await?;
    DialpadSubscription::mark_deleted(&mut conn, subscription.id).await?;
    Ok(Json(DeletedSubscription {
        success: true,
        subscription_id: subscription_id.to_string(),
    }))
}

/// Body of `POST /internal/connections`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApiKeyConnectionRequest {
    /// The app's own Dialpad company API key. Write-only: stored encrypted, never returned.
    #[schema(value_type = String, write_only)]
    api_key: SecretString,
}

/// An app connected to Dialpad with its own API key.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ApiKeyConnection {
    /// The app's id (a UUID).
    #[schema(value_type = String, format = "uuid")]
    app_id: Uuid,
    /// `api_key`.
    auth_type: String,
    /// The Dialpad environment of this server: `sandbox` or `production`.
    environment: String,
    /// The key's Dialpad company id (int64, as a string).
    dialpad_company_id: String,
}

/// Connect an app with a Dialpad API key
///
/// Connects the app with its own Dialpad company API key, the alternative to OAuth (replacing
/// any connection it had). The key is checked with Dialpad's `GET /api/v2/company` and stored
/// encrypted; it is never returned.
#[utoipa::path(
    tag = "dialpad",
    security(("internal_api_secret" = [])),
    params(AppQuery),
    request_body = ApiKeyConnectionRequest,
    responses(
        (status = 201, description = "Connected", body = ApiKeyConnection),
        (status = 400, description = "`invalid_request`: Dialpad refused the key (`api_key`; the message says Dialpad's status); `invalid_json`: the body is not a valid request; `invalid_parameter`: `app_id` missing or not a UUID", body = ErrorBody),
        (status = 404, description = "`not_found`: no such app", body = ErrorBody),
        (status = 502, description = "`dialpad_error`: Dialpad failed otherwise (the message says its status); `dialpad_unreachable`: timeout or connection failure", body = ErrorBody),
    )
)]
#[post("/internal/connections")]
#[tracing::instrument(skip_all)]
pub(crate) async fn connect_with_api_key(
    _admin: InternalAdmin,
    state: Data<ApiState>,
    query: Query<AppQuery>,
    body: Bytes,
) -> Result<HttpResponse, ApiError> {
    let request: ApiKeyConnectionRequest = object_body(&body)?;
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
    let mut conn = state.conn().await?;
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
    Ok(HttpResponse::Created().json(ApiKeyConnection {
        app_id: app.id,
        auth_type: AUTH_API_KEY.into(),
        environment: environment.into(),
        dialpad_company_id: company.id.to_string(),
    }))
}

/// `Debug` of each type here that holds a secret, filled with `secret` (for the redaction test).
#[cfg(test)]
pub(super) fn debug_samples(secret: &str) -> Vec<String> {
    vec![
        format!(
            "{:?}",
            CreateWebhookRequest {
                webhook_url: None,
                webhook_secret: Some(secret.into()),
            }
        ),
        format!(
            "{:?}",
            ApiKeyConnectionRequest {
                api_key: secret.into(),
            }
        ),
    ]
}
