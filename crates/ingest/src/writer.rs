//! Group commit: concurrent webhooks share one insert transaction.
//!
//! Each request hands its event to the [`EventWriter`] and waits for the outcome. A few writer
//! tasks each take every event waiting at that moment (up to [`MAX_BATCH`]), store them with one
//! multi-row insert (one commit, one WAL flush), and answer each request only then.
//! No timer holds a lone event back: batches form from requests that arrive while another commit
//! is in flight, so a quiet system pays one insert per webhook and a busy one shares commits.
//!
//! Workers are woken by one notifier task (`queue::wake_workers`, a `NOTIFY` after the commit):
//! inserts that commit while its notification is in flight share the next one, and no request
//! waits for it.

use std::sync::Arc;
use std::time::Instant;

use prometheus::{Histogram, HistogramOpts};
use tokio::sync::{Mutex, Notify, mpsc, oneshot};

use db::queue::{self, Enqueued, NewWebhookEvent};
use db::{DbError, Pool};

/// Most events stored by one insert.
pub(crate) const MAX_BATCH: usize = 256;
/// Writer tasks, so that batches are built while others commit.
pub(crate) const WRITERS: usize = 4;

struct Job {
    event: NewWebhookEvent,
    reply: oneshot::Sender<Result<Enqueued, DbError>>,
}

/// The handle requests store events through. Writer tasks stop when every handle is dropped,
/// after answering the jobs already queued.
#[derive(Debug, Clone)]
pub(crate) struct EventWriter {
    jobs: mpsc::Sender<Job>,
}

impl EventWriter {
    /// Starts [`WRITERS`] writer tasks on the current runtime; registers
    /// `ingest_commit_batch_size` (events per insert) and `ingest_commit_duration_seconds`
    /// (one insert's commit) in `metrics`.
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
        let (jobs, queue) = mpsc::channel(MAX_BATCH * WRITERS * 4);
        let queue = Arc::new(Mutex::new(queue));
        let committed = Arc::new(Notify::new());
        for _ in 0..WRITERS {
            let observed = Observed {
                batch_sizes: batch_sizes.clone(),
                commits: commits.clone(),
            };
            tokio::spawn(write_batches(
                pool.clone(),
                Arc::clone(&queue),
                observed,
                Arc::clone(&committed),
            ));
        }
        tokio::spawn(notify_workers(pool, committed, jobs.downgrade()));
        EventWriter { jobs }
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
struct Observed {
    batch_sizes: Histogram,
    commits: Histogram,
}

/// Sends one `NOTIFY` per wake-up (wake-ups during one coalesce into the next), until the
/// writer's handles are gone.
async fn notify_workers(pool: Pool, committed: Arc<Notify>, writer: mpsc::WeakSender<Job>) {
    loop {
        committed.notified().await;
        if writer.upgrade().is_none() {
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
    queue: Arc<Mutex<mpsc::Receiver<Job>>>,
    observed: Observed,
    committed: Arc<Notify>,
) {
    loop {
        let mut jobs = Vec::with_capacity(MAX_BATCH);
        if queue.lock().await.recv_many(&mut jobs, MAX_BATCH).await == 0 {
            committed.notify_one(); // Lets the notifier see the writer is gone.
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
