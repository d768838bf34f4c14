//! Per-app verification secrets, cached so that webhooks, real or forged, cost the database
//! (almost) nothing:
//!
//! - an app's secrets are read once per `APP_SECRET_CACHE_TTL_MS`. A signature that fails
//!   against them may be signed with a secret changed a moment ago, so they are read again,
//!   but **at most once a second per app** ([`MIN_REFRESH`]), by one request at a time: the
//!   others wait for that read and use it. A flood of forged signatures for a real app costs
//!   one query a second, not one per request, and a real webhook signed with a new secret is
//!   still accepted (Dialpad does not retry a 4xx);
//! - an app id that is not found is remembered for [`UNKNOWN_APP_TTL`] (apps are never
//!   deleted, so this refuses no real delivery: an id exists only once its app does);
//! - while the database is unavailable, an app's secrets as last read are used past the TTL
//!   (stale-if-error), so webhooks of known apps are still verified and spooled; with a spool,
//!   the secrets last read are also kept sealed on its disk (`crate::secret_snapshot`), for a
//!   process started during the outage;
//! - ids never found before are looked up at most [`LOOKUPS_PER_SECOND`] times a second in
//!   the whole process; beyond, the request is answered 503 (Dialpad retries a 5xx), so a flood
//!   of random ids is not one query per request either.

use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use moka::sync::Cache;
use secrecy::SecretString;
use uuid::Uuid;

use db::apps::App;
use db::crypto::Keyring;
use db::{DbError, Pool};

use crate::secret_snapshot::SecretSnapshot;

/// The least time between two reads of one app's secrets.
pub(crate) const MIN_REFRESH: Duration = Duration::from_secs(1);
/// How long an app id that was not found is answered 404 without asking the database.
pub(crate) const UNKNOWN_APP_TTL: Duration = Duration::from_secs(5);
/// Most lookups a second of app ids never found before.
pub(crate) const LOOKUPS_PER_SECOND: u32 = 100;

/// The secrets an app's events may be signed with (see [`App::verification_secrets`]), as
/// read at `read_at`.
#[derive(Debug, Clone)]
pub(crate) struct AppSecrets {
    pub(crate) secrets: Arc<Vec<SecretString>>,
    pub(crate) read_at: Instant,
}

/// What a lookup found.
#[derive(Debug)]
pub(crate) enum Lookup {
    Found(AppSecrets),
    Unknown,
    /// Too many lookups of new ids this second: answer 503, the sender retries.
    Busy,
}

/// A known app: its secrets as last read, and the lock of whoever reads them again.
#[derive(Debug)]
struct Known {
    last: RwLock<AppSecrets>,
    reading: tokio::sync::Mutex<()>,
}

impl Known {
    fn last(&self) -> AppSecrets {
        self.last.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// App id → its secrets, opened with the keyring.
pub(crate) struct SecretCache {
    /// Every app found, kept (apps are never deleted); the secrets are re-read after `ttl`.
    known: Cache<Uuid, Arc<Known>>,
    unknown: Cache<Uuid, ()>,
    lookups: DefaultDirectRateLimiter,
    ttl: Duration,
    keyring: Keyring,
    /// With an outage spool: the secrets as last read, kept on its disk for a start-up while
    /// the database is down.
    snapshot: Option<SecretSnapshot>,
}

impl std::fmt::Debug for SecretCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretCache").finish_non_exhaustive()
    }
}

impl SecretCache {
    pub(crate) fn new(ttl: Duration, keyring: Keyring, snapshot: Option<SecretSnapshot>) -> Self {
        let per_second = NonZeroU32::new(LOOKUPS_PER_SECOND).unwrap_or(NonZeroU32::MIN);
        SecretCache {
            known: Cache::builder().max_capacity(100_000).build(),
            unknown: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(UNKNOWN_APP_TTL)
                .build(),
            lookups: RateLimiter::direct(Quota::per_second(per_second)),
            ttl: ttl.max(MIN_REFRESH),
            keyring,
            snapshot,
        }
    }

    /// The app's secrets: as cached, or read if they are older than the TTL.
    ///
    /// # Errors
    /// [`DbError`] from the lookup.
    pub(crate) async fn get(&self, pool: &Pool, app_id: Uuid) -> Result<Lookup, DbError> {
        if let Some(known) = self.known.get(&app_id) {
            let last = known.last();
            if last.read_at.elapsed() < self.ttl {
                return Ok(Lookup::Found(last));
            }
            return self.read_again(pool, app_id, &known, last.read_at).await;
        }
        if self.unknown.contains_key(&app_id) {
            return Ok(Lookup::Unknown);
        }
        if self.lookups.check().is_err() {
            return Ok(Lookup::Busy);
        }
        let found = match self.read(pool, app_id).await {
            Ok(Some(found)) => found,
            Ok(None) => {
                self.unknown.insert(app_id, ());
                return Ok(Lookup::Unknown);
            }
            // Started while the database is down: the secrets this ingest last read, from
            // the spool's disk.
            Err(error) if error.is_unavailable() => {
                let Some(secrets) = self.snapshot.as_ref().and_then(|s| s.get(app_id)) else {
                    return Err(error);
                };
                tracing::warn!(app.id = %app_id, "Database unavailable: verifying with the app's secrets from the spool's snapshot.");
                AppSecrets {
                    secrets,
                    read_at: Instant::now(),
                }
            }
            Err(error) => return Err(error),
        };
        let known = Known {
            last: RwLock::new(found.clone()),
            reading: tokio::sync::Mutex::new(()),
        };
        self.known.insert(app_id, Arc::new(known));
        Ok(Lookup::Found(found))
    }

    /// The app's secrets read again after a signature failed against `stale`: by this request
    /// once they are [`MIN_REFRESH`] old (it waits until then), or as another request read them
    /// meanwhile.
    ///
    /// # Errors
    /// [`DbError`] from the lookup.
    pub(crate) async fn refresh(
        &self,
        pool: &Pool,
        app_id: Uuid,
        stale: &AppSecrets,
    ) -> Result<Lookup, DbError> {
        match self.known.get(&app_id) {
            Some(known) => self.read_again(pool, app_id, &known, stale.read_at).await,
            None => self.get(pool, app_id).await,
        }
    }

    /// Reads the secrets again unless someone did after `since`; one reader at a time, and
    /// not sooner than [`MIN_REFRESH`] after the last read.
    async fn read_again(
        &self,
        pool: &Pool,
        app_id: Uuid,
        known: &Known,
        since: Instant,
    ) -> Result<Lookup, DbError> {
        let _reading = known.reading.lock().await;
        let last = known.last();
        if last.read_at > since {
            return Ok(Lookup::Found(last));
        }
        tokio::time::sleep(MIN_REFRESH.saturating_sub(last.read_at.elapsed())).await;
        let fresh = match self.read(pool, app_id).await {
            Ok(Some(fresh)) => fresh,
            Ok(None) => return Ok(Lookup::Unknown),
            // The database is down: the secrets last read still verify (events go to the
            // outage spool), and are not asked for again before the TTL, so requests do not
            // queue behind reads that fail.
            Err(error) if error.is_unavailable() => {
                tracing::warn!(app.id = %app_id, error = %error, "Database unavailable: verifying with the app's secrets as last read.");
                AppSecrets {
                    secrets: last.secrets,
                    read_at: Instant::now(),
                }
            }
            Err(error) => return Err(error),
        };
        *known.last.write().unwrap_or_else(|e| e.into_inner()) = fresh.clone();
        Ok(Lookup::Found(fresh))
    }

    /// The app's secrets from the database, now; `None` for an unknown app.
    async fn read(&self, pool: &Pool, app_id: Uuid) -> Result<Option<AppSecrets>, DbError> {
        let mut conn = pool.get().await?;
        let Some(secrets) = App::verification_secrets(&mut conn, &self.keyring, app_id).await?
        else {
            return Ok(None);
        };
        let secrets = Arc::new(secrets);
        if let Some(snapshot) = &self.snapshot {
            snapshot.remember(app_id, &secrets, &self.keyring);
        }
        Ok(Some(AppSecrets {
            secrets,
            read_at: Instant::now(),
        }))
    }
}
