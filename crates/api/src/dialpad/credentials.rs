//! The credential an app's Dialpad calls are made with, fresh.

use chrono::{DateTime, TimeDelta, Utc};
use diesel_async::AsyncConnection;
use secrecy::SecretString;
use uuid::Uuid;

use db::DbError;
use db::dialpad::{AUTH_API_KEY, Connection, OAuthTokens, STATUS_REAUTH_REQUIRED};

use super::client::{DialpadError, TokenResponse};
use crate::error::ApiError;
use crate::startup::ApiState;

/// An access token with less than this left is refreshed before use.
const REFRESH_MARGIN: TimeDelta = TimeDelta::minutes(5);
/// Lifetime assumed when Dialpad's token answer has no `expires_in` (`docs/dialpad.md` §7: unknown; the
/// common client default).
const DEFAULT_EXPIRES_IN_SECS: i64 = 3600;

/// When a token from Dialpad's token endpoint expires.
pub(crate) fn token_expiry(tokens: &TokenResponse) -> DateTime<Utc> {
    let seconds = tokens
        .expires_in
        .filter(|s| *s > 0)
        .unwrap_or(DEFAULT_EXPIRES_IN_SECS);
    Utc::now() + TimeDelta::seconds(seconds)
}

/// The token to call Dialpad with for `app_id`: the app's own connection when it has one (its
/// OAuth access token, refreshed first if it has less than 5 minutes left, or its API key),
/// otherwise the server-wide `DIALPAD_API_KEY`.
///
/// # Errors
/// - [`ApiError::DialpadReauthRequired`] when the connection is marked so, or Dialpad refuses
///   the refresh (which marks it);
/// - [`ApiError::DialpadNotConnected`] when there is no connection and no server key;
/// - [`ApiError::Dialpad`] when the refresh fails for another reason (nothing is changed);
/// - database errors.
pub(crate) async fn credential_for(
    state: &ApiState,
    app_id: Uuid,
) -> Result<SecretString, ApiError> {
    let connection = {
        let mut conn = state.conn().await?;
        Connection::find(&mut conn, app_id).await?
    };
    let Some(connection) = connection else {
        return state
            .server_api_key
            .clone()
            .ok_or(ApiError::DialpadNotConnected);
    };
    if connection.status == STATUS_REAUTH_REQUIRED {
        return Err(ApiError::DialpadReauthRequired);
    }
    if connection.auth_type == AUTH_API_KEY || is_fresh(&connection) {
        return Ok(connection
            .access_token(&state.keyring)
            .map_err(DbError::from)?);
    }
    refresh(state, app_id).await
}

fn is_fresh(connection: &Connection) -> bool {
    connection
        .token_expires_at
        .is_some_and(|expires_at| expires_at > Utc::now() + REFRESH_MARGIN)
}

enum Refreshed {
    Token(SecretString),
    Refused,
    Failed(DialpadError),
}

/// Refreshes under the connection's row lock. Dialpad rotates refresh tokens (`docs/dialpad.md` §7), so a
/// second caller waits for the first, then finds a fresh token and uses it instead of spending
/// the old refresh token again. The new tokens are committed in the same transaction, right
/// after Dialpad answers.
async fn refresh(state: &ApiState, app_id: Uuid) -> Result<SecretString, ApiError> {
    let oauth = state.dialpad.oauth().ok_or(ApiError::NotConfigured(
        "DIALPAD_CLIENT_ID and DIALPAD_CLIENT_SECRET",
    ))?;
    let keyring = &state.keyring;
    let mut conn = state.conn().await?;
    let outcome = conn
        .transaction(async |conn| {
            let Some(locked) = Connection::find_for_update(conn, app_id).await? else {
                return Ok::<_, DbError>(Refreshed::Refused);
            };
            if locked.status == STATUS_REAUTH_REQUIRED {
                return Ok(Refreshed::Refused);
            }
            if is_fresh(&locked) {
                return Ok(Refreshed::Token(locked.access_token(keyring)?));
            }
            let Some(refresh_token) = locked.refresh_token(keyring)? else {
                let reason = "the access token expired and Dialpad issued no refresh token";
                Connection::mark_reauth_required(conn, app_id, reason).await?;
                return Ok(Refreshed::Refused);
            };
            match state.dialpad.refresh(oauth, &refresh_token).await {
                Ok(tokens) => {
                    let rotated = tokens.refresh_token.as_ref().unwrap_or(&refresh_token);
                    let stored = OAuthTokens {
                        access_token: &tokens.access_token,
                        refresh_token: Some(rotated),
                        expires_at: token_expiry(&tokens),
                    };
                    Connection::save_refreshed(conn, keyring, app_id, &stored).await?;
                    tracing::info!(app.id = %app_id, "Dialpad access token refreshed.");
                    Ok(Refreshed::Token(tokens.access_token))
                }
                // RFC 6749 §5.2: invalid_grant / invalid_client come back as 400 or 401.
                Err(error) if error.status().is_some_and(|s| matches!(s.as_u16(), 400 | 401 | 403)) => {
                    tracing::warn!(app.id = %app_id, error = %error, "Dialpad refused the refresh; re-authorisation required.");
                    Connection::mark_reauth_required(conn, app_id, &error.to_string()).await?;
                    Ok(Refreshed::Refused)
                }
                Err(error) => Ok(Refreshed::Failed(error)),
            }
        })
        .await?;
    match outcome {
        Refreshed::Token(token) => Ok(token),
        Refreshed::Refused => Err(ApiError::DialpadReauthRequired),
        Refreshed::Failed(error) => Err(error.into()),
    }
}
