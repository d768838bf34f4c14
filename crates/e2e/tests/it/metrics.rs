//! `/metrics` on all three services, in the Prometheus text format: requests by route and
//! status, refusals by reason, group commits, the pool, live streams, events by outcome, and
//! the queue's depth and lag going up while an event waits, then down once it is processed.

use std::time::{Duration, Instant};

use diesel_async::SimpleAsyncConnection;
use e2e::{TestStack, fixture, sign};
use reqwest::Method;

use crate::OUTBOUND;

pub(crate) use e2e::metric_sample as sample;

/// `GET {url}/metrics`, checked to be the Prometheus text format.
pub(crate) async fn scrape(url: &str) -> String {
    let response = reqwest::get(format!("{url}/metrics"))
        .await
        .expect("/metrics answers");
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/plain"),
        "the text exposition format"
    );
    response.text().await.expect("text")
}

#[tokio::test(flavor = "multi_thread")]
async fn every_service_serves_metrics_and_the_queue_depth_goes_up_then_down() {
    let stack = TestStack::spawn().await;
    let app = stack.create_app("Acme").await;
    stack.post_fixtures(&app, &OUTBOUND[..1]).await;
    let forged = stack
        .post_raw(
            Some(&app.app_id.to_string()),
            sign(&fixture(OUTBOUND[1]), "not-the-secret-of-this-app"),
        )
        .await;
    assert_eq!(forged.status(), 401);

    let ingest = scrape(&stack.ingest_url).await;
    let route = r#"route="/webhooks/dialpad/{app_id}""#;
    assert_eq!(
        sample(
            &ingest,
            "http_requests_total",
            &[route, r#"status="200""#, r#"service="ingest""#]
        ),
        Some(1.0),
        "{ingest}"
    );
    assert_eq!(
        sample(&ingest, "http_requests_total", &[route, r#"status="401""#]),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &ingest,
            "ingest_refusals_total",
            &[r#"reason="invalid_signature""#]
        ),
        Some(1.0)
    );
    assert!(sample(&ingest, "ingest_commit_batch_size_count", &[]) >= Some(1.0));
    assert!(sample(&ingest, "http_request_duration_seconds_count", &[route]) >= Some(2.0));
    assert!(sample(&ingest, "db_pool_connections", &[]) >= Some(1.0));

    // A worker skips a queue entry another transaction holds: the event waits.
    let mut holder = stack.db.connect().await;
    holder
        .batch_execute("BEGIN; SELECT 1 FROM event_queue FOR UPDATE")
        .await
        .expect("holds the queue");
    stack.start_worker();
    let deadline = Instant::now() + Duration::from_secs(10);
    let worker_url = stack.worker_url().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let waiting = scrape(&worker_url).await;
    assert_eq!(
        sample(&waiting, "queue_pending_events", &[]),
        Some(1.0),
        "{waiting}"
    );
    assert!(sample(&waiting, "queue_oldest_pending_age_seconds", &[]) > Some(0.0));

    holder.batch_execute("ROLLBACK").await.expect("releases");
    let drained = loop {
        let text = scrape(&worker_url).await;
        if sample(&text, "queue_pending_events", &[]) == Some(0.0) {
            break text;
        }
        assert!(
            Instant::now() < deadline + Duration::from_secs(10),
            "drained: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        sample(&drained, "queue_oldest_pending_age_seconds", &[]),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &drained,
            "worker_events_total",
            &[r#"outcome="done""#, r#"service="worker""#]
        ),
        Some(1.0),
        "{drained}"
    );
    assert_eq!(sample(&drained, "queue_dead_events", &[]), Some(0.0));

    // An event that can never apply is a dead letter at once, and the gauge counts it.
    let mut poison = fixture("call_outbound_01_calling.json");
    poison["call_id"] = serde_json::json!(1.5);
    assert_eq!(stack.post_event(&app, &poison).await.status(), 200);
    loop {
        let text = scrape(&worker_url).await;
        if sample(&text, "queue_dead_events", &[]) == Some(1.0) {
            break;
        }
        assert!(
            Instant::now() < deadline + Duration::from_secs(20),
            "dead letter counted: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The api: requests by route, and its open live streams.
    let (status, _) = stack
        .tenant(&app.api_key, Method::GET, "/api/calls", None)
        .await;
    assert_eq!(status, 200);
    let api = scrape(&stack.api_url).await;
    assert_eq!(
        sample(
            &api,
            "http_requests_total",
            &[r#"route="/api/calls""#, r#"status="200""#]
        ),
        Some(1.0),
        "{api}"
    );
    assert_eq!(sample(&api, "api_stream_connections", &[]), Some(0.0));
    let stream = reqwest::Client::new()
        .get(format!("{}/api/events/stream", stack.api_url))
        .header("x-app-api-key", &app.api_key)
        .send()
        .await
        .expect("a stream");
    assert_eq!(stream.status(), 200);
    let api = scrape(&stack.api_url).await;
    assert_eq!(sample(&api, "api_stream_connections", &[]), Some(1.0));
    assert_eq!(
        sample(&api, "http_requests_total", &[r#"route="unmatched""#]),
        None,
        "nothing unmatched yet"
    );
}

#[tokio::test]
async fn with_a_metrics_token_only_its_bearer_reads_metrics() {
    let stack = TestStack::spawn().await;
    let mut settings = e2e::ingest_settings(stack.db.url());
    settings.metrics.metrics_token = Some("metrics-token-for-tests".into());
    let port = stack.spawn_ingest(settings).await;
    let url = format!("http://127.0.0.1:{port}/metrics");
    for authorization in [
        None,
        Some("Bearer wrong-token"),
        Some("metrics-token-for-tests"),
    ] {
        let mut request = stack.http.get(&url);
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let response = request.send().await.expect("answers");
        assert_eq!(response.status(), 401, "{authorization:?}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        let body: serde_json::Value = response.json().await.expect("JSON");
        assert_eq!(body["error"], "unauthorized");
        assert!(!body.to_string().contains("metrics-token-for-tests"));
    }
    let response = stack
        .http
        .get(&url)
        .bearer_auth("metrics-token-for-tests")
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("text");
    assert!(text.contains("ingest_spool_events"), "{text}");
    // The stack's own ingest has no token: open.
    scrape(&stack.ingest_url).await;
}
