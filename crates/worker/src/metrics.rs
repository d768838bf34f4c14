//! The worker's metrics, served at `GET /metrics` on `METRICS_PORT` beside `GET /healthz` and
//! `GET /readyz` (`bootstrap::metrics`): events processed by outcome, push deliveries by
//! outcome with their latency, the queue's depth and lag (read at each scrape), and the pool.

use std::sync::Arc;

use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use prometheus::{Gauge, HistogramVec, IntCounter, IntCounterVec, IntGauge};

use bootstrap::http::HttpService;
use bootstrap::metrics::{Metrics, PoolCollector};
use db::Pool;

use crate::BatchReport;

/// What the worker counts.
#[derive(Debug, Clone)]
pub(crate) struct WorkerMetrics {
    pub(crate) registry: Metrics,
    /// `worker_events_total{outcome}`: `done`, `ignored`, `failed` (retried later), `dead`.
    events: IntCounterVec,
    /// `worker_events_deferred_total`: claimed events left pending because another batch was
    /// writing their leg (`crate::apply`); they are claimed again, so not an outcome.
    deferred: IntCounter,
    /// `push_delivery_attempts_total{outcome}`: `delivered`, `retrying`, `failed` (no retry
    /// left), `lease_lost`.
    pub(crate) deliveries: IntCounterVec,
    /// `push_delivery_duration_seconds{outcome}`: the receiver's answer, request to end of
    /// body.
    pub(crate) delivery_latency: HistogramVec,
}

impl WorkerMetrics {
    /// Registers every metric; the queue gauges are read from `pool` at each scrape. `token`:
    /// `METRICS_TOKEN`.
    pub(crate) fn new(
        pool: Pool,
        pool_size: u32,
        token: Option<secrecy::SecretString>,
    ) -> WorkerMetrics {
        let pending = IntGauge::new(
            "queue_pending_events",
            "Events waiting to be processed (the hot queue, due or backing off)",
        )
        .expect("valid metric");
        let oldest = Gauge::new(
            "queue_oldest_pending_age_seconds",
            "Age of the oldest pending event (lag): 0 when none is pending",
        )
        .expect("valid metric");
        let dead = IntGauge::new(
            "queue_dead_events",
            "Dead-lettered events waiting for an operator (GET /internal/events?status=dead)",
        )
        .expect("valid metric");
        let pool_for_refresh = pool.clone();
        let refresh: bootstrap::metrics::Refresh = {
            let gauges = (pending.clone(), oldest.clone(), dead.clone());
            Arc::new(move || {
                let pool = pool_for_refresh.clone();
                let (pending, oldest, dead) = gauges.clone();
                Box::pin(async move {
                    match queue_state(&pool).await {
                        Ok(state) => {
                            pending.set(state.pending);
                            oldest.set(state.oldest_s);
                            dead.set(state.dead);
                        }
                        Err(error) => {
                            tracing::warn!(error = %error, "Reading the queue's depth for metrics failed.");
                        }
                    }
                })
            })
        };
        let registry = Metrics::new("worker")
            .with_refresh(refresh)
            .with_token(token);
        registry.register(pending);
        registry.register(oldest);
        registry.register(dead);
        registry.register(PoolCollector::new(pool, pool_size));
        let deferred = IntCounter::new(
            "worker_events_deferred_total",
            "Claimed events left pending for a later batch because another batch was writing their leg",
        )
        .expect("valid metric");
        registry.register(deferred.clone());
        let metrics = WorkerMetrics {
            deferred,
            events: registry.counter_vec(
                "worker_events_total",
                "Events processed, by outcome (done, ignored, failed: retried later, dead)",
                &["outcome"],
            ),
            deliveries: registry.counter_vec(
                "push_delivery_attempts_total",
                "Push delivery attempts, by outcome (delivered, retrying, failed, lease_lost)",
                &["outcome"],
            ),
            delivery_latency: registry.histogram_vec(
                "push_delivery_duration_seconds",
                "Push requests, from sending to the end of the answer, seconds",
                &["outcome"],
            ),
            registry,
        };
        // Every series exists from the start (at 0), so rates and alerts see it before its
        // first event.
        for outcome in ["done", "ignored", "failed", "dead"] {
            metrics.events.with_label_values(&[outcome]);
        }
        for outcome in ["delivered", "retrying", "failed", "lease_lost"] {
            metrics.deliveries.with_label_values(&[outcome]);
        }
        for outcome in ["delivered", "retrying", "failed"] {
            metrics.delivery_latency.with_label_values(&[outcome]);
        }
        metrics
    }

    /// Counts a batch's outcomes.
    pub(crate) fn batch(&self, report: &BatchReport) {
        for (outcome, count) in [
            ("done", report.done),
            ("ignored", report.ignored),
            ("failed", report.failed),
            ("dead", report.dead),
        ] {
            if count > 0 {
                self.events
                    .with_label_values(&[outcome])
                    .inc_by(u64::try_from(count).unwrap_or(u64::MAX));
            }
        }
        self.deferred
            .inc_by(u64::try_from(report.deferred).unwrap_or(u64::MAX));
    }

    /// `GET /healthz`, `GET /readyz` (the database answers) and `GET /metrics` on `port`,
    /// every interface (0 picks a free port).
    pub(crate) fn server(&self, pool: Pool, port: u16) -> anyhow::Result<HttpService> {
        let pool = actix_web::web::Data::new(pool);
        let metrics = actix_web::web::Data::new(self.registry.clone());
        let (listener, port) = bootstrap::http::bind("0.0.0.0", port)?;
        let server = actix_web::HttpServer::new(move || {
            actix_web::App::new()
                .app_data(pool.clone())
                .app_data(metrics.clone())
                .configure(bootstrap::http::health_routes)
                .configure(bootstrap::metrics::metrics_routes)
        })
        .workers(1)
        .listen(listener)?
        .disable_signals()
        .run();
        Ok(HttpService::new(port, server))
    }
}

#[derive(QueryableByName)]
struct QueueState {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pending: i64,
    #[diesel(sql_type = diesel::sql_types::Double)]
    oldest_s: f64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    dead: i64,
}

/// The hot queue's size, and the age of its oldest event (ids grow with arrival, so the
/// smallest id is the oldest: one primary-key probe, not a scan of the event log), and the
/// dead-lettered events (counted in `dead_letters`, which holds only them).
async fn queue_state(pool: &Pool) -> Result<QueueState, db::DbError> {
    let mut conn = pool.get().await?;
    Ok(diesel::sql_query(
        "SELECT count(*) AS pending, coalesce(extract(epoch FROM now() - ( \
           SELECT received_at FROM webhook_events \
           WHERE id = (SELECT min(event_id) FROM event_queue))), 0)::float8 AS oldest_s, \
           (SELECT count(*) FROM dead_letters) AS dead \
         FROM event_queue",
    )
    .get_result(&mut conn)
    .await?)
}
