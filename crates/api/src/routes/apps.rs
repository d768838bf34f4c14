//! `/internal/apps`: tenant administration.

use actix_web::HttpResponse;
use actix_web::web::{Data, Json};
use serde::Deserialize;
use serde_json::json;

use db::apps::{App, NewApp};

use crate::auth::InternalAdmin;
use crate::error::ApiError;
use crate::keys::{NewKey, generate_webhook_secret};
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
            let printable = secret.bytes().all(|b| b.is_ascii_graphic());
            if !(16..=255).contains(&secret.len()) || !printable {
                return Err(ApiError::InvalidRequest(
                    "webhook_secret: must be 16 to 255 printable ASCII characters without spaces"
                        .into(),
                ));
            }
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

    let mut conn = state.pool.get().await.map_err(db::DbError::from)?;
    let new_app = NewApp {
        name,
        webhook_secret: &webhook_secret,
    };
    let app = App::create_with_key(&mut conn, &new_app, &key.key_id, &key_hash).await?;
    tracing::info!(app.id = %app.id, "App created.");
    Ok(HttpResponse::Created().json(json!({
        "app_id": app.id,
        "name": app.name,
        "api_key": key.key,
        "webhook_path": format!("/webhooks/dialpad/{}", app.id),
        "webhook_secret": webhook_secret,
        "message": "Store api_key and webhook_secret now: they are not shown again. Register \
                    webhook_path on your ingest host as the Dialpad webhook URL, signed with \
                    webhook_secret.",
    })))
}
