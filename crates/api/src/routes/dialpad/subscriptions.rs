//! `/internal/subscriptions`: which call and SMS events Dialpad sends to an app's webhook.

use actix_web::HttpResponse;
use actix_web::web::{Bytes, Data, Json, Path, Query};
use actix_web::{delete, get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa::openapi::schema::{Array, ArrayBuilder, Object};

use db::dialpad::{DialpadSubscription, DialpadWebhook};
use domain::call::{CallState, SUBSCRIBED_CALL_STATES, TargetType};

use super::{NOT_CONFIGURED_503, delete_at_dialpad};
use crate::auth::InternalAdmin;
use crate::error::{ApiError, ErrorBody};
use crate::routes::ids::{AppQuery, parse_dialpad_id};
use crate::routes::params::string_enum;
use crate::routes::{optional_body, timestamp};
use crate::startup::ApiState;
use dialpad::SubscriptionKind;

/// Values of an SMS subscription's `direction`.
const SMS_DIRECTIONS: &[&str] = &["all", "inbound", "outbound"];

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

/// The Dialpad spellings of a vocabulary's known values (`domain::call::state`), in its order:
/// the enums of the request schema and the lists in error messages.
fn spellings<T>(known: &'static [T], as_str: fn(&'static T) -> &'static str) -> Vec<&'static str> {
    known.iter().map(as_str).collect()
}

fn call_states_schema() -> Array {
    ArrayBuilder::new()
        .items(string_enum(
            &spellings(CallState::KNOWN, CallState::as_str),
            "A Dialpad call state.",
        ))
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
        &spellings(TargetType::KNOWN, TargetType::as_str),
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
                    .find(|s| !CallState::from(s.as_str()).is_known())
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
            (Some(kind), Some(id)) if TargetType::from(kind.as_str()).is_known() => {
                let id: i64 = id.parse().map_err(|_| {
                    ApiError::InvalidRequest("target_id: must be a Dialpad id (an integer)".into())
                })?;
                Some((kind.as_str(), id))
            }
            (Some(_), Some(_)) => {
                return Err(ApiError::InvalidRequest(format!(
                    "target_type: must be one of {}",
                    spellings(TargetType::KNOWN, TargetType::as_str).join(", ")
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
