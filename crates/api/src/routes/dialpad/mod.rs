//! `/internal/webhooks`, `/internal/subscriptions`, `/internal/connections`: onboarding an app
//! at Dialpad by API (admin bearer secret).
//!
//! Onboarding is: `POST /internal/apps` → connect (`GET /auth/dialpad/connect` for OAuth, or
//! `POST /internal/connections` with the app's Dialpad API key; apps without either use the
//! server's `DIALPAD_API_KEY`) → `POST /internal/webhooks/create` → `POST /internal/subscriptions`.

mod connections;
mod subscriptions;
mod webhooks;

use utoipa_actix_web::service_config::ServiceConfig;

use crate::error::ApiError;
use dialpad::DialpadError;

pub(crate) use subscriptions::SubscriptionView;
pub(crate) use webhooks::WebhookView;

/// This module's routes (`routes::configure`). `/internal/webhooks/create` comes before
/// `/internal/webhooks/{webhook_id}`.
pub(crate) fn configure(cfg: &mut ServiceConfig) {
    cfg.service(connections::connect_with_api_key)
        .service(webhooks::create_webhook)
        .service(webhooks::list_webhooks)
        .service(webhooks::delete_webhook)
        .service(subscriptions::create_subscriptions)
        .service(subscriptions::list_subscriptions)
        .service(subscriptions::delete_subscription);
}

/// The 503 of handlers that may refresh an app's OAuth token (`credential_for`), with the
/// database's.
const NOT_CONFIGURED_503: &str = "`not_configured`: the app's OAuth token needs a refresh and the server lacks `DIALPAD_CLIENT_ID`/`DIALPAD_CLIENT_SECRET`; `unavailable`: the database cannot be reached (`Retry-After: 2`)";

/// A Dialpad delete that found nothing to delete has reached the state we want.
fn delete_at_dialpad(result: Result<(), DialpadError>) -> Result<(), ApiError> {
    match result {
        Err(error) if error.status().is_some_and(|s| s.as_u16() == 404) => Ok(()),
        other => Ok(other?),
    }
}

/// `Debug` of each type here that holds a secret, filled with `secret` (for the redaction test).
#[cfg(test)]
pub(super) fn debug_samples(secret: &str) -> Vec<String> {
    vec![
        format!(
            "{:?}",
            webhooks::CreateWebhookRequest {
                webhook_url: None,
                webhook_secret: Some(secret.into()),
            }
        ),
        format!(
            "{:?}",
            connections::ApiKeyConnectionRequest {
                api_key: secret.into(),
            }
        ),
    ]
}
