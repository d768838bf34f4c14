//! `/internal/connections`: connecting an app to Dialpad with its own API key.

use actix_web::HttpResponse;
use actix_web::post;
use actix_web::web::{Bytes, Data, Query};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use db::dialpad::{AUTH_API_KEY, Connection};

use crate::auth::InternalAdmin;
use crate::error::{ApiError, ErrorBody};
use crate::routes::ids::AppQuery;
use crate::routes::object_body;
use crate::startup::ApiState;

/// Body of `POST /internal/connections`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApiKeyConnectionRequest {
    /// The app's own Dialpad company API key. Write-only: stored encrypted, never returned.
    #[schema(value_type = String, write_only)]
    pub(super) api_key: SecretString,
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
