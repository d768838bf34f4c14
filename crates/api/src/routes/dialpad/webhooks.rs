//! `/internal/webhooks`: the webhook at Dialpad that delivers an app's events to ingest.

use actix_web::HttpResponse;
use actix_web::web::{Bytes, Data, Json, Path, Query};
use actix_web::{delete, get, post};
use reqwest::Url;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use db::apps::App;
use db::dialpad::{DialpadSubscription, DialpadWebhook, NewDialpadWebhook};

use super::{NOT_CONFIGURED_503, delete_at_dialpad};
use crate::auth::InternalAdmin;
use crate::error::{ApiError, ErrorBody};
use crate::keys::validate_webhook_secret;
use crate::routes::ids::{AppQuery, parse_dialpad_id};
use crate::routes::{optional_body, timestamp};
use crate::startup::ApiState;

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
    pub(super) webhook_url: Option<String>,
    /// The secret Dialpad signs with (16–255 printable ASCII characters, no spaces); replaces
    /// the app's inbound secret. Default: the app's current inbound secret. Write-only: never
    /// returned.
    #[schema(min_length = 16, max_length = 255, write_only)]
    pub(super) webhook_secret: Option<String>,
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
