//! `/auth/dialpad/*`: connecting an app to Dialpad with OAuth 2.0, authorization code + PKCE
//! (RFC 6749 §4.1, RFC 7636; Dialpad's endpoints in `docs/dialpad.md` §7,
//! <https://developers.dialpad.com/docs/oauth>).

use actix_web::http::header;
use actix_web::web::{Data, Query};
use actix_web::{HttpRequest, HttpResponse, get, post};
use chrono::{TimeDelta, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use db::apps::App;
use db::dialpad::{ConnectLink, Connection, NewState, OAuthState, OAuthTokens, StateRejection};

use crate::auth::authorize_for_app;
use crate::error::{ApiError, ErrorBody};
use crate::routes::ids::parse_app_id;
use crate::startup::ApiState;
use dialpad::pkce::{Pkce, new_state, state_hash};
use dialpad::{OAuthApp, token_expiry};

/// This module's routes (`routes::configure`).
pub(crate) fn configure(cfg: &mut ServiceConfig) {
    cfg.service(connect)
        .service(callback)
        .service(create_connect_link);
}

/// `?app_id=` or `?link=` of `GET /auth/dialpad/connect`, and `?replace=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ConnectQuery {
    /// The app (a UUID), with its credentials; or give `link` instead.
    #[param(value_type = Option<String>, format = "uuid")]
    app_id: Option<String>,
    /// A one-time connect link's token (`POST /internal/apps/{app_id}/connect-link`): stands
    /// in for the app's credentials, once.
    link: Option<String>,
    /// Allow the app to switch to another Dialpad company than its current connection's
    /// (otherwise such a callback is refused). With `app_id` only; a link carries its own.
    replace: Option<bool>,
}

/// `?replace=` of `POST /internal/apps/{app_id}/connect-link`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ConnectLinkQuery {
    /// Allow the app to switch to another Dialpad company than its current connection's.
    replace: Option<bool>,
}

/// A one-time connect link.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ConnectLinkView {
    /// Open it in a browser (once, within 10 minutes) to connect the app to Dialpad. Holds a
    /// single-use secret: hand it only to the person who connects.
    url: String,
    /// RFC 3339 UTC.
    expires_at: String,
    /// The app's id (a UUID).
    #[schema(value_type = String, format = "uuid")]
    app_id: Uuid,
    /// Whether it may switch the app to another Dialpad company.
    replace: bool,
}

/// Create a one-time connect link
///
/// A URL, valid 10 minutes and once, that a person opens in a browser to connect the app to
/// Dialpad by OAuth, without an API key in the browser (what the old setup guide's
/// `window.location = .../auth/dialpad/connect?app_id=...` did). Needs the admin bearer secret
/// or the app's own `x-app-api-key`. `replace=true` lets the connection switch the app to
/// another Dialpad company than its current one.
#[utoipa::path(
    tag = "oauth",
    security(("internal_api_secret" = []), ("app_api_key" = [])),
    params(("app_id" = String, Path, description = "The app (a UUID)", format = "uuid"), ConnectLinkQuery),
    responses(
        (status = 201, description = "The link", body = ConnectLinkView),
        (status = 400, description = "`invalid_parameter`: `app_id` is not a UUID", body = ErrorBody),
        (status = 401, description = "`unauthorized`, `missing_api_key`, `invalid_api_key`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such active app, or the API key is another app's", body = ErrorBody),
        (status = 503, description = "`not_configured`: the server lacks `DIALPAD_CLIENT_ID`, `DIALPAD_CLIENT_SECRET` and `DIALPAD_REDIRECT_URI`; `unavailable`: the database cannot be reached", body = ErrorBody),
    )
)]
#[post("/internal/apps/{app_id}/connect-link")]
#[tracing::instrument(skip_all)]
pub(crate) async fn create_connect_link(
    request: HttpRequest,
    state: Data<ApiState>,
    app_id: actix_web::web::Path<String>,
    query: Query<ConnectLinkQuery>,
) -> Result<HttpResponse, ApiError> {
    let app_id = parse_app_id(&app_id)?;
    authorize_for_app(&request, &state, app_id).await?;
    let oauth = oauth_app(&state)?;
    let mut conn = state.conn().await?;
    active_app(&mut conn, app_id).await?;
    let token = new_state();
    let expires_at = Utc::now() + STATE_TTL;
    let replace = query.replace.unwrap_or(false);
    ConnectLink::create(&mut conn, &state_hash(&token), app_id, replace, expires_at).await?;
    // The api's public origin is the redirect URI's: Dialpad sends browsers back there.
    let mut url =
        reqwest::Url::parse(&oauth.redirect_uri).map_err(|e| ApiError::Internal(e.into()))?;
    url.set_path("/auth/dialpad/connect");
    url.set_query(None);
    url.query_pairs_mut()
        .append_pair("link", token.expose_secret());
    tracing::info!(app.id = %app_id, replace, "Dialpad connect link created.");
    Ok(HttpResponse::Created()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(ConnectLinkView {
            url: url.to_string(),
            expires_at: crate::routes::timestamp(expires_at),
            app_id,
            replace,
        }))
}

/// How long a connection attempt may take, from the redirect to Dialpad to the callback.
const STATE_TTL: TimeDelta = TimeDelta::minutes(10);

/// The app, if it exists and is active; else 404 (nothing to connect).
async fn active_app(conn: &mut db::AsyncPgConnection, app_id: Uuid) -> Result<App, ApiError> {
    App::find(conn, app_id)
        .await?
        .filter(|app| app.active)
        .ok_or(ApiError::NotFound)
}

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
/// Needs the admin bearer secret or the app's own `x-app-api-key` with `app_id`: otherwise
/// anyone knowing an app id could attach their Dialpad company to it. A client's backend calls
/// this and sends its user's browser to the `Location`; Dialpad then sends the browser to
/// `GET /auth/dialpad/callback`. Or, in a browser, with `link` alone: a one-time connect link
/// (`POST /internal/apps/{app_id}/connect-link`) stands in for the credentials, once.
#[utoipa::path(
    tag = "oauth",
    security(("internal_api_secret" = []), ("app_api_key" = [])),
    params(ConnectQuery),
    responses(
        (status = 302, description = "To Dialpad's authorize URL (`Cache-Control: no-store`)", headers(
            ("Location" = String, description = "Dialpad's authorize URL, with the `state` and PKCE `code_challenge`"),
            ("Cache-Control" = String, description = "`no-store`"),
        )),
        (status = 400, description = "`invalid_parameter`: neither `app_id` (a UUID) nor `link`, or the link is unknown, expired or already used", body = ErrorBody),
        (status = 401, description = "`unauthorized`, `missing_api_key`, `invalid_api_key` (with `app_id`)", body = ErrorBody),
        (status = 404, description = "`not_found`: no such active app, or the API key is another app's", body = ErrorBody),
        (status = 503, description = "`not_configured`: the server lacks `DIALPAD_CLIENT_ID`, `DIALPAD_CLIENT_SECRET` and `DIALPAD_REDIRECT_URI`; `unavailable`: the database cannot be reached (`Retry-After: 2`)", body = ErrorBody),
    )
)]
#[get("/auth/dialpad/connect")]
#[tracing::instrument(skip_all)]
pub(crate) async fn connect(
    request: HttpRequest,
    state: Data<ApiState>,
    query: Query<ConnectQuery>,
) -> Result<HttpResponse, ApiError> {
    let oauth = oauth_app(&state)?;
    let mut conn = state.conn().await?;
    let (app_id, replace_company) = match (&query.link, &query.app_id) {
        (Some(link), _) => {
            let taken = ConnectLink::consume(&mut conn, &state_hash(&link.clone().into())).await?;
            let link = taken.map_err(|rejection| ApiError::InvalidParameter {
                name: "link",
                message: format!(
                    "{}; ask for a new connect link",
                    match rejection {
                        StateRejection::Unknown => "is unknown",
                        StateRejection::Expired => "has expired",
                        StateRejection::AlreadyUsed => "was already used",
                    }
                ),
            })?;
            (link.app_id, link.replace_company)
        }
        (None, Some(raw)) => {
            let app_id = parse_app_id(raw)?;
            authorize_for_app(&request, &state, app_id).await?;
            (app_id, query.replace.unwrap_or(false))
        }
        (None, None) => {
            return Err(ApiError::InvalidParameter {
                name: "app_id",
                message: "is required (or a connect link's `link`)".into(),
            });
        }
    };
    let app = active_app(&mut conn, app_id).await?;
    let oauth_state = new_state();
    let pkce = Pkce::generate();
    OAuthState::create(
        &mut conn,
        &state.keyring,
        &state_hash(&oauth_state),
        &NewState {
            app_id: app.id,
            environment: state.dialpad.environment().as_str(),
            code_verifier: &pkce.verifier,
            replace_company,
            expires_at: Utc::now() + STATE_TTL,
        },
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
    /// `Dialpad connected: <app name> to company <id>`, for the person who connected it.
    message: String,
    /// The app's id (a UUID).
    #[schema(value_type = String, format = "uuid")]
    app_id: Uuid,
    /// The app's name.
    app_name: String,
    /// The Dialpad company that authorised it (a string); `null` when the user may not read
    /// the company (only company admins may).
    dialpad_company_id: Option<String>,
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
        (status = 409, description = "`conflict`: the app is connected to another Dialpad company than the one that authorised; nothing is changed (connect again with `replace=true` to switch)", body = ErrorBody),
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
        let mut conn = state.conn().await?;
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
        let mut conn = state.conn().await?;
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
    let mut conn = state.conn().await?;
    let app = App::find(&mut conn, consumed.app_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let current_company = Connection::find(&mut conn, consumed.app_id)
        .await?
        .and_then(|connection| connection.dialpad_company_id);
    if let (Some(current), Some(new)) = (current_company, company_id)
        && current != new
        && !consumed.replace_company
    {
        tracing::warn!(app.id = %app.id, company.current = current, company.new = new, "Dialpad connection for another company refused.");
        return Err(ApiError::Conflict(format!(
            "app {} is connected to Dialpad company {current}, and company {new} authorised this: \
             nothing was changed; to switch companies, connect again with replace=true",
            app.name
        )));
    }
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
        message: match company_id {
            Some(company) => format!("Dialpad connected: {} to company {company}", app.name),
            None => format!("Dialpad connected: {}", app.name),
        },
        app_id: consumed.app_id,
        app_name: app.name,
        dialpad_company_id: company_id.map(|id| id.to_string()),
        environment: consumed.environment,
    }))
}
