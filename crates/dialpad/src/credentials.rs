//! The credential an app's Dialpad calls are made with, fresh.

use chrono::{DateTime, TimeDelta, Utc};
use diesel_async::AsyncConnection;
use secrecy::SecretString;
use uuid::Uuid;

use db::crypto::Keyring;
use db::dialpad::{AUTH_API_KEY, Connection, OAuthTokens, STATUS_REAUTH_REQUIRED};
use db::{DbError, Pool};

use crate::bodies::TokenResponse;
use crate::client::{DialpadClient, DialpadError};

/// An access token with less than this left is refreshed before use.
const REFRESH_MARGIN: TimeDelta = TimeDelta::minutes(5);
/// Lifetime assumed when Dialpad's token answer has no `expires_in` (`docs/dialpad.md` §7: unknown; the
/// common client default).
const DEFAULT_EXPIRES_IN_SECS: i64 = 3600;

/// When a token from Dialpad's token endpoint expires.
pub fn token_expiry(tokens: &TokenResponse) -> DateTime<Utc> {
    let seconds = tokens
        .expires_in
        .filter(|s| *s > 0)
        .unwrap_or(DEFAULT_EXPIRES_IN_SECS);
    Utc::now() + TimeDelta::seconds(seconds)
}

/// Why no credential could be had for an app.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The app has no Dialpad connection and the server has no `DIALPAD_API_KEY`.
    #[error("the app has no Dialpad connection and the server has no DIALPAD_API_KEY")]
    NotConnected,
    /// The connection is marked `reauth_required`, or Dialpad refused the refresh (which marks it).
    #[error("the app's Dialpad connection must be authorised again")]
    ReauthRequired,
    /// An OAuth token needs a refresh but no OAuth app (`DIALPAD_CLIENT_ID`, `DIALPAD_CLIENT_SECRET`)
    /// is configured.
    #[error("DIALPAD_CLIENT_ID and DIALPAD_CLIENT_SECRET are not configured")]
    OAuthNotConfigured,
    /// The refresh failed for another reason; nothing was changed.
    #[error(transparent)]
    Dialpad(#[from] DialpadError),
    /// The database failed (pool, query or decryption).
    #[error(transparent)]
    Db(#[from] DbError),
}

/// What finding an app's credential needs: the database, the client (for refreshes), the key
/// the stored tokens are sealed with, and the server-wide fallback key.
#[derive(Debug, Clone, Copy)]
pub struct Credentials<'a> {
    pub pool: &'a Pool,
    pub client: &'a DialpadClient,
    pub keyring: &'a Keyring,
    /// `DIALPAD_API_KEY`: the credential of apps without a connection.
    pub server_api_key: Option<&'a SecretString>,
}

impl Credentials<'_> {
    /// The token to call Dialpad with for `app_id`: the app's own connection when it has one
    /// (its OAuth access token, refreshed first if it has less than 5 minutes left, or its API
    /// key), otherwise the server-wide `DIALPAD_API_KEY`.
    ///
    /// # Errors
    /// - [`CredentialError::ReauthRequired`] when the connection is marked so, or Dialpad
    ///   refuses the refresh (which marks it);
    /// - [`CredentialError::NotConnected`] when there is no connection and no server key;
    /// - [`CredentialError::OAuthNotConfigured`] when a refresh is due without an OAuth app;
    /// - [`CredentialError::Dialpad`] when the refresh fails for another reason (nothing is
    ///   changed);
    /// - [`CredentialError::Db`] on database errors.
    pub async fn credential_for(&self, app_id: Uuid) -> Result<SecretString, CredentialError> {
        let connection = {
            let mut conn = self.pool.get().await.map_err(DbError::from)?;
            Connection::find(&mut conn, app_id).await?
        };
        let Some(connection) = connection else {
            return self
                .server_api_key
                .cloned()
                .ok_or(CredentialError::NotConnected);
        };
        if connection.status == STATUS_REAUTH_REQUIRED {
            return Err(CredentialError::ReauthRequired);
        }
        if connection.auth_type == AUTH_API_KEY || is_fresh(&connection) {
            return Ok(connection
                .access_token(self.keyring)
                .map_err(DbError::from)?);
        }
        self.refresh(app_id).await
    }

    /// Refreshes under the connection's row lock. Dialpad rotates refresh tokens (`docs/dialpad.md` §7), so a
    /// second caller waits for the first, then finds a fresh token and uses it instead of spending
    /// the old refresh token again. The new tokens are committed in the same transaction, right
    /// after Dialpad answers.
    async fn refresh(&self, app_id: Uuid) -> Result<SecretString, CredentialError> {
        let oauth = self
            .client
            .oauth()
            .ok_or(CredentialError::OAuthNotConfigured)?;
        let keyring = self.keyring;
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
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
                match self.client.refresh(oauth, &refresh_token).await {
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
            Refreshed::Refused => Err(CredentialError::ReauthRequired),
            Refreshed::Failed(error) => Err(error.into()),
        }
    }
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
