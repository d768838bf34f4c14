//! What we hold about each app's Dialpad account: its connection (sealed OAuth tokens or API
//! key), the webhooks and subscriptions we created there, and pending OAuth states.
//!
//! Every secret is sealed with [`Keyring`] and bound to its row (see [`crate::crypto`]).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use uuid::Uuid;

use crate::DbError;
use crate::apps::App;
use crate::crypto::{CryptoError, Keyring};
use crate::schema::{dialpad_connections, dialpad_subscriptions, dialpad_webhooks, oauth_states};

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

/// A `dialpad_webhooks` row: a webhook we registered at Dialpad for an app.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = dialpad_webhooks)]
pub struct DialpadWebhook {
    pub id: i64,
    pub app_id: Uuid,
    pub dialpad_webhook_id: i64,
    pub hook_url: String,
    pub secret_ciphertext: Vec<u8>,
    pub secret_key_id: String,
    /// `HS256` (Dialpad's `signature.algo`).
    pub signature_algo: String,
    /// `jwt` (Dialpad's `signature.type`).
    pub signature_type: String,
    pub created_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// A webhook Dialpad just created, to record.
#[derive(Debug)]
pub struct NewDialpadWebhook<'a> {
    pub app_id: Uuid,
    pub dialpad_webhook_id: i64,
    pub hook_url: &'a str,
    /// The secret Dialpad signs its events with.
    pub secret: &'a SecretString,
    pub signature_algo: &'a str,
    pub signature_type: &'a str,
}

impl DialpadWebhook {
    /// Where a webhook's secret is sealed.
    pub fn secret_place(app_id: Uuid, dialpad_webhook_id: i64) -> String {
        format!("dialpad_webhooks.secret:{app_id}:{dialpad_webhook_id}")
    }

    /// Records a webhook created at Dialpad and, when `replaces_app_secret`, makes its secret
    /// the app's inbound secret, in one transaction.
    ///
    /// # Errors
    /// [`DbError`] from the queries; nothing is written on error.
    pub async fn record(
        conn: &mut AsyncPgConnection,
        keyring: &Keyring,
        webhook: &NewDialpadWebhook<'_>,
        replaces_app_secret: bool,
    ) -> Result<DialpadWebhook, DbError> {
        let sealed = keyring.seal_str(
            webhook.secret.expose_secret(),
            &Self::secret_place(webhook.app_id, webhook.dialpad_webhook_id),
        );
        conn.transaction(async |conn| {
            let row = diesel::insert_into(dialpad_webhooks::table)
                .values((
                    dialpad_webhooks::app_id.eq(webhook.app_id),
                    dialpad_webhooks::dialpad_webhook_id.eq(webhook.dialpad_webhook_id),
                    dialpad_webhooks::hook_url.eq(webhook.hook_url),
                    dialpad_webhooks::secret_ciphertext.eq(&sealed.ciphertext),
                    dialpad_webhooks::secret_key_id.eq(&sealed.key_id),
                    dialpad_webhooks::signature_algo.eq(webhook.signature_algo),
                    dialpad_webhooks::signature_type.eq(webhook.signature_type),
                ))
                .returning(DialpadWebhook::as_returning())
                .get_result(conn)
                .await?;
            if replaces_app_secret {
                App::set_webhook_secret(
                    conn,
                    keyring,
                    webhook.app_id,
                    webhook.secret.expose_secret(),
                )
                .await?;
            }
            Ok::<_, DbError>(row)
        })
        .await
    }

    /// The app's live (not deleted) webhooks, newest first.
    ///
    /// # Errors
    /// [`DbError`] from the query.
    pub async fn list_live(
        conn: &mut AsyncPgConnection,
        app_id: Uuid,
    ) -> Result<Vec<DialpadWebhook>, DbError> {
        Ok(dialpad_webhooks::table
            .filter(dialpad_webhooks::app_id.eq(app_id))
            .filter(dialpad_webhooks::deleted_at.is_null())
            .order(dialpad_webhooks::id.desc())
            .select(DialpadWebhook::as_select())
            .load(conn)
            .await?)
    }

    /// One of the app's live webhooks, by Dialpad's id.
    ///
    /// # Errors
    /// [`DbError`] from the query.
    pub async fn find_live(
        conn: &mut AsyncPgConnection,
        app_id: Uuid,
        dialpad_webhook_id: i64,
    ) -> Result<Option<DialpadWebhook>, DbError> {
        Ok(dialpad_webhooks::table
            .filter(dialpad_webhooks::app_id.eq(app_id))
            .filter(dialpad_webhooks::dialpad_webhook_id.eq(dialpad_webhook_id))
            .filter(dialpad_webhooks::deleted_at.is_null())
            .select(DialpadWebhook::as_select())
            .first(conn)
            .await
            .optional()?)
    }

    /// Marks a webhook deleted (its secret keeps verifying for a day, see
    /// [`App::verification_secrets`]).
    ///
    /// # Errors
    /// [`DbError`] from the query.
    pub async fn mark_deleted(
        conn: &mut AsyncPgConnection,
        app_id: Uuid,
        dialpad_webhook_id: i64,
    ) -> Result<(), DbError> {
        diesel::update(
            dialpad_webhooks::table
                .filter(dialpad_webhooks::app_id.eq(app_id))
                .filter(dialpad_webhooks::dialpad_webhook_id.eq(dialpad_webhook_id))
                .filter(dialpad_webhooks::deleted_at.is_null()),
        )
        .set(dialpad_webhooks::deleted_at.eq(diesel::dsl::now))
        .execute(conn)
        .await?;
        Ok(())
    }
}

/// A `dialpad_subscriptions` row.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = dialpad_subscriptions)]
pub struct DialpadSubscription {
    pub id: i64,
    pub app_id: Uuid,
    /// `call` or `sms`.
    pub kind: String,
    pub dialpad_subscription_id: i64,
    pub dialpad_webhook_id: i64,
    /// What was asked of Dialpad (see the table comment).
    pub options: Value,
    pub created_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

impl DialpadSubscription {
    /// Records a subscription Dialpad just created.
    ///
    /// # Errors
    /// [`DbError`] from the query.
    pub async fn record(
        conn: &mut AsyncPgConnection,
        app_id: Uuid,
        kind: &str,
        dialpad_subscription_id: i64,
        dialpad_webhook_id: i64,
        options: &Value,
    ) -> Result<DialpadSubscription, DbError> {
        Ok(diesel::insert_into(dialpad_subscriptions::table)
            .values((
                dialpad_subscriptions::app_id.eq(app_id),
                dialpad_subscriptions::kind.eq(kind),
                dialpad_subscriptions::dialpad_subscription_id.eq(dialpad_subscription_id),
                dialpad_subscriptions::dialpad_webhook_id.eq(dialpad_webhook_id),
                dialpad_subscriptions::options.eq(options),
            ))
            .returning(DialpadSubscription::as_returning())
            .get_result(conn)
            .await?)
    }

    /// The app's live subscriptions, newest first.
    ///
    /// # Errors
    /// [`DbError`] from the query.
    pub async fn list_live(
        conn: &mut AsyncPgConnection,
        app_id: Uuid,
    ) -> Result<Vec<DialpadSubscription>, DbError> {
        Ok(dialpad_subscriptions::table
            .filter(dialpad_subscriptions::app_id.eq(app_id))
            .filter(dialpad_subscriptions::deleted_at.is_null())
            .order(dialpad_subscriptions::id.desc())
            .select(DialpadSubscription::as_select())
            .load(conn)
            .await?)
    }

    /// One of the app's live subscriptions, by Dialpad's id (unique per kind; ids of both
    /// kinds come from one Dialpad id space, so the first match is taken).
    ///
    /// # Errors
    /// [`DbError`] from the query.
    pub async fn find_live(
        conn: &mut AsyncPgConnection,
        app_id: Uuid,
        dialpad_subscription_id: i64,
    ) -> Result<Option<DialpadSubscription>, DbError> {
        Ok(dialpad_subscriptions::table
            .filter(dialpad_subscriptions::app_id.eq(app_id))
            .filter(dialpad_subscriptions::dialpad_subscription_id.eq(dialpad_subscription_id))
            .filter(dialpad_subscriptions::deleted_at.is_null())
            .select(DialpadSubscription::as_select())
            .first(conn)
            .await
            .optional()?)
    }

    /// Marks a subscription deleted.
    ///
    /// # Errors
    /// [`DbError`] from the query.
    pub async fn mark_deleted(conn: &mut AsyncPgConnection, id: i64) -> Result<(), DbError> {
        diesel::update(dialpad_subscriptions::table.find(id))
            .set(dialpad_subscriptions::deleted_at.eq(diesel::dsl::now))
            .execute(conn)
            .await?;
        Ok(())
    }
}

/// An OAuth state taken back at the callback.
#[derive(Debug)]
pub struct ConsumedState {
    pub app_id: Uuid,
    pub environment: String,
    /// The operator allowed the app to switch to another Dialpad company.
    pub replace_company: bool,
    /// The PKCE code verifier to send with the code exchange.
    pub code_verifier: SecretString,
}

/// Why a state presented at the callback is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StateRejection {
    #[error("the state is unknown")]
    Unknown,
    #[error("the state has expired; start the connection again")]
    Expired,
    #[error("the state was already used; start the connection again")]
    AlreadyUsed,
}

/// What a new OAuth state holds.
#[derive(Debug, Clone, Copy)]
pub struct NewState<'a> {
    pub app_id: Uuid,
    /// `sandbox` or `production`.
    pub environment: &'a str,
    /// The PKCE code verifier, sealed at rest.
    pub code_verifier: &'a SecretString,
    /// The operator allowed the app to switch to another Dialpad company.
    pub replace_company: bool,
    pub expires_at: DateTime<Utc>,
}

impl StateRejection {
    /// Why a single-use token that the consuming update did not take was refused, from its
    /// row's `used_at` (`None`: no row).
    fn of(used_at: Option<Option<DateTime<Utc>>>) -> StateRejection {
        match used_at {
            None => StateRejection::Unknown,
            Some(Some(_)) => StateRejection::AlreadyUsed,
            Some(None) => StateRejection::Expired,
        }
    }
}

/// Single-use OAuth states (`oauth_states`).
#[derive(Debug)]
pub struct OAuthState;

impl OAuthState {
    fn verifier_place(state_hash: &[u8]) -> String {
        let hex: String = state_hash.iter().map(|b| format!("{b:02x}")).collect();
        format!("oauth_states.code_verifier:{hex}")
    }

    /// Stores a new state (by its SHA-256) with its sealed code verifier, valid until
    /// `expires_at`; deletes states that expired more than a day ago on the way.
    ///
    /// # Errors
    /// [`DbError`] from the queries.
    pub async fn create(
        conn: &mut AsyncPgConnection,
        keyring: &Keyring,
        state_hash: &[u8],
        new: &NewState<'_>,
    ) -> Result<(), DbError> {
        let NewState {
            app_id,
            environment,
            code_verifier,
            replace_company,
            expires_at,
        } = *new;
        diesel::delete(
            oauth_states::table
                .filter(oauth_states::expires_at.lt(Utc::now() - chrono::TimeDelta::days(1))),
        )
        .execute(conn)
        .await?;
        let sealed = keyring.seal_str(
            code_verifier.expose_secret(),
            &Self::verifier_place(state_hash),
        );
        diesel::insert_into(oauth_states::table)
            .values((
                oauth_states::state_hash.eq(state_hash),
                oauth_states::app_id.eq(app_id),
                oauth_states::environment.eq(environment),
                oauth_states::code_verifier_ciphertext.eq(&sealed.ciphertext),
                oauth_states::code_verifier_key_id.eq(&sealed.key_id),
                oauth_states::replace_company.eq(replace_company),
                oauth_states::expires_at.eq(expires_at),
            ))
            .execute(conn)
            .await?;
        Ok(())
    }

    /// Takes a state back, once: the update that marks it used is also the check, so two
    /// callbacks racing with one state cannot both pass.
    ///
    /// # Errors
    /// `Ok(Err(StateRejection))` for an unknown, expired or already used state; [`DbError`]
    /// from the queries or when the verifier cannot be opened.
    pub async fn consume(
        conn: &mut AsyncPgConnection,
        keyring: &Keyring,
        state_hash: &[u8],
    ) -> Result<Result<ConsumedState, StateRejection>, DbError> {
        let taken: Option<(Uuid, String, Vec<u8>, String, bool)> = diesel::update(
            oauth_states::table
                .find(state_hash)
                .filter(oauth_states::used_at.is_null())
                .filter(oauth_states::expires_at.gt(diesel::dsl::now)),
        )
        .set(oauth_states::used_at.eq(diesel::dsl::now))
        .returning((
            oauth_states::app_id,
            oauth_states::environment,
            oauth_states::code_verifier_ciphertext,
            oauth_states::code_verifier_key_id,
            oauth_states::replace_company,
        ))
        .get_result(conn)
        .await
        .optional()?;
        if let Some((app_id, environment, ciphertext, key_id, replace_company)) = taken {
            let code_verifier =
                keyring.open_str(&ciphertext, &key_id, &Self::verifier_place(state_hash))?;
            return Ok(Ok(ConsumedState {
                app_id,
                environment,
                replace_company,
                code_verifier,
            }));
        }
        let seen: Option<Option<DateTime<Utc>>> = oauth_states::table
            .find(state_hash)
            .select(oauth_states::used_at)
            .first(conn)
            .await
            .optional()?;
        Ok(Err(StateRejection::of(seen)))
    }

    /// Marks a state used without exchanging it (the user denied access).
    ///
    /// # Errors
    /// [`DbError`] from the query.
    pub async fn discard(conn: &mut AsyncPgConnection, state_hash: &[u8]) -> Result<(), DbError> {
        diesel::update(oauth_states::table.find(state_hash))
            .set(oauth_states::used_at.eq(diesel::dsl::now))
            .execute(conn)
            .await?;
        Ok(())
    }
}

/// One-time connect links (`connect_links`): a URL a person opens in a browser to connect an
/// app to Dialpad, standing in for the app's credentials once.
#[derive(Debug)]
pub struct ConnectLink;

/// A connect link taken back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumedLink {
    pub app_id: Uuid,
    /// The operator allowed the app to switch to another Dialpad company.
    pub replace_company: bool,
}

impl ConnectLink {
    /// Stores a link (by the SHA-256 of its token) valid until `expires_at`; deletes links
    /// that expired more than a day ago on the way.
    ///
    /// # Errors
    /// [`DbError`] from the queries.
    pub async fn create(
        conn: &mut AsyncPgConnection,
        token_hash: &[u8],
        app_id: Uuid,
        replace_company: bool,
        expires_at: DateTime<Utc>,
    ) -> Result<(), DbError> {
        use crate::schema::connect_links;
        diesel::delete(
            connect_links::table
                .filter(connect_links::expires_at.lt(Utc::now() - chrono::TimeDelta::days(1))),
        )
        .execute(conn)
        .await?;
        diesel::insert_into(connect_links::table)
            .values((
                connect_links::token_hash.eq(token_hash),
                connect_links::app_id.eq(app_id),
                connect_links::replace_company.eq(replace_company),
                connect_links::expires_at.eq(expires_at),
            ))
            .execute(conn)
            .await?;
        Ok(())
    }

    /// Takes a link back, once (the update that marks it used is the check, as for states).
    ///
    /// # Errors
    /// `Ok(Err(StateRejection))` for an unknown, expired or already used link; [`DbError`]
    /// from the queries.
    pub async fn consume(
        conn: &mut AsyncPgConnection,
        token_hash: &[u8],
    ) -> Result<Result<ConsumedLink, StateRejection>, DbError> {
        use crate::schema::connect_links;
        let taken: Option<(Uuid, bool)> = diesel::update(
            connect_links::table
                .find(token_hash)
                .filter(connect_links::used_at.is_null())
                .filter(connect_links::expires_at.gt(diesel::dsl::now)),
        )
        .set(connect_links::used_at.eq(diesel::dsl::now))
        .returning((connect_links::app_id, connect_links::replace_company))
        .get_result(conn)
        .await
        .optional()?;
        if let Some((app_id, replace_company)) = taken {
            return Ok(Ok(ConsumedLink {
                app_id,
                replace_company,
            }));
        }
        let seen: Option<Option<DateTime<Utc>>> = connect_links::table
            .find(token_hash)
            .select(connect_links::used_at)
            .first(conn)
            .await
            .optional()?;
        Ok(Err(StateRejection::of(seen)))
    }
}
