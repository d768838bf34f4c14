//! Per-app verification secrets, cached so a burst of webhooks costs one lookup per app.

use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;
use secrecy::SecretString;
use uuid::Uuid;

use db::apps::App;
use db::crypto::Keyring;
use db::{DbError, Pool};

/// The secrets an app's events may be signed with (see [`App::verification_secrets`]).
#[derive(Debug)]
pub(crate) struct AppSecrets {
    pub(crate) secrets: Arc<Vec<SecretString>>,
    /// Served from the cache: a signature that fails against them is checked again against
    /// fresh ones, so a secret changed a moment ago never refuses an event (Dialpad does not
    /// retry a 4xx). A forged request therefore costs one primary-key lookup.
    pub(crate) cached: bool,
}

/// App id → its secrets, opened with the keyring and kept for a TTL.
#[derive(Debug)]
pub(crate) struct SecretCache {
    cache: Cache<Uuid, Arc<Vec<SecretString>>>,
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
    ) -> Result<Option<AppSecrets>, DbError> {
        if !fresh && let Some(secrets) = self.cache.get(&app_id) {
            return Ok(Some(AppSecrets {
                secrets,
                cached: true,
            }));
        }
        let mut conn = pool.get().await?;
        let Some(secrets) = App::verification_secrets(&mut conn, &self.keyring, app_id).await?
        else {
            self.cache.invalidate(&app_id);
            return Ok(None);
        };
        let secrets = Arc::new(secrets);
        self.cache.insert(app_id, Arc::clone(&secrets));
        Ok(Some(AppSecrets {
            secrets,
            cached: false,
        }))
    }
}
