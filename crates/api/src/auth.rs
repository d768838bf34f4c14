//! Authentication extractors: [`Tenant`] from `x-app-api-key`, [`InternalAdmin`] from the
//! bearer secret.

use std::sync::Arc;
use std::time::Duration;

use actix_web::web::Data;
use actix_web::{FromRequest, HttpRequest, dev::Payload};
use futures_util::future::LocalBoxFuture;
use moka::sync::Cache;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use db::Pool;
use db::api_keys::{ActiveApiKey, ApiKeyInfo};
use db::audit::Actor;

use crate::error::ApiError;
use crate::keys::key_id_of;
use crate::rate_limit::RateLimits;
use crate::startup::ApiState;

/// The header tenant keys are sent in.
pub(crate) const API_KEY_HEADER: &str = "x-app-api-key";

/// Verifies tenant API keys, paying bcrypt only for keys not verified recently.
#[derive(Debug)]
pub(crate) struct KeyVerifier {
    /// SHA-256 of a presented key → the bcrypt hash it verified against. A hit counts only while
    /// the key's row still has that hash, is not revoked and its app is active (the row is read
    /// from the database at most [`KEY_ROW_TTL`] earlier), so revocation takes effect within a
    /// second on every replica.
    verified: Cache<[u8; 32], Arc<str>>,
    /// SHA-256 of a presented key → the bcrypt hash it failed against: the same wrong secret
    /// sent again costs no bcrypt while the key's hash is unchanged.
    rejected: Cache<[u8; 32], Arc<str>>,
    /// Key id → its row (`None`: no such active key), for [`KEY_ROW_TTL`]: spares a query per
    /// request, for unknown ids too, while keeping a revocation (or an app's deactivation)
    /// effective within a second on every replica.
    rows: Cache<String, Option<ActiveApiKey>>,
}

/// How long a key's row is trusted without asking the database again.
const KEY_ROW_TTL: Duration = Duration::from_millis(500);

impl KeyVerifier {
    pub(crate) fn new(ttl: Duration) -> Self {
        KeyVerifier {
            verified: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(ttl)
                .build(),
            rejected: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(ttl)
                .build(),
            rows: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(KEY_ROW_TTL)
                .build(),
        }
    }

    /// Drops the cached key rows: after a revocation or deactivation made through this
    /// replica, it takes effect here at once (other replicas within [`KEY_ROW_TTL`]).
    pub(crate) fn forget_rows(&self) {
        self.rows.invalidate_all();
    }

    /// The app a presented key belongs to. Only a verified key's rate-limit bucket is charged;
    /// a verification that needs bcrypt is charged to `client` first (`crate::rate_limit`).
    ///
    /// # Errors
    /// [`ApiError::InvalidApiKey`] for an unknown, malformed, wrong or revoked key (or an
    /// inactive app); [`ApiError::RateLimited`] when the key, or the client's verifications,
    /// are over their limit; database errors as [`ApiError`].
    pub(crate) async fn authenticate(
        &self,
        pool: &Pool,
        limits: &RateLimits,
        client: &str,
        presented: &str,
    ) -> Result<Uuid, ApiError> {
        let key_id = key_id_of(presented).ok_or(ApiError::InvalidApiKey)?;
        let row = match self.rows.get(key_id) {
            Some(row) => row,
            None => {
                let mut conn = pool.get().await.map_err(db::DbError::from)?;
                let row = ActiveApiKey::find(&mut conn, key_id).await?;
                self.rows.insert(key_id.to_owned(), row.clone());
                row
            }
        }
        .ok_or(ApiError::InvalidApiKey)?;

        let fingerprint: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let known = |cache: &Cache<[u8; 32], Arc<str>>| {
            cache
                .get(&fingerprint)
                .is_some_and(|hash| *hash == *row.key_hash)
        };
        if known(&self.rejected) {
            return Err(ApiError::InvalidApiKey);
        }
        if !known(&self.verified) {
            limits.charge_verification(client)?;
            let presented = presented.to_owned();
            let hash = row.key_hash.clone();
            // bcrypt is deliberately slow CPU work: keep it off the async executor.
            let matches = tokio::task::spawn_blocking(move || bcrypt::verify(presented, &hash))
                .await
                .map_err(|e| ApiError::Internal(e.into()))?
                .unwrap_or(false);
            let cache = if matches {
                &self.verified
            } else {
                &self.rejected
            };
            cache.insert(fingerprint, Arc::from(row.key_hash.as_str()));
            if !matches {
                return Err(ApiError::InvalidApiKey);
            }
        }
        limits.charge_key(key_id)?;
        touch_if_stale(pool, &row);
        Ok(row.app_id)
    }
}

/// Records the key's use in the background (at most once a minute): never on the request's
/// path, and a failure only costs the timestamp.
fn touch_if_stale(pool: &Pool, key: &ActiveApiKey) {
    let stale = key
        .last_used_at
        .is_none_or(|at| at < chrono::Utc::now() - chrono::TimeDelta::minutes(1));
    if !stale {
        return;
    }
    let (pool, api_key_id) = (pool.clone(), key.api_key_id);
    tokio::spawn(async move {
        let touched = match pool.get().await {
            Ok(mut conn) => ApiKeyInfo::touch(&mut conn, api_key_id).await,
            Err(error) => Err(error.into()),
        };
        if let Err(error) = touched {
            tracing::debug!(error = %error, "Could not record an API key's use.");
        }
    });
}

/// The authenticated tenant of a request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tenant {
    pub(crate) app_id: Uuid,
}

impl FromRequest for Tenant {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = request.app_data::<Data<ApiState>>().cloned();
        let presented = api_key_header(request).map(str::to_owned);
        let client = state.as_ref().map_or_else(String::new, |state| {
            state
                .rate_limits
                .client(request.headers(), request.peer_addr())
        });
        Box::pin(async move {
            let state =
                state.ok_or_else(|| ApiError::Internal(anyhow::anyhow!("state missing")))?;
            let presented = presented.ok_or(ApiError::MissingApiKey)?;
            let app_id = state
                .keys
                .authenticate(&state.pool, &state.rate_limits, &client, &presented)
                .await?;
            Ok(Tenant { app_id })
        })
    }
}

/// The trimmed, non-empty `x-app-api-key` header.
fn api_key_header(request: &HttpRequest) -> Option<&str> {
    request
        .headers()
        .get(API_KEY_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|key| !key.is_empty())
}

/// The token of an `Authorization: Bearer` header.
fn bearer_token(request: &HttpRequest) -> Option<&str> {
    request
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
}

/// Lets a request act on one app: with the admin bearer secret, or with that app's own API key.
///
/// # Errors
/// [`ApiError::Unauthorized`] for a wrong bearer secret, [`ApiError::MissingApiKey`] /
/// [`ApiError::InvalidApiKey`] for a missing or bad key, [`ApiError::NotFound`] for another
/// app's key (not revealing whether the app exists).
pub(crate) async fn authorize_for_app(
    request: &HttpRequest,
    state: &ApiState,
    app_id: Uuid,
) -> Result<(), ApiError> {
    if let Some(token) = bearer_token(request) {
        return if secrets_match(token, &state.internal_api_secret) {
            Ok(())
        } else {
            Err(ApiError::Unauthorized)
        };
    }
    let key = api_key_header(request).ok_or(ApiError::MissingApiKey)?;
    let client = state
        .rate_limits
        .client(request.headers(), request.peer_addr());
    if state
        .keys
        .authenticate(&state.pool, &state.rate_limits, &client, key)
        .await?
        == app_id
    {
        Ok(())
    } else {
        Err(ApiError::NotFound)
    }
}

/// A request carrying the admin bearer secret; `actor` names it in the audit log.
#[derive(Debug, Clone)]
pub(crate) struct InternalAdmin {
    pub(crate) actor: Actor,
}

/// Constant-time comparison of two secrets (of any lengths: both are hashed first).
pub(crate) fn secrets_match(presented: &str, expected: &SecretString) -> bool {
    let presented = Sha256::digest(presented.as_bytes());
    let expected = Sha256::digest(expected.expose_secret().as_bytes());
    presented.ct_eq(&expected).into()
}

impl FromRequest for InternalAdmin {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = request.app_data::<Data<ApiState>>();
        let authorized = state.is_some_and(|state| {
            bearer_token(request)
                .is_some_and(|token| secrets_match(token, &state.internal_api_secret))
        });
        std::future::ready(match state {
            Some(state) if authorized => {
                // The same address rule as the rate limits: a client cannot write its own.
                let address = state
                    .rate_limits
                    .client(request.headers(), request.peer_addr());
                Ok(InternalAdmin {
                    actor: Actor(format!("admin@{address}")),
                })
            }
            _ => Err(ApiError::Unauthorized),
        })
    }
}
