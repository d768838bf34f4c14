//! Prometheus metrics (the `prometheus` crate): each service has its own registry
//! ([`Metrics`]), served as the text format at `GET /metrics` ([`metrics_routes`]), with the
//! metrics every HTTP service shares: requests by route, method and status with their latency
//! ([`track_requests`]), and the database pool ([`PoolCollector`]).
//!
//! Labels are bounded: a route is its pattern (`/api/calls/{call_id}`), never the path, and
//! requests no route takes count as `unmatched`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web::{self, Data, ServiceConfig};
use actix_web::{Error, HttpResponse};
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

use db::Pool;

/// Work done just before each scrape (e.g. reading the queue's depth into gauges).
pub type Refresh = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// A service's metrics: its registry and the HTTP request metrics. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    refresh: Option<Refresh>,
    /// `METRICS_TOKEN`: the bearer token `/metrics` asks for, if any.
    token: Option<secrecy::SecretString>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Latency buckets, seconds: 1 ms to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Metrics {
    /// A registry whose every metric carries `service="{service}"`, with
    /// `http_requests_total{route, method, status}` and
    /// `http_request_duration_seconds{route, method}` registered.
    ///
    /// # Panics
    /// Never: the names are valid and registered once.
    pub fn new(service: &str) -> Metrics {
        let labels = std::collections::HashMap::from([("service".to_owned(), service.to_owned())]);
        let registry = Registry::new_custom(None, Some(labels)).expect("valid labels");
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests answered, by route, method and status",
            ),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time from a request's arrival to its response, seconds",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route", "method"],
        )
        .expect("valid metric");
        let metrics = Metrics {
            registry,
            requests,
            latency,
            refresh: None,
            token: None,
        };
        metrics.register(metrics.requests.clone());
        metrics.register(metrics.latency.clone());
        metrics
    }

    /// Registers `collector` (a counter, gauge, histogram, or a custom [`Collector`]).
    ///
    /// # Panics
    /// When a metric of the same name is registered twice: a programming error.
    pub fn register<C: Collector + 'static>(&self, collector: C) {
        self.registry
            .register(Box::new(collector))
            .expect("each metric is registered once");
    }

    /// A new gauge, registered.
    pub fn gauge(&self, name: &str, help: &str) -> IntGauge {
        let gauge = IntGauge::new(name, help).expect("valid metric");
        self.register(gauge.clone());
        gauge
    }

    /// A new counter with `labels`, registered.
    pub fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        let counter = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
        self.register(counter.clone());
        counter
    }

    /// A new histogram (seconds, 1 ms to 10 s) with `labels`, registered.
    pub fn histogram_vec(&self, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
        let histogram = HistogramVec::new(
            HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
            labels,
        )
        .expect("valid metric");
        self.register(histogram.clone());
        histogram
    }

    /// Asks `GET /metrics` for `Authorization: Bearer <token>` (`METRICS_TOKEN`); `None`: open.
    #[must_use]
    pub fn with_token(mut self, token: Option<secrecy::SecretString>) -> Metrics {
        self.token = token;
        self
    }

    /// Runs `refresh` before each scrape.
    #[must_use]
    pub fn with_refresh(mut self, refresh: Refresh) -> Metrics {
        self.refresh = Some(refresh);
        self
    }

    /// The Prometheus text format of every metric.
    pub async fn render(&self) -> String {
        if let Some(refresh) = &self.refresh {
            refresh().await;
        }
        let mut text = Vec::new();
        // Encoding into a Vec cannot fail.
        let _ = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut text);
        String::from_utf8(text).unwrap_or_default()
    }
}

/// `GET /metrics`: the service's metrics (app data: `Data<Metrics>`); with a token
/// ([`Metrics::with_token`]), only for `Authorization: Bearer <token>`, else
/// `401 {"error": "unauthorized"}`.
pub fn metrics_routes(cfg: &mut ServiceConfig) {
    cfg.route("/metrics", web::get().to(serve_metrics));
}

async fn serve_metrics(metrics: Data<Metrics>, request: actix_web::HttpRequest) -> HttpResponse {
    if let Some(token) = &metrics.token {
        use secrecy::ExposeSecret;
        use subtle::ConstantTimeEq;
        let given = request
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !bool::from(given.as_bytes().ct_eq(token.expose_secret().as_bytes())) {
            return HttpResponse::Unauthorized()
                .insert_header(("WWW-Authenticate", "Bearer"))
                .json(serde_json::json!({
                    "error": "unauthorized",
                    "message": "GET /metrics needs Authorization: Bearer <METRICS_TOKEN>",
                }));
        }
    }
    HttpResponse::Ok()
        .content_type(prometheus::TEXT_FORMAT)
        .body(metrics.render().await)
}

/// Middleware (`actix_web::middleware::from_fn`) counting every request and its latency by
/// route pattern, method and status (app data: `Data<Metrics>`).
///
/// # Errors
/// Those of the wrapped service, unchanged (counted with their status).
pub async fn track_requests(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let metrics = request.app_data::<Data<Metrics>>().cloned();
    let route = request
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().as_str().to_owned();
    let response = next.call(request).await;
    if let Some(metrics) = metrics {
        let status = match &response {
            Ok(response) => response.status().as_u16(),
            Err(error) => error.as_response_error().status_code().as_u16(),
        };
        metrics
            .requests
            .with_label_values(&[&route, &method, &status.to_string()])
            .inc();
        metrics
            .latency
            .with_label_values(&[&route, &method])
            .observe(started.elapsed().as_secs_f64());
    }
    response
}

/// The pool's state at each scrape: `db_pool_connections` (open), `db_pool_idle_connections`,
/// `db_pool_max_connections`, and `db_pool_waits_total` (checkouts that had to wait).
#[derive(Debug)]
pub struct PoolCollector {
    pool: Pool,
    max: u32,
    open: IntGauge,
    idle: IntGauge,
    limit: IntGauge,
    waits: IntGauge,
}

impl PoolCollector {
    /// A collector of `pool`'s state; `max` is its configured size.
    ///
    /// # Panics
    /// Never: the names are valid.
    pub fn new(pool: Pool, max: u32) -> PoolCollector {
        let gauge = |name: &str, help: &str| IntGauge::new(name, help).expect("valid metric");
        PoolCollector {
            pool,
            max,
            open: gauge("db_pool_connections", "Open database connections"),
            idle: gauge("db_pool_idle_connections", "Idle database connections"),
            limit: gauge(
                "db_pool_max_connections",
                "The pool's size (DATABASE_POOL_SIZE)",
            ),
            waits: gauge(
                "db_pool_waits_total",
                "Checkouts that waited for a connection since start",
            ),
        }
    }
}

impl Collector for PoolCollector {
    fn desc(&self) -> Vec<&Desc> {
        [&self.open, &self.idle, &self.limit, &self.waits]
            .into_iter()
            .flat_map(|g| g.desc())
            .collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let state = self.pool.state();
        self.open.set(i64::from(state.connections));
        self.idle.set(i64::from(state.idle_connections));
        self.limit.set(i64::from(self.max));
        self.waits
            .set(i64::try_from(state.statistics.get_waited).unwrap_or(i64::MAX));
        [&self.open, &self.idle, &self.limit, &self.waits]
            .into_iter()
            .flat_map(|g| g.collect())
            .collect()
    }
}
