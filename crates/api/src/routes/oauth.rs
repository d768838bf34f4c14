//! `/auth/dialpad/*`: connecting an app to Dialpad with OAuth 2.0, authorization code + PKCE
//! (RFC 6749 §4.1, RFC 7636; Dialpad's endpoints in `docs/dialpad.md` §7,
//! <https://developers.dialpad.com/docs/oauth>).

use actix_web::http::header;
use actix_web::web::{Data, Query};
use actix_web::{HttpRequest, HttpResponse, get};
use chrono::{TimeDelta, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use db::DbError;
use db::apps::App;
use db::dialpad::{Connection, OAuthState, OAuthTokens};

use crate::auth::authorize_for_app;
use crate::dialpad::pkce::{Pkce, new_state, state_hash};
use crate::dialpad::{OAuthApp, token_expiry};
use crate::error::{ApiError, ErrorBody};
use crate::routes::dialpad::AppQuery;
use crate::startup::ApiState;

/// This module's routes (`routes::configure`).
pub(crate) fn configure(cfg: &mut ServiceConfig) {
    cfg.service(connect).service(callback);
}

/// How long a connection attempt may take, from the redirect to Dialpad to the callback.
const STATE_TTL: TimeDelta = TimeDelta::minutes(10);

fn oauth_app(state: &ApiState) -> Result<&OAuthApp, ApiError> {
    state.dialpad.oauth().ok_or(ApiError::NotConfigured(
        "DIALPAD_CLIENT_ID, DIALPAD_CLIENT_SECRET and DIALPAD_REDIRECT_URI",
    ))
}

/// Start connecting an app to Dialpad (OAuth)
///
/// Stores a single-use `state` (valid 10 minutes) with a PKCE code verifier and redirects to
/// Dialpad's authorize URL with `response_type=code`, `client_id`, `redirect_uri`, `scope`
/// (`DIALPAD_SCOPES`, when set), `state`, `code_challenge` and `code_challenge_method=S256`.
///
/// Needs the admin bearer secret or the app's own `x-app-api-key`: otherwise anyone knowing an
/// app id could attach their Dialpad company to it. A client's backend calls this and sends
/// its user's browser to the `Location`; Dialpad then sends the browser to
/// `GET /auth/dialpad/callback`.
#[utoipa::path(
    tag = "oauth",
    security(("internal_api_secret" = []), ("app_api_key" = [])),
    params(AppQuery),
    responses(
        (status = 302, description = "To Dialpad's authorize URL (`Cache-Control: no-store`)", headers(
            ("Location" = String, description = "Dialpad's authorize URL, with the `state` and PKCE `code_challenge`"),
            ("Cache-Control" = String, description = "`no-store`"),
        )),
        (status = 400, description = "`invalid_parameter`: `app_id` missing or not a UUID", body = ErrorBody),
        (status = 404, description = "`not_found`: no such active app, or the API key is another app's", body = ErrorBody),
        (status = 503, description = "`not_configured`: the server lacks `DIALPAD_CLIENT_ID`, `DIALPAD_CLIENT_SECRET` and `DIALPAD_REDIRECT_URI`; `unavailable`: the database cannot be reached (`Retry-After: 2`)", body = ErrorBody),
    )
)]
#[get("/auth/dialpad/connect")]
#[tracing::instrument(skip_all)]
pub(crate) async fn connect(
    request: HttpRequest,
    state: Data<ApiState>,
    query: Query<AppQuery>,
) -> Result<HttpResponse, ApiError> {
    let app_id = query.app_id()?;
    authorize_for_app(&request, &state, app_id).await?;
    let oauth = oauth_app(&state)?;
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let app = App::find(&mut conn, app_id)
        .await?
        .filter(|app| app.active)
        .ok_or(ApiError::NotFound)?;
    let oauth_state = new_state();
    let pkce = Pkce::generate();
    OAuthState::create(
        &mut conn,
        &state.keyring,
        &state_hash(&oauth_state),
        app.id,
        state.dialpad.environment().as_str(),
        &pkce.verifier,
        Utc::now() + STATE_TTL,
    )
    .await?;
    let location = state
        .dialpad
        .authorize_url(oauth, oauth_state.expose_secret(), &pkce.challenge);
    tracing::info!(app.id = %app.id, "Dialpad OAuth connection started.");
    Ok(HttpResponse::Found()
        .insert_header((header::LOCATION, location.as_str()))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish())
}

/// Query of Dialpad's redirect back to us (RFC 6749 §4.1.2).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct CallbackQuery {
    /// The authorization code, on success.
    code: Option<String>,
    /// The `state` of `GET /auth/dialpad/connect` (required; single use).
    #[param(required = true, value_type = String)]
    state: Option<String>,
    /// Dialpad's error code when the authorization failed, e.g. `access_denied`.
    error: Option<String>,
}

/// An app connected to Dialpad by OAuth.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OAuthConnected {
    /// `Dialpad connected`.
    message: String,
    /// The app's id (a UUID).
    #[schema(value_type = String, format = "uuid")]
    app_id: Uuid,
    /// The Dialpad environment: `sandbox` or `production`.
    environment: String,
}

/// Finish connecting an app to Dialpad (OAuth callback)
///
/// Where Dialpad sends the browser back. Takes the state (once), exchanges the code with its
/// PKCE verifier, reads the company id (when the user may), and stores the tokens encrypted.
/// Answers JSON, or redirects to `OAUTH_SUCCESS_REDIRECT_URL` when the server sets it. No
/// credential: the single-use `state` authenticates the request.
#[utoipa::path(
    tag = "oauth",
    params(CallbackQuery),
    responses(
        (status = 200, description = "Connected (the server has no `OAUTH_SUCCESS_REDIRECT_URL`)", body = OAuthConnected),
        (status = 302, description = "Connected: to `OAUTH_SUCCESS_REDIRECT_URL`, when set", headers(
            ("Location" = String, description = "`OAUTH_SUCCESS_REDIRECT_URL` with `app_id` and `status=connected` added to its query"),
        )),
        (status = 400, description = "`invalid_parameter`: no `state`, or no `code`; `invalid_state`: the state is unknown, expired or used; `access_denied`: the user refused; `oauth_error`: another error from Dialpad (the message names it)", body = ErrorBody),
        (status = 502, description = "`dialpad_error`: Dialpad refused the code exchange (the message says its status); `dialpad_unreachable`: timeout or connection failure", body = ErrorBody),
        (status = 503, description = "`not_configured`: the server lacks `DIALPAD_CLIENT_ID`, `DIALPAD_CLIENT_SECRET` and `DIALPAD_REDIRECT_URI`; `unavailable`: the database cannot be reached (`Retry-After: 2`)", body = ErrorBody),
    )
)]
#[get("/auth/dialpad/callback")]
#[tracing::instrument(skip_all)]
pub(crate) async fn callback(
    state: Data<ApiState>,
    query: Query<CallbackQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let present = |value: Option<String>| value.filter(|v| !v.is_empty());
    let oauth_state: SecretString = present(query.state)
        .ok_or(ApiError::InvalidParameter {
            name: "state",
            message: "is required".into(),
        })?
        .into();
    let hash = state_hash(&oauth_state);
    if let Some(error) = present(query.error) {
        let mut conn = state.pool.get().await.map_err(DbError::from)?;
        OAuthState::discard(&mut conn, &hash).await?;
        return Err(if error == "access_denied" {
            ApiError::AccessDenied
        } else {
            // RFC 6749 §4.1.2.1 error codes are short ASCII words; repeat nothing else.
            ApiError::OAuthError(
                error
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .take(64)
                    .collect(),
            )
        });
    }
    let code = present(query.code).ok_or(ApiError::InvalidParameter {
        name: "code",
        message: "is required".into(),
    })?;
    let oauth = oauth_app(&state)?;
    let consumed = {
        let mut conn = state.pool.get().await.map_err(DbError::from)?;
        OAuthState::consume(&mut conn, &state.keyring, &hash).await??
    };
    let tokens = state
        .dialpad
        .exchange_code(oauth, &code, &consumed.code_verifier)
        .await?;
    let company_id = match state.dialpad.company(&tokens.access_token).await {
        Ok(company) => Some(company.id),
        Err(error) => {
            // Only company admins may read the company; the connection works without it.
            tracing::warn!(error = %error, "Dialpad company id unavailable.");
            None
        }
    };
    let scopes = tokens
        .scope
        .clone()
        .or_else(|| Some(oauth.scopes.trim().to_owned()).filter(|s| !s.is_empty()));
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    Connection::save_oauth(
        &mut conn,
        &state.keyring,
        consumed.app_id,
        &consumed.environment,
        &OAuthTokens {
            access_token: &tokens.access_token,
            refresh_token: tokens.refresh_token.as_ref(),
            expires_at: token_expiry(&tokens),
        },
        company_id,
        scopes.as_deref(),
    )
    .await?;
    tracing::info!(app.id = %consumed.app_id, "Dialpad connected by OAuth.");

    if let Some(redirect) = &state.oauth_success_redirect_url {
        let mut url = redirect.clone();
        url.query_pairs_mut()
            .append_pair("app_id", &consumed.app_id.to_string())
            .append_pair("status", "connected");
        return Ok(HttpResponse::Found()
            .insert_header((header::LOCATION, url.as_str()))
            .finish());
    }
    Ok(HttpResponse::Ok().json(OAuthConnected {
        message: "Dialpad connected".into(),
        app_id: consumed.app_id,
        environment: consumed.environment,
    }))
}
