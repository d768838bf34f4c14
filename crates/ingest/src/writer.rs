//! Group commit: concurrent webhooks share one insert transaction.
//!
//! Each request hands its event to its HTTP worker's [`EventWriter`] and waits for the outcome.
//! The worker's writer task takes every event waiting at that moment (up to [`MAX_BATCH`]),
//! stores them with one insert (one commit, one WAL flush), and answers each request only then.
//! No timer holds a lone event back: batches form from requests that arrive while the previous
//! commit is in flight, so a quiet system pays one insert per webhook and a busy one shares
//! commits.
//!
//! Each HTTP worker thread (one per core) has its writer and its connection, on its own
//! runtime: a webhook's path (request, insert, commit, answer) stays on one thread, so the only
//! wake-ups are the sockets'. Writers shared by every thread cost two cross-thread wake-ups per
//! webhook (request → writer, writer → request) plus the connection tasks'. One writer per
//! worker rather than two: its batches are larger (3.9 events per commit rather than 2.9 at 16
//! client connections) and it did as well or better (README, "Ingest against the ceiling").
//!
//! Workers are woken by one notifier task (`queue::wake_workers`, a `NOTIFY` after the commit):
//! inserts that commit while its notification is in flight share the next one, and no request
//! waits for it.

use std::sync::{Arc, Weak};
use std::time::Instant;

use prometheus::{Histogram, HistogramOpts};
use tokio::sync::{Notify, mpsc, oneshot};

use db::queue::{self, Enqueued, NewWebhookEvent};
use db::{DbError, Pool};

/// Most events stored by one insert.
pub(crate) const MAX_BATCH: usize = 256;
/// Connections of an HTTP worker's writer pool: its writer uses one at a time.
pub(crate) const WRITER_CONNECTIONS: u32 = 1;

struct Job {
    event: NewWebhookEvent,
    reply: oneshot::Sender<Result<Enqueued, DbError>>,
}

/// What every HTTP worker's writers share: their metrics and the notifier that wakes the
/// workers after commits. The notifier stops once every clone is dropped (the server's factory
/// and each worker's [`EventWriter`] hold one).
#[derive(Debug, Clone)]
pub(crate) struct CommitHub(Arc<HubInner>);

#[derive(Debug)]
struct HubInner {
    observed: Observed,
    committed: Arc<Notify>,
}

impl Drop for HubInner {
    fn drop(&mut self) {
        // Lets the notifier see the hub is gone.
        self.committed.notify_one();
    }
}

impl CommitHub {
    /// Registers `ingest_commit_batch_size` (events per insert) and
    /// `ingest_commit_duration_seconds` (one insert's commit) in `metrics`, and starts the
    /// notifier on the current runtime with `pool`.
    pub(crate) fn start(pool: Pool, metrics: &bootstrap::metrics::Metrics) -> Self {
        let batch_sizes = Histogram::with_opts(
            HistogramOpts::new(
                "ingest_commit_batch_size",
                "Events stored by one insert (group commit)",
            )
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
        )
        .expect("valid metric");
        metrics.register(batch_sizes.clone());
        let commits = Histogram::with_opts(
            HistogramOpts::new(
                "ingest_commit_duration_seconds",
                "One group-commit insert, from checkout to commit, seconds",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ]),
        )
        .expect("valid metric");
        metrics.register(commits.clone());
        let committed = Arc::new(Notify::new());
        let hub = Arc::new(HubInner {
            observed: Observed {
                batch_sizes,
                commits,
            },
            committed: Arc::clone(&committed),
        });
        tokio::spawn(notify_workers(pool, committed, Arc::downgrade(&hub)));
        CommitHub(hub)
    }
}

/// The handle an HTTP worker's requests store events through. Its writer task stops when every
/// handle is dropped, after answering the jobs already queued.
#[derive(Debug, Clone)]
pub(crate) struct EventWriter {
    jobs: mpsc::Sender<Job>,
    /// Keeps the notifier running while this worker can commit.
    _hub: CommitHub,
}

impl EventWriter {
    /// Starts the writer task on the current runtime (call it on the HTTP worker's thread, from
    /// the server's app factory), inserting through `pool`, which should be this worker's own
    /// ([`WRITER_CONNECTIONS`]): its connection's task then runs on this runtime too.
    pub(crate) fn start(pool: Pool, hub: &CommitHub) -> Self {
        let (jobs, queue) = mpsc::channel(MAX_BATCH * 4);
        tokio::spawn(write_batches(
            pool,
            queue,
            hub.0.observed.clone(),
            Arc::clone(&hub.0.committed),
        ));
        EventWriter {
            jobs,
            _hub: hub.clone(),
        }
    }

    /// Stores one event; returns once its row is committed (or was already stored).
    ///
    /// # Errors
    /// As [`queue::enqueue_many`]; [`DbError::Unavailable`] if the writers have stopped.
    pub(crate) async fn store(&self, event: NewWebhookEvent) -> Result<Enqueued, DbError> {
        let stopped = || DbError::Unavailable("the event writer has stopped".into());
        let (reply, outcome) = oneshot::channel();
        self.jobs
            .send(Job { event, reply })
            .await
            .map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }
}

/// What the writers measure.
#[derive(Debug, Clone)]
struct Observed {
    batch_sizes: Histogram,
    commits: Histogram,
}

/// Sends one `NOTIFY` per wake-up (wake-ups during one coalesce into the next), until the hub
/// is gone.
async fn notify_workers(pool: Pool, committed: Arc<Notify>, hub: Weak<HubInner>) {
    loop {
        committed.notified().await;
        if hub.upgrade().is_none() {
            return;
        }
        match pool.get().await {
            Ok(mut conn) => queue::wake_workers(&mut conn).await,
            Err(error) => {
                tracing::warn!(error = %error, "Could not notify the workers; they find the events on their next poll.")
            }
        }
    }
}

async fn write_batches(
    pool: Pool,
    mut queue: mpsc::Receiver<Job>,
    observed: Observed,
    committed: Arc<Notify>,
) {
    loop {
        let mut jobs = Vec::with_capacity(MAX_BATCH);
        if queue.recv_many(&mut jobs, MAX_BATCH).await == 0 {
            return; // Every sender is gone: the server has stopped.
        }
        let (events, replies): (Vec<_>, Vec<_>) =
            jobs.into_iter().map(|j| (j.event, j.reply)).unzip();
        observed.batch_sizes.observe(events.len() as f64);
        let started = Instant::now();
        let inserted = insert(&pool, &events).await;
        observed.commits.observe(started.elapsed().as_secs_f64());
        match inserted {
            Ok(outcomes) => {
                if outcomes.iter().any(|o| matches!(o, Enqueued::Stored(_))) {
                    committed.notify_one();
                }
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    // A requester that went away (client disconnected) needs no answer.
                    drop(reply.send(Ok(outcome)));
                }
            }
            Err(DbError::Unavailable(cause)) => {
                for reply in replies {
                    drop(reply.send(Err(DbError::Unavailable(cause.clone()))));
                }
            }
            Err(error) if replies.len() == 1 => {
                if let Some(reply) = replies.into_iter().next() {
                    drop(reply.send(Err(error)));
                }
            }
            Err(error) => {
                // One bad row must not fail its neighbours: store them one by one.
                tracing::warn!(error = %error, "Batch insert failed; storing events one by one.");
                for (event, reply) in events.into_iter().zip(replies) {
                    let outcome = insert(&pool, std::slice::from_ref(&event)).await;
                    if outcome.is_ok() {
                        committed.notify_one();
                    }
                    drop(reply.send(outcome.map(|mut outcomes| outcomes.remove(0))));
                }
            }
        }
    }
}

async fn insert(pool: &Pool, events: &[NewWebhookEvent]) -> Result<Vec<Enqueued>, DbError> {
    let mut conn = pool.get().await?;
    queue::enqueue_many(&mut conn, events).await
}
