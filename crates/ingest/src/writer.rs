//! Group commit: concurrent webhooks share one insert transaction.
//!
//! Each request hands its event to the [`EventWriter`] and waits for the outcome. A few writer
//! tasks each take every event waiting at that moment (up to [`MAX_BATCH`]), store them with one
//! multi-row insert (one commit, one WAL flush, one `NOTIFY`), and answer each request only then.
//! No timer holds a lone event back: batches form from requests that arrive while another commit
//! is in flight, so a quiet system pays one insert per webhook and a busy one shares commits.

use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};

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
    /// Starts [`WRITERS`] writer tasks on the current runtime.
    pub(crate) fn start(pool: Pool) -> Self {
        let (jobs, queue) = mpsc::channel(MAX_BATCH * WRITERS * 4);
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..WRITERS {
            tokio::spawn(write_batches(pool.clone(), Arc::clone(&queue)));
        }
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

async fn write_batches(pool: Pool, queue: Arc<Mutex<mpsc::Receiver<Job>>>) {
    loop {
        let mut jobs = Vec::with_capacity(MAX_BATCH);
        if queue.lock().await.recv_many(&mut jobs, MAX_BATCH).await == 0 {
            return; // Every sender is gone: the server has stopped.
        }
        let (events, replies): (Vec<_>, Vec<_>) =
            jobs.into_iter().map(|j| (j.event, j.reply)).unzip();
        match insert(&pool, &events).await {
            Ok(outcomes) => {
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
