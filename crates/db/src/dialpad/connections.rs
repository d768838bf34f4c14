//! `dialpad_connections`: how an app reaches Dialpad (sealed OAuth tokens or its API key).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use crate::DbError;
use crate::crypto::{CryptoError, Keyring};
use crate::schema::dialpad_connections;

/// `dialpad_connections.auth_type` of an OAuth connection.
pub const AUTH_OAUTH: &str = "oauth";
/// `dialpad_connections.auth_type` of a connection by the app's own Dialpad API key.
pub const AUTH_API_KEY: &str = "api_key";
/// `dialpad_connections.status` of a usable connection.
pub const STATUS_ACTIVE: &str = "active";
/// `dialpad_connections.status` once Dialpad refused a refresh: the app must connect again.
pub const STATUS_REAUTH_REQUIRED: &str = "reauth_required";

/// A `dialpad_connections` row. Its tokens are sealed; open them with
/// [`Connection::access_token`] and [`Connection::refresh_token`].
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = dialpad_connections)]
pub struct Connection {
    pub app_id: Uuid,
    /// `sandbox` or `production`.
    pub environment: String,
    /// [`AUTH_OAUTH`] or [`AUTH_API_KEY`].
    pub auth_type: String,
    pub access_token_ciphertext: Vec<u8>,
    pub refresh_token_ciphertext: Option<Vec<u8>>,
    pub token_key_id: String,
    /// When the access token expires; `None` for an API key.
    pub token_expires_at: Option<DateTime<Utc>>,
    pub dialpad_company_id: Option<i64>,
    pub scopes: Option<String>,
    /// [`STATUS_ACTIVE`] or [`STATUS_REAUTH_REQUIRED`].
    pub status: String,
    pub last_error: Option<String>,
    pub refreshed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Tokens from Dialpad's token endpoint, ready to store.
#[derive(Debug)]
pub struct OAuthTokens<'a> {
    pub access_token: &'a SecretString,
    /// `None` when Dialpad issued no refresh token: the connection then needs re-authorising
    /// when the access token expires.
    pub refresh_token: Option<&'a SecretString>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Insertable, AsChangeset)]
#[diesel(table_name = dialpad_connections, treat_none_as_null = true)]
struct ConnectionValues<'a> {
    app_id: Uuid,
    environment: &'a str,
    auth_type: &'a str,
    access_token_ciphertext: &'a [u8],
    refresh_token_ciphertext: Option<&'a [u8]>,
    token_key_id: &'a str,
    token_expires_at: Option<DateTime<Utc>>,
    dialpad_company_id: Option<i64>,
    scopes: Option<&'a str>,
    status: &'a str,
    last_error: Option<&'a str>,
}

impl Connection {
    pub(crate) fn access_place(app_id: Uuid) -> String {
        format!("dialpad_connections.access_token:{app_id}")
    }

    pub(crate) fn refresh_place(app_id: Uuid) -> String {
        format!("dialpad_connections.refresh_token:{app_id}")
    }

    /// The app's connection, if it has one.
    ///
    /// # Errors
    /// [`DbError`] from the query.
    pub async fn find(
        conn: &mut AsyncPgConnection,
        app_id: Uuid,
    ) -> Result<Option<Connection>, DbError> {
        Ok(dialpad_connections::table
            .find(app_id)
            .select(Connection::as_select())
            .first(conn)
            .await
            .optional()?)
    }

    /// The app's connection, row-locked until the surrounding transaction ends: the way to
    /// serialise token refreshes (Dialpad rotates refresh tokens, so two concurrent refreshes
    /// with the same token would lose one).
    ///
    /// # Errors
    /// [`DbError`] from the query.
    pub async fn find_for_update(
        conn: &mut AsyncPgConnection,
        app_id: Uuid,
    ) -> Result<Option<Connection>, DbError> {
        Ok(dialpad_connections::table
            .find(app_id)
            .select(Connection::as_select())
            .for_update()
            .first(conn)
            .await
            .optional()?)
    }

    /// Stores (or replaces) an OAuth connection after a code exchange: active again.
    ///
    /// # Errors
    /// [`DbError`] from the query.
    pub async fn save_oauth(
        conn: &mut AsyncPgConnection,
        keyring: &Keyring,
        app_id: Uuid,
        environment: &str,
        tokens: &OAuthTokens<'_>,
        dialpad_company_id: Option<i64>,
        scopes: Option<&str>,
    ) -> Result<(), DbError> {
        let access = keyring.seal_str(
            tokens.access_token.expose_secret(),
            &Self::access_place(app_id),
        );
        let refresh = tokens
            .refresh_token
            .map(|token| keyring.seal_str(token.expose_secret(), &Self::refresh_place(app_id)));
        Self::save(
            conn,
            &ConnectionValues {
                app_id,
                environment,
                auth_type: AUTH_OAUTH,
                access_token_ciphertext: &access.ciphertext,
                refresh_token_ciphertext: refresh.as_ref().map(|r| r.ciphertext.as_slice()),
                token_key_id: &access.key_id,
                token_expires_at: Some(tokens.expires_at),
                dialpad_company_id,
                scopes,
                status: STATUS_ACTIVE,
                last_error: None,
            },
        )
        .await
    }

    /// Stores (or replaces) a connection by the app's own Dialpad API key.
    ///
    /// # Errors
    /// [`DbError`] from the query.
    pub async fn save_api_key(
        conn: &mut AsyncPgConnection,
        keyring: &Keyring,
        app_id: Uuid,
        environment: &str,
        api_key: &SecretString,
        dialpad_company_id: Option<i64>,
    ) -> Result<(), DbError> {
        let sealed = keyring.seal_str(api_key.expose_secret(), &Self::access_place(app_id));
        Self::save(
            conn,
            &ConnectionValues {
                app_id,
                environment,
                auth_type: AUTH_API_KEY,
                access_token_ciphertext: &sealed.ciphertext,
                refresh_token_ciphertext: None,
                token_key_id: &sealed.key_id,
                token_expires_at: None,
                dialpad_company_id,
                scopes: None,
                status: STATUS_ACTIVE,
                last_error: None,
            },
        )
        .await
    }

    async fn save(
        conn: &mut AsyncPgConnection,
        values: &ConnectionValues<'_>,
    ) -> Result<(), DbError> {
        diesel::insert_into(dialpad_connections::table)
            .values(values)
            .on_conflict(dialpad_connections::app_id)
            .do_update()
            .set((
                values,
                dialpad_connections::refreshed_at.eq(None::<DateTime<Utc>>),
                dialpad_connections::updated_at.eq(diesel::dsl::now),
            ))
            .execute(conn)
            .await?;
        Ok(())
    }

    /// Stores the tokens of a successful refresh, both sealed with the current key. Pass the
    /// new refresh token Dialpad issued, or the old one if it issued none.
    ///
    /// # Errors
    /// [`DbError`] from the query.
    pub async fn save_refreshed(
        conn: &mut AsyncPgConnection,
        keyring: &Keyring,
        app_id: Uuid,
        tokens: &OAuthTokens<'_>,
    ) -> Result<(), DbError> {
        let access = keyring.seal_str(
            tokens.access_token.expose_secret(),
            &Self::access_place(app_id),
        );
        let refresh = tokens
            .refresh_token
            .map(|token| keyring.seal_str(token.expose_secret(), &Self::refresh_place(app_id)));
        diesel::update(dialpad_connections::table.find(app_id))
            .set((
                dialpad_connections::access_token_ciphertext.eq(&access.ciphertext),
                dialpad_connections::refresh_token_ciphertext
                    .eq(refresh.as_ref().map(|r| r.ciphertext.as_slice())),
                dialpad_connections::token_key_id.eq(&access.key_id),
                dialpad_connections::token_expires_at.eq(tokens.expires_at),
                dialpad_connections::refreshed_at.eq(diesel::dsl::now),
                dialpad_connections::updated_at.eq(diesel::dsl::now),
            ))
            .execute(conn)
            .await?;
        Ok(())
    }

    /// Marks the connection [`STATUS_REAUTH_REQUIRED`] with the reason (no token in it).
    ///
    /// # Errors
    /// [`DbError`] from the query.
    pub async fn mark_reauth_required(
        conn: &mut AsyncPgConnection,
        app_id: Uuid,
        reason: &str,
    ) -> Result<(), DbError> {
        diesel::update(dialpad_connections::table.find(app_id))
            .set((
                dialpad_connections::status.eq(STATUS_REAUTH_REQUIRED),
                dialpad_connections::last_error.eq(reason),
                dialpad_connections::updated_at.eq(diesel::dsl::now),
            ))
            .execute(conn)
            .await?;
        Ok(())
    }

    /// The access token (or, for [`AUTH_API_KEY`], the API key).
    ///
    /// # Errors
    /// [`CryptoError`] when it cannot be opened.
    pub fn access_token(&self, keyring: &Keyring) -> Result<SecretString, CryptoError> {
        keyring.open_str(
            &self.access_token_ciphertext,
            &self.token_key_id,
            &Self::access_place(self.app_id),
        )
    }

    /// The refresh token; `None` for an API-key connection.
    ///
    /// # Errors
    /// [`CryptoError`] when it cannot be opened.
    pub fn refresh_token(&self, keyring: &Keyring) -> Result<Option<SecretString>, CryptoError> {
        self.refresh_token_ciphertext
            .as_deref()
            .map(|ciphertext| {
                keyring.open_str(
                    ciphertext,
                    &self.token_key_id,
                    &Self::refresh_place(self.app_id),
                )
            })
            .transpose()
    }
}
