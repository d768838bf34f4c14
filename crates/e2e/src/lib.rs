#![doc = include_str!("../README.md")]

use std::time::Duration;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use db::schema::webhook_events;
mod private_postgres;
mod proxy;

pub use db::testing::TestDatabase;
pub use private_postgres::{PrivatePostgres, ServerCert, TestCa};
pub use proxy::CuttableProxy;

/// The unscoped route's secret in tests (the fixtures' JWTs are signed with it).
pub const UNSCOPED_SECRET: &str = "fixture-webhook-secret-7f3a9c";
/// The admin bearer secret in tests.
pub const INTERNAL_SECRET: &str = "test-internal-api-secret";
/// `ENCRYPTION_KEY` in tests and benchmarks (32 bytes, base64). Never use it elsewhere.
pub const ENCRYPTION_KEY: &str = "dGVzdC1lbmNyeXB0aW9uLWtleS0zMi1ieXRlcy0wMDA=";

/// Ingest settings for a test database.
pub fn ingest_settings(database_url: &str) -> ingest::Settings {
    ingest::Settings::new(database_url, UNSCOPED_SECRET, ENCRYPTION_KEY)
}

/// Api settings for a test database (no Dialpad credentials).
pub fn api_settings(database_url: &str) -> api::Settings {
    api::Settings::new(database_url, INTERNAL_SECRET, ENCRYPTION_KEY)
}

/// The keyring of [`ENCRYPTION_KEY`].
pub fn keyring() -> db::crypto::Keyring {
    db::crypto::Keyring::from_settings(&ENCRYPTION_KEY.into(), None).expect("valid test key")
}

pub use db::testing::fixtures::{fixture, fixture_bytes};

/// The value of the sample of `name` in a Prometheus text exposition (`/metrics`) whose
/// labels include every one of `labels` (`key="value"`); `None` when there is none.
pub fn metric_sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .find(|line| labels.iter().all(|label| line.contains(label)))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

/// Signs an event as Dialpad does (the compact JWT is the whole body).
pub fn sign(event: &Value, secret: &str) -> String {
    ingest::signature::sign(event, secret.as_bytes()).expect("signs")
}

/// Starts an ingest server with `settings` (any database: the stack's, or a test's own),
/// stopped when `shutdown` is cancelled; its port, and the task serving it (ended once stopped).
pub async fn serve_ingest(
    settings: ingest::Settings,
    shutdown: &CancellationToken,
) -> (u16, tokio::task::JoinHandle<std::io::Result<()>>) {
    let ingest = ingest::build(settings).await.expect("ingest starts");
    let port = ingest.port();
    let serving = tokio::spawn(ingest.run_until_stopped(shutdown.clone().cancelled_owned()));
    (port, serving)
}

/// Starts an api server with `settings`, stopped when `shutdown` is cancelled; its base URL.
pub async fn serve_api(settings: api::Settings, shutdown: &CancellationToken) -> String {
    let api = api::build(settings).await.expect("api starts");
    let url = format!("http://127.0.0.1:{}", api.port());
    tokio::spawn(api.run_until_stopped(shutdown.clone().cancelled_owned()));
    url
}

/// Creates a tenant through the admin API at `api_url`.
pub async fn create_app_at(http: &reqwest::Client, api_url: &str, name: &str) -> TestApp {
    let response = http
        .post(format!("{api_url}/internal/apps"))
        .bearer_auth(INTERNAL_SECRET)
        .json(&json!({ "name": name }))
        .send()
        .await
        .expect("api answers");
    assert_eq!(response.status(), 201, "create app");
    let body: Value = response.json().await.expect("JSON");
    TestApp {
        app_id: body["app_id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("app_id"),
        api_key: body["api_key"].as_str().expect("api_key").to_owned(),
        webhook_secret: body["webhook_secret"]
            .as_str()
            .expect("webhook_secret")
            .to_owned(),
    }
}

/// A tenant created through `POST /internal/apps`.
#[derive(Debug, Clone)]
pub struct TestApp {
    pub app_id: Uuid,
    pub api_key: String,
    pub webhook_secret: String,
}

/// The three services against one fresh database.
#[derive(Debug)]
pub struct TestStack {
    pub ingest_url: String,
    pub api_url: String,
    pub worker: worker::Worker,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
    // Declared last: dropped after the servers are told to stop.
    pub db: TestDatabase,
}

impl TestStack {
    /// Starts ingest and api on port 0 against a fresh migrated database, and builds a worker.
    pub async fn spawn() -> TestStack {
        Self::spawn_with(|_| {}).await
    }

    /// As [`TestStack::spawn`], with the api's settings adjusted first (e.g. pointed at a
    /// Dialpad mock).
    pub async fn spawn_with(configure_api: impl FnOnce(&mut api::Settings)) -> TestStack {
        let db = TestDatabase::migrated().await;
        let shutdown = CancellationToken::new();

        let (ingest_port, _) = serve_ingest(ingest_settings(db.url()), &shutdown).await;
        let ingest_url = format!("http://127.0.0.1:{ingest_port}");

        let mut api_settings = api_settings(db.url());
        configure_api(&mut api_settings);
        let api_url = serve_api(api_settings, &shutdown).await;

        let worker = worker::Worker::build(Self::worker_settings(&db))
            .await
            .expect("worker builds");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client");
        TestStack {
            ingest_url,
            api_url,
            worker,
            http,
            shutdown,
            db,
        }
    }

    /// Starts another ingest server with `settings` (e.g. through a proxy, or with other
    /// limits), stopped with the stack; its port.
    pub async fn spawn_ingest(&self, settings: ingest::Settings) -> u16 {
        serve_ingest(settings, &self.shutdown).await.0
    }

    /// Starts another api server with `settings` (a second replica on the same database),
    /// stopped with the stack; its base URL.
    pub async fn spawn_api(&self, settings: api::Settings) -> String {
        serve_api(settings, &self.shutdown).await
    }

    /// Runs the worker as its binary does (woken by `LISTEN`, push deliveries included) in the
    /// background, stopped with the stack.
    pub fn start_worker(&self) {
        let (worker, shutdown) = (self.worker.clone(), self.shutdown.clone());
        tokio::spawn(async move {
            worker
                .run_until_stopped(shutdown)
                .await
                .expect("worker runs")
        });
    }

    /// The base URL of the worker's `/healthz`, `/readyz` and `/metrics`, once
    /// [`TestStack::start_worker`] serves them (waits up to 10 s).
    pub async fn worker_url(&self) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(port) = self.worker.health_port() {
                return format!("http://127.0.0.1:{port}");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the worker serves its health endpoints"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Worker settings for this stack's database, with fast retries for tests.
    pub fn worker_settings(db: &TestDatabase) -> worker::Settings {
        let mut settings = worker::Settings::new(db.url());
        settings.worker_backoff_base_ms = 10;
        settings.worker_backoff_max_ms = 50;
        settings.worker_max_attempts = 3;
        settings.encryption.encryption_key = Some(ENCRYPTION_KEY.into());
        settings.push.push_retry_schedule_ms = "20,20,20,20,20,20,20".into();
        settings.push.push_poll_interval_ms = 20;
        settings.push.allow_private_webhook_urls = true;
        settings
    }

    /// Starts the worker's push delivery loop in the background, stopped with the stack.
    pub fn start_deliveries(&self) {
        let (worker, shutdown) = (self.worker.clone(), self.shutdown.clone());
        tokio::spawn(async move {
            worker
                .run_deliveries(shutdown)
                .await
                .expect("push loop runs")
        });
    }

    /// A tenant request with `method` and an optional JSON body; status and JSON body (`Null`
    /// when there is none).
    pub async fn tenant(
        &self,
        api_key: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.api_url))
            .header("x-app-api-key", api_key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("api answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Creates a tenant through the admin API.
    pub async fn create_app(&self, name: &str) -> TestApp {
        create_app_at(&self.http, &self.api_url, name).await
    }

    /// POSTs a raw body to `/webhooks/dialpad[/{app}]`.
    pub async fn post_raw(
        &self,
        app: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        let url = match app {
            Some(app) => format!("{}/webhooks/dialpad/{app}", self.ingest_url),
            None => format!("{}/webhooks/dialpad", self.ingest_url),
        };
        self.http
            .post(url)
            .body(body)
            .send()
            .await
            .expect("ingest answers")
    }

    /// Signs `event` with the app's secret and POSTs it to the app's route.
    pub async fn post_event(&self, app: &TestApp, event: &Value) -> reqwest::Response {
        let token = sign(event, &app.webhook_secret);
        self.post_raw(Some(&app.app_id.to_string()), token).await
    }

    /// Signs and posts many events to the app's route, 32 at a time (as Dialpad's concurrent
    /// deliveries arrive), asserting each is accepted.
    pub async fn post_events(&self, app: &TestApp, events: &[Value]) {
        use futures_util::StreamExt;
        futures_util::stream::iter(events)
            .map(|event| async move {
                let response = self.post_event(app, event).await;
                assert_eq!(response.status(), 200, "event accepted: {event}");
            })
            .buffer_unordered(32)
            .collect::<Vec<()>>()
            .await;
    }

    /// Posts every fixture to the app's route, asserting each is accepted.
    pub async fn post_fixtures(&self, app: &TestApp, names: &[&str]) {
        for name in names {
            let response = self.post_event(app, &fixture(name)).await;
            assert_eq!(response.status(), 200, "{name} accepted");
        }
    }

    /// Processes every due event (no background loop, no sleeps).
    pub async fn run_worker(&self) -> worker::BatchReport {
        self.worker.drain().await.expect("worker drains the queue")
    }

    /// `GET path` (with its query string) from the api as the tenant whose key is `api_key`.
    pub async fn tenant_get(&self, api_key: &str, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.api_url))
            .header("x-app-api-key", api_key)
            .send()
            .await
            .expect("api answers")
    }

    /// `GET /api/calls` with a key and query string; returns status and JSON body.
    pub async fn get_calls(&self, api_key: &str, query: &str) -> (u16, Value) {
        let response = self
            .tenant_get(api_key, &format!("/api/calls{query}"))
            .await;
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON body"))
    }

    /// An admin request (`Authorization: Bearer INTERNAL_SECRET`) to `base` (an api URL) with an
    /// optional JSON body; returns status and JSON body (`null` when there is none).
    pub async fn admin_at(
        &self,
        base: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{base}{path}"))
            .bearer_auth(INTERNAL_SECRET);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("api answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// [`TestStack::admin_at`] this stack's api.
    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.admin_at(&self.api_url, method, path, body).await
    }

    /// Runs one SQL statement on the stack's database (to age rows, install a fault, ...).
    pub async fn run_sql(&self, statement: &str) {
        let mut conn = self.db.connect().await;
        diesel::sql_query(statement)
            .execute(&mut conn)
            .await
            .expect("statement runs");
    }

    /// Rows in `webhook_events`, by status.
    pub async fn events_by_status(&self) -> Vec<(String, i64)> {
        let mut conn = self.db.connect().await;
        webhook_events::table
            .group_by(webhook_events::status)
            .select((webhook_events::status, diesel::dsl::count_star()))
            .order(webhook_events::status)
            .load(&mut conn)
            .await
            .expect("count events")
    }

    /// All rows in `webhook_events`.
    pub async fn event_total(&self) -> i64 {
        self.events_by_status().await.iter().map(|(_, n)| n).sum()
    }
}

impl Drop for TestStack {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
