//! The live streams' hub: one per api replica, fanning each app's feed of push events
//! (`db::push::FeedEvent`) out to its open streams (`routes::stream`: SSE and WebSocket).
//!
//! # Fan-out
//! The outbox's insert trigger notifies `push_events` at commit with the app's id, never the
//! event (notifications are limited to 8 KB). One connection per replica listens; on a
//! notification for an app with open streams, the hub reads the app's events after the last
//! position it broadcast (one index range) and broadcasts them, in position order, to that
//! app's streams. Every replica does the same, so streams work behind any number of replicas.
//! A poll every [`POLL_INTERVAL`] covers notifications lost while the listener reconnects.
//!
//! # No gaps, no repeats
//! Positions are gapless and in commit order per app (`db::push::announce`). Each stream keeps
//! its own cursor (the last position it sent) and checks every broadcast event against it: an
//! event at or below it is a repeat and skipped; an event past `cursor + 1` means it missed some
//! (it subscribed before the hub knew the feed, or fell behind the broadcast buffer), and it
//! reads what it missed from the database before going on. Resuming from `Last-Event-ID` is the
//! same read, bounded by the resume window.
//!
//! # Listening
//! A tenant's changes are announced (written to the outbox) only while it has a webhook
//! subscription or a stream listens (`db::push::subscribed_apps`). A stream marks its app as
//! listening for the resume window when it opens, and the hub renews that for every app with an
//! open stream every [`RENEW_INTERVAL`]; so a client that reconnects within the window finds
//! every event it missed.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use futures_util::StreamExt;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::{CancellationToken, DropGuard};
use uuid::Uuid;

use db::push::{FEEDS_CHANNEL, FeedEvent};
use db::{DbError, Pool, changes};

use crate::error::ApiError;
use crate::settings::StreamSettings;

/// How often the hub reads every open feed even without a notification.
const POLL_INTERVAL: Duration = Duration::from_secs(2);
/// How often the hub renews its apps' listening mark (well within the resume window).
const RENEW_INTERVAL: Duration = Duration::from_secs(60);
/// Events read per feed per query.
const READ_LIMIT: i64 = 500;
/// Events a stream may fall behind the broadcast before it reads from the database instead.
const BROADCAST_CAPACITY: usize = 1_024;

/// The hub, with its listener task (stopped when the hub is dropped).
#[derive(Debug)]
pub(crate) struct StreamHub {
    inner: Arc<Hub>,
    _stop: DropGuard,
}

#[derive(Debug)]
struct Hub {
    pool: Pool,
    settings: StreamSettings,
    /// `api_stream_connections`: open streams on this process.
    connections: prometheus::IntGauge,
    feeds: Mutex<HashMap<Uuid, Feed>>,
    /// Apps notified since the last read.
    notified: Mutex<Vec<Uuid>>,
    wake: Notify,
}

/// An app's feed on this replica, while it has open streams.
#[derive(Debug)]
struct Feed {
    sender: broadcast::Sender<Arc<FeedEvent>>,
    /// The last position broadcast; `None` until the hub first read the feed.
    position: Option<i64>,
    streams: usize,
}

impl StreamHub {
    /// Starts the hub's listener on `database_url` (a dedicated connection) and its reader.
    pub(crate) fn start(
        database_url: SecretString,
        pool: Pool,
        settings: StreamSettings,
        connections: prometheus::IntGauge,
    ) -> Self {
        let inner = Arc::new(Hub {
            pool,
            settings,
            connections,
            feeds: Mutex::default(),
            notified: Mutex::default(),
            wake: Notify::new(),
        });
        let stop = CancellationToken::new();
        tokio::spawn(listen(Arc::clone(&inner), database_url, stop.clone()));
        tokio::spawn(read_feeds(Arc::clone(&inner), stop.clone()));
        StreamHub {
            inner,
            _stop: stop.drop_guard(),
        }
    }

    /// The stream settings.
    pub(crate) fn settings(&self) -> &StreamSettings {
        &self.inner.settings
    }

    /// Opens a stream of `app_id`'s events after `last_event_id` (the SSE `Last-Event-ID`,
    /// within the resume window), or from now on without one. Marks the app as listening.
    ///
    /// # Errors
    /// [`ApiError::TooManyStreams`] past `STREAM_MAX_CONNECTIONS_PER_APP` on this replica;
    /// [`ApiError::Unavailable`] when the database cannot be reached.
    pub(crate) async fn open(
        &self,
        app_id: Uuid,
        last_event_id: Option<i64>,
    ) -> Result<Subscription, ApiError> {
        let receiver = {
            let mut feeds = self.inner.feeds.lock().expect("not poisoned");
            let limit = self.inner.settings.stream_max_connections_per_app;
            let feed = feeds.entry(app_id).or_insert_with(|| Feed {
                sender: broadcast::channel(BROADCAST_CAPACITY).0,
                position: None,
                streams: 0,
            });
            if feed.streams >= limit {
                return Err(ApiError::TooManyStreams(limit));
            }
            feed.streams += 1;
            self.inner.connections.inc();
            feed.sender.subscribe()
        };
        // From here the subscription is counted, and its drop uncounts it.
        let mut subscription = Subscription {
            hub: Arc::clone(&self.inner),
            app_id,
            receiver,
            cursor: 0,
            backlog: VecDeque::new(),
            behind: true,
        };
        self.inner.wake.notify_one();
        let window_s = self.inner.resume_window_s();
        let mut conn = self.inner.pool.get().await.map_err(DbError::from)?;
        FeedEvent::keep_listening(&mut conn, &[app_id], window_s).await?;
        subscription.cursor = match last_event_id {
            Some(last_seen) => {
                let since = Utc::now() - chrono::Duration::seconds(window_s);
                FeedEvent::resume_point(&mut conn, app_id, last_seen, since).await?
            }
            None => {
                subscription.behind = false;
                FeedEvent::last_positions(&mut conn, &[app_id])
                    .await?
                    .get(&app_id)
                    .copied()
                    .unwrap_or(0)
            }
        };
        Ok(subscription)
    }
}

/// One open stream's view of its app's feed: [`Subscription::next`] yields each event once, in
/// position order.
#[derive(Debug)]
pub(crate) struct Subscription {
    hub: Arc<Hub>,
    app_id: Uuid,
    receiver: broadcast::Receiver<Arc<FeedEvent>>,
    /// The position of the last event yielded.
    cursor: i64,
    /// Events read from the database, not yet yielded.
    backlog: VecDeque<Arc<FeedEvent>>,
    /// Whether events after `cursor` may be missing from the broadcast (read them first).
    behind: bool,
}

impl Subscription {
    /// The next event. Cancel-safe: a future dropped before it completes loses nothing.
    ///
    /// # Errors
    /// [`DbError`] reading missed events from the database.
    pub(crate) async fn next(&mut self) -> Result<Arc<FeedEvent>, DbError> {
        loop {
            if let Some(event) = self.backlog.pop_front() {
                self.cursor = event.position;
                return Ok(event);
            }
            if self.behind {
                let mut conn = self.hub.pool.get().await?;
                let missed =
                    FeedEvent::after(&mut conn, &[(self.app_id, self.cursor)], READ_LIMIT).await?;
                self.behind = missed.len() as i64 == READ_LIMIT;
                self.backlog.extend(missed.into_iter().map(Arc::new));
                continue;
            }
            match self.receiver.recv().await {
                Ok(event) if event.position <= self.cursor => {}
                Ok(event) if event.position == self.cursor + 1 => {
                    self.cursor = event.position;
                    return Ok(event);
                }
                // A gap: read from the database what the broadcast did not bring.
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => self.behind = true,
                Err(broadcast::error::RecvError::Closed) => {
                    // Not reached while the subscription holds its feed; wait for a read.
                    tokio::time::sleep(POLL_INTERVAL).await;
                    self.behind = true;
                }
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.connections.dec();
        let mut feeds = self.hub.feeds.lock().expect("not poisoned");
        if let Some(feed) = feeds.get_mut(&self.app_id) {
            feed.streams -= 1;
            if feed.streams == 0 {
                feeds.remove(&self.app_id);
            }
        }
    }
}

/// Follows `push_events` until `stop`, noting the notified apps and waking the reader;
/// reconnects with backoff (100 ms doubling to 5 s), and has every feed read after each
/// (re)connect, since notifications sent meanwhile are lost.
async fn listen(hub: Arc<Hub>, database_url: SecretString, stop: CancellationToken) {
    let mut backoff = Duration::from_millis(100);
    while !stop.is_cancelled() {
        match changes::listen_connection(database_url.expose_secret(), FEEDS_CHANNEL).await {
            Ok(mut conn) => {
                backoff = Duration::from_millis(100);
                hub.wake.notify_one();
                let notifications = conn.notifications_stream();
                let mut notifications = std::pin::pin!(notifications);
                loop {
                    let next = tokio::select! {
                        () = stop.cancelled() => return,
                        next = notifications.next() => next,
                    };
                    match next {
                        Some(Ok(notification)) => {
                            if let Ok(app_id) = notification.payload.parse() {
                                hub.notified.lock().expect("not poisoned").push(app_id);
                                hub.wake.notify_one();
                            }
                        }
                        Some(Err(error)) => {
                            tracing::warn!(error = %error, "Stream listener lost its connection; polling meanwhile.");
                            break;
                        }
                        None => break,
                    }
                }
            }
            Err(error) => {
                tracing::warn!(error = %error, "Stream listener cannot connect; polling meanwhile.")
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Reads and broadcasts the feeds with news (notified apps, feeds never read) on every wake-up,
/// every feed every [`POLL_INTERVAL`], and renews the listening mark every [`RENEW_INTERVAL`].
async fn read_feeds(hub: Arc<Hub>, stop: CancellationToken) {
    let mut poll = tokio::time::interval(POLL_INTERVAL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut renew = tokio::time::interval(RENEW_INTERVAL);
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let everything = tokio::select! {
            () = stop.cancelled() => return,
            () = hub.wake.notified() => false,
            _ = poll.tick() => true,
            _ = renew.tick() => {
                if let Err(error) = hub.renew().await {
                    tracing::warn!(error = %error, "Renewing live streams' listening mark failed; retrying.");
                }
                continue;
            }
        };
        loop {
            match hub.read(everything).await {
                Ok(true) => {}
                Ok(false) => break,
                Err(error) => {
                    tracing::warn!(error = %error, "Reading push feeds for live streams failed; retrying.");
                    break;
                }
            }
        }
    }
}

impl Hub {
    /// `STREAM_RESUME_WINDOW_S`, bounded so that it can be subtracted from a time (68 years).
    fn resume_window_s(&self) -> i64 {
        i64::try_from(self.settings.stream_resume_window_s)
            .unwrap_or(i64::MAX)
            .min(i64::from(i32::MAX))
    }

    /// Reads the feeds due (all of them when `everything`) and broadcasts their new events;
    /// whether a feed had more than one read returns (read again).
    async fn read(&self, everything: bool) -> Result<bool, DbError> {
        let notified: Vec<Uuid> = std::mem::take(&mut *self.notified.lock().expect("not poisoned"));
        let (cursors, unread): (Vec<(Uuid, i64)>, Vec<Uuid>) = {
            let feeds = self.feeds.lock().expect("not poisoned");
            let mut cursors = Vec::new();
            let mut unread = Vec::new();
            for (app_id, feed) in feeds.iter() {
                match feed.position {
                    None => unread.push(*app_id),
                    Some(position) if everything || notified.contains(app_id) => {
                        cursors.push((*app_id, position));
                    }
                    Some(_) => {}
                }
            }
            (cursors, unread)
        };
        if cursors.is_empty() && unread.is_empty() {
            return Ok(false);
        }
        let mut conn = self.pool.get().await?;
        // A feed the hub has not read yet starts at its last committed position: streams that
        // opened before read what came earlier themselves.
        let starts = FeedEvent::last_positions(&mut conn, &unread).await?;
        let events = FeedEvent::after(&mut conn, &cursors, READ_LIMIT).await?;
        drop(conn);
        let mut more = false;
        let mut feeds = self.feeds.lock().expect("not poisoned");
        for app_id in unread {
            if let Some(feed) = feeds.get_mut(&app_id) {
                feed.position
                    .get_or_insert(starts.get(&app_id).copied().unwrap_or(0));
            }
        }
        let mut read: HashMap<Uuid, i64> = HashMap::new();
        for event in events {
            *read.entry(event.app_id).or_default() += 1;
            let Some(feed) = feeds.get_mut(&event.app_id) else {
                continue;
            };
            if feed
                .position
                .is_some_and(|position| event.position == position + 1)
            {
                feed.position = Some(event.position);
                // No receiver (every stream just closed) is not an error.
                let _ = feed.sender.send(Arc::new(event));
            }
        }
        for (app_id, count) in read {
            if count == READ_LIMIT {
                self.notified.lock().expect("not poisoned").push(app_id);
                more = true;
            }
        }
        Ok(more)
    }

    /// Renews the listening mark of every app with an open stream here.
    async fn renew(&self) -> Result<(), DbError> {
        let apps: Vec<Uuid> = self
            .feeds
            .lock()
            .expect("not poisoned")
            .keys()
            .copied()
            .collect();
        if apps.is_empty() {
            return Ok(());
        }
        let mut conn = self.pool.get().await?;
        FeedEvent::keep_listening(&mut conn, &apps, self.resume_window_s()).await
    }
}
