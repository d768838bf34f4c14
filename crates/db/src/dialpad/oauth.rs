//! Single-use OAuth states (`oauth_states`) and one-time connect links (`connect_links`).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use crate::DbError;
use crate::crypto::Keyring;
use crate::schema::oauth_states;

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
