//! List totals, cached briefly per tenant and filter.
//!
//! A full first page's `total` is a count of every match (10,000 index entries cost Postgres
//! about 2 ms, more than the page itself), and dashboards ask for the same first page over and
//! over. So a counted total is reused for `TOTAL_CACHE_TTL_MS` (default 1 s; 0 counts every
//! time): `total` may lag the rows by that much. A page that ends the list tells its total
//! exactly without any count, so small lists are always exact.

use std::time::Duration;

use moka::sync::Cache;
use uuid::Uuid;

use db::DbError;
use db::listing::{CallFilter, MessageFilter, Page, Window};

/// Which list, for whom, filtered how.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum TotalKey {
    Calls(Uuid, CallFilter),
    Legs(Uuid, CallFilter),
    Messages(Uuid, MessageFilter),
    Voicemails(Uuid, MessageFilter),
}

/// The cache (`None`: disabled).
#[derive(Debug)]
pub(crate) struct Totals(Option<Cache<TotalKey, i64>>);

impl Totals {
    pub(crate) fn new(ttl: Duration) -> Self {
        Totals((!ttl.is_zero()).then(|| {
            Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl)
                .build()
        }))
    }

    /// Runs `list` for `window`, letting it count only when the total is not cached, and
    /// caches what it counted.
    ///
    /// # Errors
    /// What `list` returns.
    pub(crate) async fn page<T>(
        &self,
        key: TotalKey,
        mut window: Window,
        list: impl AsyncFnOnce(Window) -> Result<Page<T>, DbError>,
    ) -> Result<Page<T>, DbError> {
        let cache = self.0.as_ref().filter(|_| window.after.is_none());
        let cached = cache.and_then(|cache| cache.get(&key));
        window.count = cached.is_none();
        let mut page = list(window).await?;
        match (page.total, cache) {
            (Some(total), Some(cache)) => cache.insert(key, total),
            (None, _) => page.total = cached,
            (Some(_), None) => {}
        }
        Ok(page)
    }
}
