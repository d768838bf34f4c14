//! Per-app verification secrets, cached so a burst of webhooks costs one lookup per app.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::sync::Cache;
use secrecy::SecretString;
use uuid::Uuid;

use db::apps::App;
use db::crypto::Keyring;
use db::{DbError, Pool};

/// How old cached secrets must be before a failed signature fetches them again: bounds the
/// lookups a flood of forged requests can cause to one per app per interval.
const REFRESH_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// The secrets an app's events may be signed with (see [`App::verification_secrets`]) and
/// when they were read.
#[derive(Debug)]
pub(crate) struct AppSecrets {
    pub(crate) secrets: Vec<SecretString>,
    fetched_at: Instant,
}

impl AppSecrets {
    /// Whether a failed verification justifies reading the secrets again.
    pub(crate) fn may_be_stale(&self) -> bool {
        self.fetched_at.elapsed() >= REFRESH_AFTER_FAILURE
    }
}

/// App id → its secrets, opened with the keyring and kept for a TTL.
#[derive(Debug)]
pub(crate) struct SecretCache {
    cache: Cache<Uuid, Arc<AppSecrets>>,
    keyring: Keyring,
}

impl SecretCache {
    pub(crate) fn new(ttl: Duration, keyring: Keyring) -> Self {
        SecretCache {
            cache: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl)
                .build(),
            keyring,
        }
    }

    /// The app's secrets; `Ok(None)` for an unknown app (not cached, so a new app works at
    /// once). `fresh` skips the cache.
    pub(crate) async fn get(
        &self,
        pool: &Pool,
        app_id: Uuid,
        fresh: bool,
    ) -> Result<Option<Arc<AppSecrets>>, DbError> {
        if !fresh && let Some(secrets) = self.cache.get(&app_id) {
            return Ok(Some(secrets));
        }
        let mut conn = pool.get().await?;
        let Some(secrets) = App::verification_secrets(&mut conn, &self.keyring, app_id).await?
        else {
            self.cache.invalidate(&app_id);
            return Ok(None);
        };
        let secrets = Arc::new(AppSecrets {
            secrets,
            fetched_at: Instant::now(),
        });
        self.cache.insert(app_id, Arc::clone(&secrets));
        Ok(Some(secrets))
    }
}
