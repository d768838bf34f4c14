//! List totals, cached briefly per tenant and filter.
//!
//! A full first page's `total` is a count of every match (10,000 index entries cost Postgres
//! about 2 ms, more than the page itself), and dashboards ask for the same first page over and
//! over. So a counted total is reused for about `TOTAL_CACHE_TTL_MS` (default 1 s; 0 counts
//! every time): `total` may lag the rows by that much. Concurrent requests for a total not
//! cached share one count, and each entry lives 75–125% of the TTL, so totals filled together
//! are not all recounted in the same instant. A page that ends the list tells its total exactly
//! without any count, so small lists are always exact.
//!
//! While the response cache follows the tenants' changes (`response_cache`), a total is also
//! keyed by its tenant's [`Stamp`]: any change of the tenant's data makes it recount, so totals
//! are as fresh as the rows. This matters because a cached answer lives until the tenant's
//! next change, which may be hours away: a total lagging a second would lag that long.

use std::future::Future;
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache;
use uuid::Uuid;

use db::DbError;
use db::listing::{CallFilter, MessageFilter, Window};

use crate::error::ApiError;
use crate::response_cache::Stamp;

/// Which list, for whom, filtered how.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum TotalKey {
    Calls(Uuid, CallFilter),
    Legs(Uuid, CallFilter),
    Messages(Uuid, MessageFilter),
    Voicemails(Uuid, MessageFilter),
}

/// Each entry's lifetime: the TTL, jittered.
struct Jittered(Duration);

/// A total's cache key: the list and, while changes are followed, the tenant's stamp.
type StampedKey = (TotalKey, Option<Stamp>);

impl Expiry<StampedKey, i64> for Jittered {
    fn expire_after_create(&self, _: &StampedKey, _: &i64, _: Instant) -> Option<Duration> {
        Some(self.0.mul_f64(rand::random_range(0.75..1.25)))
    }
}

/// The cache (`None`: disabled).
#[derive(Debug)]
pub(crate) struct Totals(Option<Cache<StampedKey, i64>>);

impl Totals {
    pub(crate) fn new(ttl: Duration) -> Self {
        Totals((!ttl.is_zero()).then(|| {
            Cache::builder()
                .max_capacity(100_000)
                .expire_after(Jittered(ttl))
                .build()
        }))
    }

    /// The `total` of a page of `window`: `None` on keyset pages; the page's own total when it
    /// tells one (it refreshes the cache); else the cached count, or `count` run once for all
    /// concurrent callers. `stamp` is the tenant's, read before the page's query (the one
    /// [`crate::response_cache::ResponseCache::json`] gives its `build`).
    ///
    /// # Errors
    /// What `count` fails with, as [`ApiError`].
    pub(crate) async fn total(
        &self,
        key: TotalKey,
        stamp: Option<Stamp>,
        window: &Window,
        page_total: Option<i64>,
        count: impl Future<Output = Result<i64, DbError>>,
    ) -> Result<Option<i64>, ApiError> {
        if window.after.is_some() {
            return Ok(None);
        }
        let key = (key, stamp);
        match (page_total, &self.0) {
            (Some(total), Some(cache)) => {
                cache.insert(key, total).await;
                Ok(Some(total))
            }
            (Some(total), None) => Ok(Some(total)),
            (None, Some(cache)) => {
                cache
                    .try_get_with(key, count)
                    .await
                    .map(Some)
                    .map_err(|error| {
                        if error.is_unavailable() {
                            ApiError::Unavailable
                        } else {
                            ApiError::Internal(anyhow::anyhow!("counting a list failed: {error}"))
                        }
                    })
            }
            (None, None) => Ok(Some(count.await?)),
        }
    }
}
