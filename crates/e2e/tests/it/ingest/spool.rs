//! The outage spool: with Postgres stopped, verified webhooks are accepted onto local disk,
//! survive an ingest restart, and reach the queue exactly once and in order when Postgres is
//! back, also when a segment is drained twice (a crash between the commit and the delete).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use diesel::sql_types::{Nullable, Text, Timestamptz};
use diesel_async::RunQueryDsl;
use e2e::{PrivatePostgres, TestApp, fixture, sign};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

#[derive(diesel::QueryableByName, Debug)]
struct StoredEvent {
    #[diesel(sql_type = Nullable<Text>)]
    request_id: Option<String>,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Timestamptz)]
    received_at: chrono::DateTime<chrono::Utc>,
}

async fn stored_events(url: &str) -> Vec<StoredEvent> {
    let mut conn = db::connect::establish(url).await.expect("connects");
    diesel::sql_query(
        "SELECT request_id, status::text AS status, received_at FROM webhook_events ORDER BY id",
    )
    .load(&mut conn)
    .await
    .expect("events")
}

/// The outbound call's first event as another call (its own dedupe key).
fn calling_event(call_id: i64) -> Value {
    let mut event = fixture("call_outbound_01_calling.json");
    event["call_id"] = json!(call_id);
    event
}

async fn post(
    http: &reqwest::Client,
    port: u16,
    route: &str,
    token: String,
    request_id: &str,
) -> reqwest::Response {
    http.post(format!("http://127.0.0.1:{port}/webhooks/dialpad{route}"))
        .header("x-request-id", request_id)
        .body(token)
        .send()
        .await
        .expect("ingest answers")
}

async fn readyz(http: &reqwest::Client, port: u16) -> (u16, Value) {
    let response = http
        .get(format!("http://127.0.0.1:{port}/readyz"))
        .send()
        .await
        .expect("ingest answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON"))
}

/// Waits until ingest says it is ready with nothing spooled (the drain is done).
async fn wait_until_drained(http: &reqwest::Client, port: u16) -> Value {
    let mut last = Value::Null;
    for _ in 0..300 {
        let (status, body) = readyz(http, port).await;
        if status == 200 && body["status"] == "ready" {
            return body;
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the spool did not drain: {last}");
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("spool dir")
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("segment-"))
        })
        .collect();
    found.sort();
    found
}

/// A migrated Postgres of the test's own (it will be stopped), and its URL.
async fn migrated_private_postgres() -> (Arc<PrivatePostgres>, String) {
    let server = Arc::new(
        tokio::task::spawn_blocking(|| PrivatePostgres::start(None))
            .await
            .expect("private postgres starts"),
    );
    let url = server.url("");
    db::migrations::run_migrations(&url)
        .await
        .expect("migrated");
    (server, url)
}

/// Stops the server, or starts it again, on a blocking thread (`pg_ctl` waits).
async fn set_running(server: &Arc<PrivatePostgres>, running: bool) {
    let server = Arc::clone(server);
    tokio::task::spawn_blocking(move || {
        if running {
            server.start_again();
        } else {
            server.stop();
        }
    })
    .await
    .expect("pg_ctl ran");
}

#[tokio::test]
async fn events_accepted_while_postgres_is_down_are_stored_once_in_order_after_a_restart() {
    let (server, url) = migrated_private_postgres().await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let services = CancellationToken::new();
    let api_url = e2e::serve_api(e2e::api_settings(&url), &services).await;
    let app: TestApp = e2e::create_app_at(&http, &api_url, "spool tenant").await;
    let route = format!("/{}", app.app_id);
    // A tenant whose webhooks no ingest has verified before the outage.
    let unseen: TestApp = e2e::create_app_at(&http, &api_url, "unseen tenant").await;

    let spool_dir = std::env::temp_dir().join(format!("cti-spool-{}", uuid::Uuid::new_v4()));
    let mut settings = e2e::ingest_settings(&url);
    settings.ingest_spool_dir = Some(spool_dir.to_string_lossy().into_owned());
    settings.ingest_db_retry_budget_ms = 500;
    settings.database.database_connect_timeout_ms = 300;

    // Ingest A, with Postgres up: the first event is stored directly (and the app's secrets
    // are read).
    let first_run = CancellationToken::new();
    let (port_a, serving_a) = e2e::serve_ingest(settings.clone(), &first_run).await;
    let first = fixture("call_outbound_01_calling.json");
    let response = post(
        &http,
        port_a,
        &route,
        sign(&first, &app.webhook_secret),
        "direct-0",
    )
    .await;
    assert_eq!(response.status(), 200);

    // Postgres stops (as a crash or a failover would). Every event is still accepted: 202,
    // spooled, in the order sent.
    set_running(&server, false).await;
    let mut spooled_ids = Vec::new();
    let rest = [
        "call_outbound_02_connected.json",
        "call_outbound_03_hangup.json",
    ];
    let mut events: Vec<Value> = rest.iter().map(|name| fixture(name)).collect();
    events.extend((0..18).map(|i| calling_event(7_300_000_000_000_000 + i)));
    for (i, event) in events.iter().enumerate() {
        let request_id = format!("spooled-{i:02}");
        let response = post(
            &http,
            port_a,
            &route,
            sign(event, &app.webhook_secret),
            &request_id,
        )
        .await;
        assert_eq!(response.status(), 202, "{request_id}");
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(body, json!({ "spooled": true }));
        spooled_ids.push(request_id);
    }
    let (status, ready) = readyz(&http, port_a).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["status"], "degraded");
    assert_eq!(ready["database"], "unreachable");
    assert_eq!(ready["spool"]["events"], 20);
    let metrics = http
        .get(format!("http://127.0.0.1:{port_a}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("ingest_spool_events{service=\"ingest\"} 20"),
        "{metrics}"
    );

    // Ingest A stops; B starts on the same spool while Postgres is still down.
    first_run.cancel();
    serving_a.await.expect("joined").expect("A stopped");
    let copies = std::env::temp_dir().join(format!("cti-spool-copy-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&copies).expect("copy dir");
    for segment in segments(&spool_dir) {
        std::fs::copy(&segment, copies.join(segment.file_name().expect("name"))).expect("copy");
    }
    let second_run = CancellationToken::new();
    let (port_b, serving_b) = e2e::serve_ingest(settings.clone(), &second_run).await;
    let (status, ready) = readyz(&http, port_b).await;
    assert_eq!((status, ready["status"].as_str()), (200, Some("degraded")));
    assert_eq!(ready["spool"]["events"], 20, "found on disk at start");
    // B verifies the app's webhooks with the secrets A kept sealed beside the spool, and the
    // unscoped route's with its own secret. An app no ingest verified before the outage cannot
    // be verified yet: 503, and Dialpad retries.
    let response = post(
        &http,
        port_b,
        &route,
        sign(&calling_event(1), &app.webhook_secret),
        "spooled-20",
    )
    .await;
    assert_eq!(response.status(), 202);
    let unscoped = calling_event(7_400_000_000_000_000);
    let response = post(
        &http,
        port_b,
        "",
        sign(&unscoped, e2e::UNSCOPED_SECRET),
        "spooled-21",
    )
    .await;
    assert_eq!(response.status(), 202);
    spooled_ids.extend(["spooled-20".to_owned(), "spooled-21".to_owned()]);
    let unseen_route = format!("/{}", unseen.app_id);
    let token = sign(&calling_event(3), &unseen.webhook_secret);
    let response = post(&http, port_b, &unseen_route, token, "unverifiable").await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let snapshot = std::fs::read_to_string(spool_dir.join("verification-secrets.json"))
        .expect("the secrets snapshot");
    assert!(!snapshot.contains(&app.webhook_secret), "sealed on disk");

    // Postgres comes back: B drains everything, oldest first, then stores directly again.
    let restart_at = chrono::Utc::now();
    set_running(&server, true).await;
    let drained = wait_until_drained(&http, port_b).await;
    assert_eq!(drained["spool"]["events"], 0);
    let after = post(
        &http,
        port_b,
        &route,
        sign(&calling_event(2), &app.webhook_secret),
        "direct-1",
    )
    .await;
    assert_eq!(after.status(), 200);

    let stored = stored_events(&url).await;
    let request_ids: Vec<&str> = stored
        .iter()
        .filter_map(|e| e.request_id.as_deref())
        .collect();
    let mut expected = vec!["direct-0"];
    expected.extend(spooled_ids.iter().map(String::as_str));
    expected.push("direct-1");
    assert_eq!(request_ids, expected, "each once, in the order accepted");
    for event in stored.iter().filter(|e| {
        e.request_id
            .as_deref()
            .is_some_and(|r| r.starts_with("spooled-"))
    }) {
        assert!(
            event.received_at < restart_at,
            "received_at is the arrival, not the drain"
        );
    }
    assert_eq!(
        stored.iter().filter(|e| e.status == "unroutable").count(),
        1,
        "the unscoped event has no tenant"
    );

    // A crash after a segment's commit but before its deletion: the segment is drained again
    // by the next process, and every event is found to be stored already.
    second_run.cancel();
    serving_b.await.expect("joined").expect("B stopped");
    for copy in segments(&copies) {
        std::fs::copy(&copy, spool_dir.join(copy.file_name().expect("name"))).expect("restore");
    }
    let third_run = CancellationToken::new();
    let (port_c, _) = e2e::serve_ingest(settings, &third_run).await;
    wait_until_drained(&http, port_c).await;
    assert!(segments(&spool_dir).is_empty());
    let again = stored_events(&url).await;
    assert_eq!(again.len(), stored.len(), "no event stored twice");

    // The worker applies them: the outbound call and the 19 other calls of the tenant.
    let worker = worker::Worker::build(worker::Settings::new(&url))
        .await
        .expect("worker builds");
    let report = worker.drain().await.expect("drains");
    assert_eq!(
        report.claimed,
        stored.len() - 1,
        "all but the unroutable one"
    );
    // The api's pooled connections died with the server: each is found broken on its next
    // use (a 503), then replaced.
    let mut calls = Value::Null;
    for _ in 0..20 {
        let response = http
            .get(format!("{api_url}/api/calls?limit=100"))
            .header("x-app-api-key", &app.api_key)
            .send()
            .await
            .expect("api answers");
        let status = response.status();
        calls = response.json().await.expect("JSON");
        if status == 200 {
            break;
        }
    }
    assert_eq!(calls["total"], 21, "{calls}");

    third_run.cancel();
    services.cancel();
    drop(std::fs::remove_dir_all(&spool_dir));
    drop(std::fs::remove_dir_all(&copies));
}

#[tokio::test]
async fn a_full_spool_answers_503_with_retry_after_and_keeps_what_it_accepted() {
    let (server, url) = migrated_private_postgres().await;
    let spool_dir = std::env::temp_dir().join(format!("cti-spool-{}", uuid::Uuid::new_v4()));
    let mut settings = e2e::ingest_settings(&url);
    settings.ingest_spool_dir = Some(spool_dir.to_string_lossy().into_owned());
    settings.ingest_db_retry_budget_ms = 300;
    settings.database.database_connect_timeout_ms = 200;
    // About three events' worth (one is ~2.5 KB as spooled).
    settings.ingest_spool_max_bytes = 8 * 1024;
    set_running(&server, false).await;

    // Start-up while the database is down, on the unscoped route.
    let run = CancellationToken::new();
    let (port, _) = e2e::serve_ingest(settings, &run).await;
    let http = reqwest::Client::new();
    let mut accepted = 0;
    let mut refused = None;
    for i in 0..10 {
        let token = sign(
            &calling_event(7_500_000_000_000_000 + i),
            e2e::UNSCOPED_SECRET,
        );
        let response = post(&http, port, "", token, &format!("full-{i}")).await;
        match response.status().as_u16() {
            202 => accepted += 1,
            503 => {
                refused = Some(response);
                break;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    let refused = refused.expect("the spool filled up");
    assert!(
        accepted >= 2,
        "{accepted} accepted before the spool was full"
    );
    assert_eq!(refused.headers()["retry-after"], "30");
    let body: Value = refused.json().await.expect("JSON");
    assert_eq!(body["error"], "spool_full");
    let (status, ready) = readyz(&http, port).await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["spool"]["events"], accepted);

    // Postgres back: what was accepted is stored, and the spool takes events again.
    set_running(&server, true).await;
    wait_until_drained(&http, port).await;
    let stored = stored_events(&url).await;
    assert_eq!(stored.len(), accepted);
    run.cancel();
    drop(std::fs::remove_dir_all(&spool_dir));
}
