//! Whole list answers, cached per tenant until that tenant's data changes.
//!
//! Dashboards and CRM syncs ask for the same pages again and again (the first page of calls,
//! the live calls), and mostly nothing changed in between. So a list answer is kept, as its
//! JSON bytes, stamped with its tenant's *generation*; it is served again while the generation
//! is unchanged. Statement triggers on `calls`, `logical_calls`, `messages` and `voicemails`
//! notify `tenant_changes` with the app id at commit (`db::changes`), whoever wrote, and a
//! listener here bumps that tenant's generation.
//!
//! Freshness:
//! - An answer is stamped with the generation read *before* its query ran, so a change
//!   committed while the query ran leaves it stale at once.
//! - A commit is seen by the next request once its notification arrives: about a millisecond
//!   on a healthy connection.
//! - Notifications sent while the listener is disconnected are lost. So while it is
//!   disconnected the cache is bypassed, and a (re)connect leaves everything cached before it
//!   stale (a new *epoch*).
//! - A connection can also fail silently. Every replica sends an empty notification every
//!   [`HEARTBEAT_INTERVAL`]; a listener that hears nothing for [`SILENCE_LIMIT`] counts its
//!   connection as lost.
//!
//! Only authenticated tenants' list answers are cached (rate limiting and key checks run
//! before), keyed by app, path and query string; errors never are. `RESPONSE_CACHE_MB` bounds
//! the memory (least recently used answers go first); 0 turns the cache off.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use actix_web::http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse};
use futures_util::StreamExt;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use tokio_util::sync::{CancellationToken, DropGuard};
use uuid::Uuid;

use db::Pool;
use db::changes::{self, TENANT_CHANGES_CHANNEL};

use crate::error::ApiError;

/// How often each replica sends a heartbeat notification.
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// How long a listener may hear nothing before it counts its connection as lost.
const SILENCE_LIMIT: Duration = Duration::from_secs(3);

/// The header telling whether an answer came from the cache: `hit`, `miss` (built and
/// cached) or `bypass` (cache off, or the listener not connected).
pub(crate) const CACHE_STATUS_HEADER: &str = "x-cache";

/// The paths whose answers are cached (their handlers answer through [`ResponseCache::json`]).
pub(crate) const CACHED_LISTS: [&str; 4] = [
    "/api/calls",
    "/api/calls/active",
    "/api/messages",
    "/api/voicemails",
];

/// When an answer (or a list total) was built, as far as freshness goes: equal stamps, same
/// tenant data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Stamp {
    epoch: u64,
    generation: u64,
}

/// What the listener knows: whether it is connected, and each tenant's generation.
#[derive(Debug, Default)]
struct Freshness {
    live: AtomicBool,
    /// Bumped on every connect and disconnect of the listener.
    epoch: AtomicU64,
    generations: RwLock<HashMap<Uuid, u64>>,
}

impl Freshness {
    /// The stamp of an answer built from now on (`None` while not connected: bypass).
    fn stamp(&self, app_id: Uuid) -> Option<Stamp> {
        if !self.live.load(Ordering::SeqCst) {
            return None;
        }
        let epoch = self.epoch.load(Ordering::SeqCst);
        let generations = self
            .generations
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        Some(Stamp {
            epoch,
            generation: generations.get(&app_id).copied().unwrap_or(0),
        })
    }

    fn changed(&self, app_id: Uuid) {
        let mut generations = self
            .generations
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        *generations.entry(app_id).or_default() += 1;
    }

    fn connected(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.live.store(true, Ordering::SeqCst);
    }

    fn disconnected(&self) {
        self.live.store(false, Ordering::SeqCst);
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }
}

/// Which answer: the tenant, the path and the raw query string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PageKey {
    app_id: Uuid,
    path: String,
    query: String,
}

#[derive(Debug, Clone)]
struct Cached {
    stamp: Stamp,
    body: Bytes,
}

/// The cache, with its listener and heartbeat tasks (stopped when it is dropped).
#[derive(Debug)]
pub(crate) struct ResponseCache {
    pages: Option<moka::sync::Cache<PageKey, Cached>>,
    freshness: Arc<Freshness>,
    _tasks: Option<DropGuard>,
}

impl ResponseCache {
    /// A cache of at most `capacity_bytes` of answers (0: off, nothing is started), listening
    /// on its own connection to `database_url` and sending heartbeats through `pool`.
    pub(crate) fn start(capacity_bytes: u64, database_url: SecretString, pool: Pool) -> Self {
        let freshness = Arc::new(Freshness::default());
        if capacity_bytes == 0 {
            return ResponseCache {
                pages: None,
                freshness,
                _tasks: None,
            };
        }
        let pages = moka::sync::Cache::builder()
            .max_capacity(capacity_bytes)
            .weigher(|key: &PageKey, cached: &Cached| {
                let bytes = key.path.len() + key.query.len() + cached.body.len() + 64;
                u32::try_from(bytes).unwrap_or(u32::MAX)
            })
            .build();
        let stop = CancellationToken::new();
        tokio::spawn(listen(Arc::clone(&freshness), database_url, stop.clone()));
        tokio::spawn(send_heartbeats(pool, stop.clone()));
        ResponseCache {
            pages: Some(pages),
            freshness,
            _tasks: Some(stop.drop_guard()),
        }
    }

    /// The tenant's stamp now; `None` while changes are not followed (cache off, or the
    /// listener not connected).
    fn stamp(&self, app_id: Uuid) -> Option<Stamp> {
        self.pages.as_ref().and(self.freshness.stamp(app_id))
    }

    /// The tenant's answer to `request` (200, JSON): the cached one while the tenant's data is
    /// unchanged, else `build`'s, serialized and cached. `build` gets the stamp its answer is
    /// cached with, read before it runs (for list totals, `api::totals`). Run validation
    /// before, so that only answers are cached.
    ///
    /// # Errors
    /// What `build` fails with; [`ApiError::Internal`] if the answer cannot be serialized.
    pub(crate) async fn json<T: Serialize, F: Future<Output = Result<T, ApiError>>>(
        &self,
        request: &HttpRequest,
        app_id: Uuid,
        build: impl FnOnce(Option<Stamp>) -> F,
    ) -> Result<HttpResponse, ApiError> {
        let stamp = self.stamp(app_id);
        let cache = self.pages.as_ref().map(|pages| {
            let key = PageKey {
                app_id,
                path: request.path().to_owned(),
                query: request.query_string().to_owned(),
            };
            (pages, key)
        });
        if let (Some((pages, key)), Some(stamp)) = (&cache, stamp)
            && let Some(cached) = pages.get(key)
            && cached.stamp == stamp
        {
            return Ok(answer(cached.body, "hit"));
        }
        let body = Bytes::from(
            serde_json::to_vec(&build(stamp).await?)
                .map_err(|e| ApiError::Internal(anyhow::anyhow!("serializing an answer: {e}")))?,
        );
        match (cache, stamp) {
            (Some((pages, key)), Some(stamp)) => {
                pages.insert(
                    key,
                    Cached {
                        stamp,
                        body: body.clone(),
                    },
                );
                Ok(answer(body, "miss"))
            }
            _ => Ok(answer(body, "bypass")),
        }
    }
}

fn answer(body: Bytes, cache_status: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, HeaderValue::from_static("application/json")))
        .insert_header((
            HeaderName::from_static(CACHE_STATUS_HEADER),
            HeaderValue::from_static(cache_status),
        ))
        .body(body)
}

/// Follows `tenant_changes` until `stop`, reconnecting with backoff (100 ms doubling to 5 s).
async fn listen(freshness: Arc<Freshness>, database_url: SecretString, stop: CancellationToken) {
    let mut backoff = Duration::from_millis(100);
    while !stop.is_cancelled() {
        match changes::listen_connection(database_url.expose_secret(), TENANT_CHANGES_CHANNEL).await
        {
            Ok(mut conn) => {
                backoff = Duration::from_millis(100);
                freshness.connected();
                let notifications = conn.notifications_stream();
                let mut notifications = std::pin::pin!(notifications);
                loop {
                    let next = tokio::select! {
                        () = stop.cancelled() => break,
                        next = tokio::time::timeout(SILENCE_LIMIT, notifications.next()) => next,
                    };
                    match next {
                        Ok(Some(Ok(notification))) => {
                            // An empty payload is a heartbeat: it only proves delivery.
                            if let Ok(app_id) = notification.payload.parse() {
                                freshness.changed(app_id);
                            }
                        }
                        Ok(Some(Err(error))) => {
                            tracing::warn!(
                                error = %error,
                                "Change listener lost its connection; list answers are not \
                                 cached meanwhile."
                            );
                            break;
                        }
                        Ok(None) => break,
                        Err(_) => {
                            tracing::warn!(
                                silence_ms = SILENCE_LIMIT.as_millis(),
                                "Change listener heard nothing, not even heartbeats; reconnecting."
                            );
                            break;
                        }
                    }
                }
                freshness.disconnected();
            }
            Err(error) => tracing::warn!(
                error = %error,
                "Change listener cannot connect; list answers are not cached meanwhile."
            ),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Sends a heartbeat notification every [`HEARTBEAT_INTERVAL`] until `stop`.
async fn send_heartbeats(pool: Pool, stop: CancellationToken) {
    let mut interval = tokio::time::interval(HEARTBEAT_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = interval.tick() => {}
        }
        let sent = match pool.get().await {
            Ok(mut conn) => changes::heartbeat(&mut conn).await,
            Err(error) => Err(error.into()),
        };
        if let Err(error) = sent {
            tracing::debug!(error = %error, "Cannot send the change heartbeat.");
        }
    }
}
