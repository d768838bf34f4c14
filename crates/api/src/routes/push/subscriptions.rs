//! `/api/webhooks/subscriptions`: create, list, get, update, delete.

use super::*;

/// Body of `POST /api/webhooks/subscriptions`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateSubscription {
    /// Where events are sent (`POST`): an absolute `http` or `https` URL.
    webhook_url: String,
    /// Event names of the catalogue (`call.started`, ..., see `webhooks` in this document), or
    /// `["*"]` for all. Not empty.
    events: Vec<String>,
    /// A note for the tenant's own use.
    description: Option<String>,
}

/// Body of `PATCH /api/webhooks/subscriptions/{id}`: each field given replaces the stored one.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateSubscription {
    webhook_url: Option<String>,
    events: Option<Vec<String>>,
    description: Option<String>,
    /// `true` reactivates a deactivated subscription and resets its failure count; `false`
    /// pauses it (events are not queued for it meanwhile).
    active: Option<bool>,
}

/// A subscription as its tenant sees it. Times are RFC 3339 UTC.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WebhookSubscription)]
pub(crate) struct SubscriptionView {
    id: String,
    webhook_url: String,
    events: Vec<String>,
    description: Option<String>,
    /// False once deactivated (`disabled_reason` says why) or paused.
    active: bool,
    /// Failed delivery attempts since the last success.
    consecutive_failures: i32,
    last_success_at: Option<String>,
    last_failure_at: Option<String>,
    disabled_reason: Option<String>,
    created_at: String,
    updated_at: String,
}

impl From<PushSubscription> for SubscriptionView {
    fn from(s: PushSubscription) -> Self {
        SubscriptionView {
            id: s.id.to_string(),
            webhook_url: s.webhook_url,
            events: s.events,
            description: s.description,
            active: s.active,
            consecutive_failures: s.consecutive_failures,
            last_success_at: rfc3339(s.last_success_at),
            last_failure_at: rfc3339(s.last_failure_at),
            disabled_reason: s.disabled_reason,
            created_at: timestamp(s.created_at),
            updated_at: timestamp(s.updated_at),
        }
    }
}

/// A new subscription, with its secret: shown only in this answer.
#[derive(Serialize, ToSchema)]
#[schema(as = CreatedWebhookSubscription)]
pub(crate) struct CreatedSubscription {
    #[serde(flatten)]
    subscription: SubscriptionView,
    /// `whsec_<base64 of 32 random bytes>`: verifies deliveries (`docs/events.md`). Shown only
    /// here.
    secret_key: String,
}

impl std::fmt::Debug for CreatedSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedSubscription")
            .field("subscription", &self.subscription)
            .field(
                "secret_key",
                &crate::routes::redacted(Some(&self.secret_key)),
            )
            .finish()
    }
}

/// The app's subscriptions.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WebhookSubscriptionList)]
pub(crate) struct SubscriptionList {
    subscriptions: Vec<SubscriptionView>,
}

/// Subscribe to events
///
/// Registers a URL to receive the catalogue's events for this app, signed with the returned
/// `secret_key` (shown only here). At most `PUSH_MAX_SUBSCRIPTIONS_PER_APP` (default 20) per
/// app: past that, 409 `conflict`.
#[utoipa::path(
    tag = "push",
    security(("app_api_key" = [])),
    request_body = CreateSubscription,
    responses(
        (status = 201, description = "The subscription, with its secret", body = CreatedSubscription),
        (status = 400, description = "`invalid_request` or `invalid_json`: the message says which field", body = ErrorBody),
        (status = 409, description = "`conflict`: the app has as many subscriptions as allowed", body = ErrorBody),
    )
)]
#[post("/api/webhooks/subscriptions")]
#[tracing::instrument(skip_all, fields(app.id = %tenant.app_id))]
pub(crate) async fn create_subscription(
    tenant: Tenant,
    state: Data<ApiState>,
    body: JsonObject<CreateSubscription>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    let webhook_url = checked_url(&body.webhook_url, state.webhook_urls).await?;
    let events = checked_events(body.events)?;
    let description = checked_description(body.description)?;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret_key = domain::push::secret_from_bytes(&bytes);
    let mut conn = state.conn().await?;
    let created = PushSubscription::create(
        &mut conn,
        &state.keyring,
        tenant.app_id,
        &NewSubscription {
            webhook_url: &webhook_url,
            events: &events,
            description: description.as_deref(),
        },
        &secret_key,
        state.max_push_subscriptions,
    )
    .await?
    .ok_or_else(|| {
        ApiError::Conflict(format!(
            "the app already has {} webhook subscriptions, the most allowed",
            state.max_push_subscriptions
        ))
    })?;
    Ok(HttpResponse::Created().json(CreatedSubscription {
        subscription: created.into(),
        secret_key,
    }))
}

/// List subscriptions
///
/// The app's webhook subscriptions, oldest first, with their delivery health; never their
/// secret.
#[utoipa::path(
    tag = "push",
    security(("app_api_key" = [])),
    responses((status = 200, description = "The app's subscriptions", body = SubscriptionList))
)]
#[get("/api/webhooks/subscriptions")]
pub(crate) async fn list_subscriptions(
    tenant: Tenant,
    state: Data<ApiState>,
) -> Result<Json<SubscriptionList>, ApiError> {
    let mut conn = state.conn().await?;
    let subscriptions = PushSubscription::list(&mut conn, tenant.app_id).await?;
    Ok(Json(SubscriptionList {
        subscriptions: subscriptions.into_iter().map(Into::into).collect(),
    }))
}

/// Get a subscription
///
/// One of the app's subscriptions; another app's is a 404.
#[utoipa::path(
    tag = "push",
    security(("app_api_key" = [])),
    params(("id" = String, Path, description = "The subscription's id")),
    responses(
        (status = 200, description = "The subscription", body = SubscriptionView),
        (status = 404, description = "`not_found`: no such subscription for this app", body = ErrorBody),
    )
)]
#[get("/api/webhooks/subscriptions/{id}")]
pub(crate) async fn get_subscription(
    tenant: Tenant,
    state: Data<ApiState>,
    id: Path<String>,
) -> Result<Json<SubscriptionView>, ApiError> {
    let id = subscription_id(&id)?;
    let mut conn = state.conn().await?;
    let found = PushSubscription::find(&mut conn, tenant.app_id, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(found.into()))
}

/// Update a subscription
///
/// Changes its URL, events or description; `active: true` reactivates a deactivated one and
/// resets its failure count, `active: false` pauses it.
#[utoipa::path(
    tag = "push",
    security(("app_api_key" = [])),
    params(("id" = String, Path, description = "The subscription's id")),
    request_body = UpdateSubscription,
    responses(
        (status = 200, description = "The updated subscription", body = SubscriptionView),
        (status = 400, description = "`invalid_request` or `invalid_json`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such subscription for this app", body = ErrorBody),
    )
)]
#[patch("/api/webhooks/subscriptions/{id}")]
#[tracing::instrument(skip_all, fields(app.id = %tenant.app_id))]
pub(crate) async fn update_subscription(
    tenant: Tenant,
    state: Data<ApiState>,
    id: Path<String>,
    body: JsonObject<UpdateSubscription>,
) -> Result<Json<SubscriptionView>, ApiError> {
    let id = subscription_id(&id)?;
    let body = body.0;
    let webhook_url = match body.webhook_url.as_deref() {
        Some(url) => Some(checked_url(url, state.webhook_urls).await?),
        None => None,
    };
    let changes = SubscriptionChanges {
        webhook_url,
        events: body.events.map(checked_events).transpose()?,
        description: checked_description(body.description)?,
        active: body.active,
    };
    let mut conn = state.conn().await?;
    let updated = PushSubscription::update(&mut conn, tenant.app_id, id, changes)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(updated.into()))
}

/// Delete a subscription
///
/// Stops deliveries to it at once; its pending deliveries are dropped.
#[utoipa::path(
    tag = "push",
    security(("app_api_key" = [])),
    params(("id" = String, Path, description = "The subscription's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`not_found`: no such subscription for this app", body = ErrorBody),
    )
)]
#[delete("/api/webhooks/subscriptions/{id}")]
#[tracing::instrument(skip_all, fields(app.id = %tenant.app_id))]
pub(crate) async fn delete_subscription(
    tenant: Tenant,
    state: Data<ApiState>,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = subscription_id(&id)?;
    let mut conn = state.conn().await?;
    if PushSubscription::delete(&mut conn, tenant.app_id, id).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound)
    }
}

/// How long a rotated-out secret keeps signing (a second signature), in seconds: 24 h.
const ROTATION_GRACE_S: i64 = 24 * 3_600;

/// A new secret after a rotation, shown only in this answer.
#[derive(Serialize, ToSchema)]
#[schema(as = RotatedWebhookSecret)]
pub(crate) struct RotatedSecret {
    id: String,
    /// The new `whsec_...` secret. Shown only here.
    secret_key: String,
    /// Until then (RFC 3339 UTC) deliveries carry a second `webhook-signature` made with the
    /// former secret, so receivers can switch without losing events.
    previous_secret_expires_at: String,
}

impl std::fmt::Debug for RotatedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotatedSecret")
            .field("id", &self.id)
            .field(
                "secret_key",
                &crate::routes::redacted(Some(&self.secret_key)),
            )
            .field(
                "previous_secret_expires_at",
                &self.previous_secret_expires_at,
            )
            .finish()
    }
}

/// Rotate a subscription's secret
///
/// Issues a new `secret_key` (shown only in this answer). For 24 hours the former secret keeps
/// signing too: `webhook-signature` then holds two `v1,` signatures, one per secret (Standard
/// Webhooks); `x-webhook-signature` uses the new secret.
#[utoipa::path(
    tag = "push",
    security(("app_api_key" = [])),
    params(("id" = String, Path, description = "The subscription's id")),
    responses(
        (status = 200, description = "The new secret", body = RotatedSecret),
        (status = 404, description = "`not_found`: no such subscription for this app", body = ErrorBody),
    )
)]
#[post("/api/webhooks/subscriptions/{id}/rotate-secret")]
#[tracing::instrument(skip_all, fields(app.id = %tenant.app_id))]
pub(crate) async fn rotate_secret(
    tenant: Tenant,
    state: Data<ApiState>,
    id: Path<String>,
) -> Result<Json<RotatedSecret>, ApiError> {
    let id = subscription_id(&id)?;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret_key = domain::push::secret_from_bytes(&bytes);
    let mut conn = state.conn().await?;
    let (subscription, expires_at) = PushSubscription::rotate_secret(
        &mut conn,
        &state.keyring,
        tenant.app_id,
        id,
        &secret_key,
        ROTATION_GRACE_S,
    )
    .await?
    .ok_or(ApiError::NotFound)?;
    Ok(Json(RotatedSecret {
        id: subscription.id.to_string(),
        secret_key,
        previous_secret_expires_at: timestamp(expires_at),
    }))
}

/// `Debug` of each type here that holds a secret, filled with `secret` (for the redaction test).
#[cfg(test)]
pub(super) fn debug_samples(secret: &str) -> Vec<String> {
    vec![
        format!(
            "{:?}",
            CreatedSubscription {
                subscription: SubscriptionView {
                    id: String::new(),
                    webhook_url: String::new(),
                    events: Vec::new(),
                    description: None,
                    active: true,
                    consecutive_failures: 0,
                    last_success_at: None,
                    last_failure_at: None,
                    disabled_reason: None,
                    created_at: String::new(),
                    updated_at: String::new(),
                },
                secret_key: secret.into(),
            }
        ),
        format!(
            "{:?}",
            RotatedSecret {
                id: String::new(),
                secret_key: secret.into(),
                previous_secret_expires_at: String::new(),
            }
        ),
    ]
}
