//! Per-app inbound webhook secrets, cached so a burst of webhooks costs one lookup per app.

use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;
use secrecy::SecretString;
use uuid::Uuid;

use db::apps::App;
use db::{DbError, Pool};

/// App id → webhook secret, each entry kept for a TTL so a rotated secret takes effect within it.
#[derive(Debug, Clone)]
pub(crate) struct SecretCache {
    cache: Cache<Uuid, Arc<SecretString>>,
}

impl SecretCache {
    pub(crate) fn new(ttl: Duration) -> Self {
        SecretCache {
            cache: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl)
                .build(),
        }
    }

    /// The app's secret; `Ok(None)` for an unknown app (not cached, so a new app works at once).
    pub(crate) async fn get(
        &self,
        pool: &Pool,
        app_id: Uuid,
    ) -> Result<Option<Arc<SecretString>>, DbError> {
        if let Some(secret) = self.cache.get(&app_id) {
            return Ok(Some(secret));
        }
        let mut conn = pool.get().await?;
        let Some(secret) = App::webhook_secret(&mut conn, app_id).await? else {
            return Ok(None);
        };
        let secret = Arc::new(SecretString::from(secret));
        self.cache.insert(app_id, Arc::clone(&secret));
        Ok(Some(secret))
    }
}
