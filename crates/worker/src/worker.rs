//! The worker loop: claim a batch, apply it, complete it, in one transaction; sleep until
//! notified or the poll interval passes; stop between batches on shutdown. A worker runs this
//! loop `WORKER_CONCURRENCY` times per lane (`db::queue`, *Lanes*): up-to-date tenants and
//! backlogged tenants each have their own loops, so a backlog's batches never delay another
//! tenant's new events, and each lane keeps batches in flight side by side (a leg one holds is
//! deferred by the others, `crate::apply`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use diesel_async::{AsyncConnection, SimpleAsyncConnection};
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use db::queue::{Failure, Lane};
use db::retention::{self, Pruned};
use db::{DbError, Pool, queue};
use domain::backoff::retry_delay;

use crate::Settings;
use crate::apply::{Outcome, Plan};
use crate::metrics::WorkerMetrics;
use crate::{listener, push};

/// Events scanned per retention batch (one short transaction each).
const RETENTION_BATCH: i64 = 1_000;

/// What one batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Events claimed.
    pub claimed: usize,
    /// Applied to domain tables.
    pub done: usize,
    /// Stored but not modelled.
    pub ignored: usize,
    /// Failed this attempt and will be retried after a backoff.
    pub failed: usize,
    /// Dead-lettered: can never apply (rejected at once), or out of attempts.
    pub dead: usize,
    /// Left pending for a later batch: their leg was being written by another batch
    /// (`crate::apply`).
    pub deferred: usize,
}

impl BatchReport {
    /// Every event claimed was deferred: the batches holding their legs must commit first.
    fn all_deferred(&self) -> bool {
        self.claimed > 0 && self.deferred == self.claimed
    }
}

/// How long a batch loop waits before claiming again when every event it claimed was deferred
/// (the holding batch commits within about one batch time).
const DEFERRED_PAUSE: Duration = Duration::from_millis(20);

/// A queue worker. Cheap to clone; clones share the pool and the queue upkeep.
#[derive(Debug, Clone)]
pub struct Worker {
    pool: Pool,
    database_url: SecretString,
    settings: Settings,
    id: String,
    upkeep: Arc<QueueUpkeep>,
    metrics: WorkerMetrics,
    /// Where `run_until_stopped` serves `/healthz`, `/readyz` and `/metrics`, once it does.
    health_port: Arc<std::sync::OnceLock<u16>>,
}

/// When this worker last vacuumed the queue (see `db::queue::vacuum`).
#[derive(Debug, Default)]
struct QueueUpkeep {
    /// Events completed since the last vacuum was started.
    completed: AtomicUsize,
    /// A vacuum is running.
    running: AtomicBool,
}

impl Worker {
    /// Checks the schema is current and builds the pool.
    ///
    /// # Errors
    /// `DATABASE_URL` missing, or migrations behind.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let database_url = settings.database.url()?;
        db::migrations::ensure_schema_current(database_url.expose_secret()).await?;
        // The batch statements are prepared once per connection, planned for each batch.
        let pool_settings = db::PoolSettings {
            custom_plans_only: true,
            ..settings.database.pool()
        };
        let pool = db::connect_pool(database_url.expose_secret(), &pool_settings).await?;
        // The queue may hold dead entries of events completed before a restart (`db::queue::vacuum`).
        if let Err(error) = queue::vacuum(&mut *pool.get().await?).await {
            tracing::warn!(error = %error, "Queue vacuum failed; autovacuum will do it.");
        }
        let metrics = WorkerMetrics::new(
            pool.clone(),
            settings.database.pool().max_size,
            settings.metrics.metrics_token.clone(),
        );
        Ok(Worker {
            pool,
            database_url,
            id: settings.id(),
            settings,
            upkeep: Arc::default(),
            metrics,
            health_port: Arc::default(),
        })
    }

    /// The port of `/healthz`, `/readyz` and `/metrics` (`METRICS_PORT`, or the one picked for
    /// 0), once [`Worker::run_until_stopped`] serves them.
    pub fn health_port(&self) -> Option<u16> {
        self.health_port.get().copied()
    }

    /// Processes one batch: claims up to `WORKER_BATCH_SIZE` due events, applies them and
    /// records each one's outcome, all in one transaction.
    ///
    /// # Errors
    /// [`DbError`] when the transaction fails as a whole (nothing is committed; the events stay
    /// pending and are claimed again).
    pub async fn process_batch(&self) -> Result<BatchReport, DbError> {
        self.process_lane_batch(Lane::Any).await
    }

    /// [`Worker::process_batch`] for the tenants `lane` serves.
    async fn process_lane_batch(&self, lane: Lane) -> Result<BatchReport, DbError> {
        let mut conn = self.pool.get().await?;
        let report = conn
            .transaction(async |conn| {
                // The batch's commit does not wait for its WAL flush (the WAL writer flushes it
                // within ~3 x `wal_writer_delay`), so the next batch's work overlaps the flush.
                // Safe because everything it writes is derived: a crash can lose only whole
                // recent batch transactions, whose events are then still `pending` (their
                // rows were committed, durably, by ingest) and are applied again, to the same
                // rows. Ingest's commits stay synchronous: its 200 promises durability.
                conn.batch_execute("SET LOCAL synchronous_commit = off")
                    .await?;
                self.claim_and_apply(conn, lane).await
            })
            .await?;
        self.vacuum_queue_when_due(report.claimed);
        self.metrics.batch(&report);
        Ok(report)
    }

    /// Counts `completed` events, and every `db::queue::VACUUM_AFTER_EVENTS` starts a vacuum
    /// of the queue in the background (one at a time; its failure is only logged: autovacuum
    /// remains the fallback).
    fn vacuum_queue_when_due(&self, completed: usize) {
        let since = self
            .upkeep
            .completed
            .fetch_add(completed, Ordering::Relaxed)
            + completed;
        if since < queue::VACUUM_AFTER_EVENTS || self.upkeep.running.swap(true, Ordering::AcqRel) {
            return;
        }
        self.upkeep.completed.store(0, Ordering::Relaxed);
        let (pool, upkeep, id) = (self.pool.clone(), Arc::clone(&self.upkeep), self.id.clone());
        tokio::spawn(async move {
            let result = match pool.get().await {
                Ok(mut conn) => queue::vacuum(&mut conn).await,
                Err(error) => Err(error.into()),
            };
            if let Err(error) = result {
                tracing::warn!(worker.id = %id, error = %error, "Queue vacuum failed; autovacuum will do it.");
            }
            upkeep.running.store(false, Ordering::Release);
        });
    }

    /// [`Worker::process_batch`] inside the caller's transaction on `conn`: the events stay
    /// locked, and the changes uncommitted, until the caller commits or rolls back.
    ///
    /// # Errors
    /// [`DbError`] from the queries; the caller must roll back.
    pub async fn process_batch_in(
        &self,
        conn: &mut db::AsyncPgConnection,
    ) -> Result<BatchReport, DbError> {
        self.claim_and_apply(conn, Lane::Any).await
    }

    async fn claim_and_apply(
        &self,
        conn: &mut db::AsyncPgConnection,
        lane: Lane,
    ) -> Result<BatchReport, DbError> {
        let settings = &self.settings;
        let claimed = queue::claim_batch(conn, i64::from(settings.worker_batch_size), lane).await?;
        if claimed.is_empty() {
            return Ok(BatchReport::default());
        }
        let claimed_count = claimed.len();
        // Failures are logged with their webhook's request id, as ingest logged it.
        let request_ids: std::collections::HashMap<i64, String> = claimed
            .iter()
            .filter_map(|event| Some((event.id, event.request_id.clone()?)))
            .collect();
        let max_graph_legs = usize::try_from(settings.worker_max_call_graph_legs).unwrap_or(1);
        let outcome = Plan::new(claimed).apply(conn, max_graph_legs).await?;
        if tracing::enabled!(tracing::Level::DEBUG) {
            log_each_event(&outcome, &request_ids);
        }
        let mut report = BatchReport {
            claimed: claimed_count,
            done: outcome.done.len(),
            ignored: outcome.ignored.values().map(Vec::len).sum(),
            deferred: outcome.deferred.len(),
            ..BatchReport::default()
        };
        (report.failed, report.dead) =
            record_outcome(conn, settings, outcome, &request_ids).await?;
        Ok(report)
    }

    /// Runs one retention pass (see `db::retention`): prunes processed events older than
    /// `RETENTION_DAYS`, batch by batch, each in its own short transaction, then the push
    /// announcements of that age that are no longer pending (`db::push::prune_announcements`)
    /// and expired stream tokens. Returns the totals of the event log.
    ///
    /// # Errors
    /// [`DbError`] from a batch; batches before it stay committed.
    pub async fn prune_expired(&self) -> Result<Pruned, DbError> {
        let mut total = Pruned::default();
        if self.settings.retention_days == 0 {
            return Ok(total);
        }
        let cutoff = Utc::now() - chrono::TimeDelta::days(i64::from(self.settings.retention_days));
        loop {
            let mut conn = self.pool.get().await?;
            let batch =
                retention::prune_batch(&mut conn, cutoff, total.last_id, RETENTION_BATCH).await?;
            if batch.scanned == 0 {
                // Then what was announced before the cutoff and is no longer pending.
                while db::push::prune_announcements(&mut conn, cutoff, RETENTION_BATCH).await? > 0 {
                }
                db::push::StreamToken::prune_expired(&mut conn).await?;
                return Ok(total);
            }
            total.scanned += batch.scanned;
            total.units += batch.units;
            total.deleted += batch.deleted;
            total.last_id = batch.last_id;
        }
    }

    /// Processes batches until none is due; returns the total. Used by tests and tools.
    ///
    /// # Errors
    /// As [`Worker::process_batch`].
    pub async fn drain(&self) -> Result<BatchReport, DbError> {
        let mut total = BatchReport::default();
        loop {
            let batch = self.process_batch().await?;
            if batch.claimed == 0 {
                return Ok(total);
            }
            if batch.all_deferred() {
                tokio::time::sleep(DEFERRED_PAUSE).await;
            }
            total.claimed += batch.claimed;
            total.done += batch.done;
            total.ignored += batch.ignored;
            total.failed += batch.failed;
            total.dead += batch.dead;
            total.deferred += batch.deferred;
        }
    }

    /// Runs until `shutdown` is cancelled, then finishes the batches in hand and returns.
    /// `WORKER_CONCURRENCY` batch loops per lane (`WORKER_BACKLOG_AFTER_MS`). Notifications of
    /// new events wake the loops of the lane that takes new events; the backlog lane polls
    /// every `WORKER_BACKLOG_AFTER_MS` instead (an event is only backlogged once it has waited
    /// that long, so waking it for each new event would only cost a claim query that finds
    /// nothing).
    ///
    /// # Errors
    /// Never for database trouble (it is logged and retried); only on a bug.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let lanes = match self.settings.worker_backlog_after_ms {
            0 => vec![Lane::Any],
            lag_ms => vec![Lane::UpToDate { lag_ms }, Lane::Backlogged { lag_ms }],
        };
        // `WORKER_CONCURRENCY` batch loops per lane, sharing the lane's wake-up: a notification
        // wakes one waiting loop (the others stay asleep unless more come while it works), so a
        // burst of webhooks costs one claim, not one per loop.
        let concurrency = self.settings.worker_concurrency.max(1) as usize;
        let wakes: Vec<Arc<Notify>> = lanes.iter().map(|_| Arc::new(Notify::new())).collect();
        let woken = lanes
            .iter()
            .zip(&wakes)
            .filter(|(lane, _)| !matches!(lane, Lane::Backlogged { .. }))
            .map(|(_, wake)| Arc::clone(wake))
            .collect();
        let loops: Vec<(Lane, Arc<Notify>)> = lanes
            .iter()
            .zip(&wakes)
            .flat_map(|(lane, wake)| (0..concurrency).map(|_| (*lane, Arc::clone(wake))))
            .collect();
        let listener = tokio::spawn(listener::listen(
            self.database_url.clone(),
            queue::NOTIFY_CHANNEL,
            woken,
            shutdown.clone(),
        ));
        let push = self.spawn_push_loop(&shutdown)?;
        let retention = tokio::spawn(self.clone().retention_loop(shutdown.clone()));
        let health = self
            .metrics
            .server(self.pool.clone(), self.settings.metrics_port)?;
        tracing::info!(
            port = health.port(),
            "Worker health and metrics endpoints listening."
        );
        // First set wins: clones of one worker share its port.
        let _ = self.health_port.set(health.port());
        let health = tokio::spawn(health.run_until_stopped(shutdown.clone().cancelled_owned()));
        tracing::info!(worker.id = %self.id, lanes = lanes.len(), concurrency, "Worker started.");
        let loops: Vec<_> = loops
            .into_iter()
            .map(|(lane, wake)| {
                let (worker, shutdown) = (self.clone(), shutdown.clone());
                tokio::spawn(async move { worker.run_lane(lane, &wake, shutdown).await })
            })
            .collect();
        for batch_loop in loops {
            batch_loop.await.context("Batch loop failed")?;
        }
        listener.await.context("Queue listener task failed")?;
        if let Some((deliveries, listener)) = push {
            deliveries.await.context("Push delivery loop failed")?;
            listener.await.context("Push listener task failed")?;
        }
        retention.await.context("Retention task failed")?;
        health
            .await
            .context("Health server task failed")?
            .context("Health server failed")?;
        tracing::info!(worker.id = %self.id, "Worker stopped.");
        Ok(())
    }

    /// Claims and applies the batches of `lane` until `shutdown`: the next one at once after a
    /// full batch, otherwise after a notification (`wake`) or the poll interval (the backlog
    /// lane's: `WORKER_BACKLOG_AFTER_MS`, if shorter).
    async fn run_lane(&self, lane: Lane, wake: &Notify, shutdown: CancellationToken) {
        let mut error_pause = Duration::from_millis(200);
        while !shutdown.is_cancelled() {
            let pause = match self.process_lane_batch(lane).await {
                Ok(report) => {
                    error_pause = Duration::from_millis(200);
                    if report.claimed > 0 {
                        tracing::info!(
                            worker.id = %self.id,
                            worker.lane = ?lane,
                            events.claimed = report.claimed,
                            events.done = report.done,
                            events.ignored = report.ignored,
                            events.failed = report.failed,
                            events.dead = report.dead,
                            events.deferred = report.deferred,
                            "Batch processed."
                        );
                    }
                    if report.claimed == self.settings.worker_batch_size as usize
                        && !report.all_deferred()
                    {
                        continue; // A full batch: more are probably waiting.
                    } else if report.deferred > 0 {
                        // The deferred events are due once the batches holding them commit.
                        DEFERRED_PAUSE
                    } else {
                        match lane {
                            Lane::Backlogged { lag_ms } => {
                                Duration::from_millis(lag_ms).min(self.settings.poll_interval())
                            }
                            _ => self.settings.poll_interval(),
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(worker.id = %self.id, worker.lane = ?lane, error = %error, "Batch failed; will retry.");
                    error_pause = (error_pause * 2).min(Duration::from_secs(5));
                    error_pause
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = wake.notified() => {}
                () = tokio::time::sleep(pause) => {}
            }
        }
    }
}

/// The push delivery loop's task and its listener's.
type PushTasks = (tokio::task::JoinHandle<()>, tokio::task::JoinHandle<()>);

impl Worker {
    /// Runs only the push delivery loop until `shutdown` (tests and tools;
    /// [`Worker::run_until_stopped`] runs it beside the batch loops).
    ///
    /// # Errors
    /// As [`Worker::run_until_stopped`].
    pub async fn run_deliveries(&self, shutdown: CancellationToken) -> anyhow::Result<()> {
        if let Some((deliveries, listener)) = self.spawn_push_loop(&shutdown)? {
            deliveries.await.context("Push delivery loop failed")?;
            listener.await.context("Push listener task failed")?;
        }
        Ok(())
    }

    /// Starts the push delivery loop and its listener, unless `ENCRYPTION_KEY` is missing
    /// (then deliveries wait, logged once).
    ///
    /// # Errors
    /// A malformed `ENCRYPTION_KEY`, or an HTTP client that cannot be built.
    fn spawn_push_loop(&self, shutdown: &CancellationToken) -> anyhow::Result<Option<PushTasks>> {
        if self.settings.encryption.encryption_key.is_none() {
            tracing::warn!(
                "ENCRYPTION_KEY is not set: push deliveries are not sent by this worker."
            );
            return Ok(None);
        }
        let keyring = self.settings.encryption.keyring()?;
        let deliverer = push::Deliverer::new(
            self.pool.clone(),
            keyring,
            self.settings.push.clone(),
            self.metrics.clone(),
        )?;
        let wake = Arc::new(Notify::new());
        let listener = tokio::spawn(listener::listen(
            self.database_url.clone(),
            db::push::DELIVERIES_CHANNEL,
            vec![Arc::clone(&wake)],
            shutdown.clone(),
        ));
        let deliveries = tokio::spawn(deliverer.run(wake, shutdown.clone()));
        Ok(Some((deliveries, listener)))
    }

    /// Runs a retention pass every `RETENTION_INTERVAL_MS` until `shutdown`. Every replica
    /// runs it; concurrent passes only skip each other's rows (unit locks, idempotent deletes).
    async fn retention_loop(self, shutdown: CancellationToken) {
        let interval = Duration::from_millis(self.settings.retention_interval_ms.max(1_000));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
            match self.prune_expired().await {
                Ok(pruned) if pruned.deleted > 0 => tracing::info!(
                    worker.id = %self.id,
                    events.deleted = pruned.deleted,
                    units.snapshotted = pruned.units,
                    "Retention pass done."
                ),
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(worker.id = %self.id, error = %error, "Retention pass failed; will retry.");
                }
            }
        }
    }
}

/// One debug line per event of a batch with its outcome, named with the request id ingest
/// answered it with (`request.id`, as in ingest's lines), so one webhook can be followed from
/// ingest's log into the worker's (`RUST_LOG=worker=debug`). Only called when debug is on: a
/// batch is 500 events.
fn log_each_event(outcome: &Outcome, request_ids: &std::collections::HashMap<i64, String>) {
    let request = |id: &i64| request_ids.get(id).map_or("", String::as_str);
    for id in &outcome.done {
        tracing::debug!(
            event.id = id,
            request.id = request(id),
            outcome = "done",
            "Event applied."
        );
    }
    for (reason, ids) in &outcome.ignored {
        for id in ids {
            tracing::debug!(
                event.id = id,
                request.id = request(id),
                outcome = "ignored",
                reason,
                "Event ignored."
            );
        }
    }
    for (event, error) in &outcome.failed {
        tracing::debug!(event.id = event.id, request.id = request(&event.id), outcome = "failed", error = %error, "Event failed.");
    }
    for (id, error) in &outcome.rejected {
        tracing::debug!(event.id = id, request.id = request(id), outcome = "rejected", error = %error, "Event rejected.");
    }
}

/// Writes what happened to each event of a batch; returns how many failed events will be
/// retried and how many are dead. Failures are logged once per batch, as counts by reason
/// with the first event id, not once per event: a flood of bad events must not flood the log.
async fn record_outcome(
    conn: &mut db::AsyncPgConnection,
    settings: &Settings,
    outcome: Outcome,
    request_ids: &std::collections::HashMap<i64, String>,
) -> Result<(usize, usize), DbError> {
    queue::complete(conn, &outcome.done).await?;
    for (reason, ids) in &outcome.ignored {
        queue::ignore(conn, ids, reason).await?;
    }
    let retried = outcome.failed.into_iter().map(|(event, error)| {
        let attempts = u32::try_from(event.attempts).unwrap_or(0).saturating_add(1);
        let retry_at = (attempts < settings.worker_max_attempts).then(|| {
            let delay = retry_delay(
                attempts,
                Duration::from_millis(settings.worker_backoff_base_ms),
                Duration::from_millis(settings.worker_backoff_max_ms),
                rand::rng().random::<f64>(),
            );
            Utc::now() + delay
        });
        Failure {
            id: event.id,
            error,
            retry_at,
        }
    });
    let rejected = outcome.rejected.into_iter().map(|(id, error)| Failure {
        id,
        error,
        retry_at: None,
    });
    let failures: Vec<Failure> = retried.chain(rejected).collect();
    let dead = failures.iter().filter(|f| f.retry_at.is_none()).count();
    if !failures.is_empty() {
        tracing::warn!(
            events.retried = failures.len() - dead,
            events.dead = dead,
            reasons = %crate::apply::failure_summary(&failures, request_ids),
            "Events failed."
        );
    }
    queue::fail(conn, &failures).await?;
    Ok((failures.len() - dead, dead))
}
