//! Ingest: what is accepted, what is refused, and that refused input is never stored.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use e2e::{TestStack, UNSCOPED_SECRET, fixture, fixture_bytes, sign};
use serde_json::{Value, json};

async fn error_code(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("JSON error body");
    assert!(
        body["message"].is_string(),
        "error bodies carry a message: {body}"
    );
    (
        status,
        body["error"].as_str().expect("error code").to_owned(),
    )
}

/// A client writes the `alg` ingest echoes in its answer and its log: a long one is cut.
#[tokio::test]
async fn a_long_alg_is_echoed_truncated() {
    let stack = TestStack::spawn().await;
    let app = stack.create_app("alg").await;
    let header =
        URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{}","typ":"JWT"}}"#, "A".repeat(10_000)));
    let payload = URL_SAFE_NO_PAD.encode(r#"{"call_id":1,"state":"ringing"}"#);
    let response = stack
        .post_raw(
            Some(&app.app_id.to_string()),
            format!("{header}.{payload}.c2ln"),
        )
        .await;
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["error"], "unsupported_algorithm");
    let message = body["message"].as_str().expect("message");
    assert!(
        message.contains(&format!("{}…", "A".repeat(16))) && message.len() < 200,
        "{message}"
    );
}

#[tokio::test]
async fn bad_input_is_refused_and_never_stored() {
    let stack = TestStack::spawn().await;
    let app = stack.create_app("target").await;
    let app_id = app.app_id.to_string();
    let event = fixture("call_outbound_01_calling.json");
    let valid = sign(&event, &app.webhook_secret);
    let rs256 = {
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT"}"#);
        let (_, rest) = valid.split_once('.').expect("three segments");
        format!("{header}.{rest}")
    };
    let hs512 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512),
        &event,
        &jsonwebtoken::EncodingKey::from_secret(app.webhook_secret.as_bytes()),
    )
    .expect("signs");
    let alg_none = {
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&event).expect("JSON"));
        format!("{header}.{payload}.")
    };
    // (case, app route or unscoped, body, expected status, expected error code)
    type Case = (&'static str, Option<String>, Vec<u8>, u16, &'static str);
    let cases: Vec<Case> = vec![
        (
            "alg none",
            Some(app_id.clone()),
            alg_none.into_bytes(),
            401,
            "unsupported_algorithm",
        ),
        (
            "HS512",
            Some(app_id.clone()),
            hs512.into_bytes(),
            401,
            "unsupported_algorithm",
        ),
        (
            "RS256 header",
            Some(app_id.clone()),
            rs256.into_bytes(),
            401,
            "unsupported_algorithm",
        ),
        (
            "wrong secret",
            Some(app_id.clone()),
            sign(&event, "not-the-secret").into_bytes(),
            401,
            "invalid_signature",
        ),
        (
            "another app's secret",
            Some(app_id.clone()),
            sign(&event, UNSCOPED_SECRET).into_bytes(),
            401,
            "invalid_signature",
        ),
        (
            "truncated",
            Some(app_id.clone()),
            valid.as_bytes()[..valid.len() - 10].to_vec(),
            400,
            "malformed_token",
        ),
        (
            "two segments",
            Some(app_id.clone()),
            valid.rsplit_once('.').expect("dot").0.as_bytes().to_vec(),
            400,
            "malformed_token",
        ),
        (
            "garbage",
            Some(app_id.clone()),
            b"hello, world".to_vec(),
            400,
            "malformed_token",
        ),
        (
            "empty",
            Some(app_id.clone()),
            Vec::new(),
            400,
            "malformed_token",
        ),
        (
            "JSON array payload",
            Some(app_id.clone()),
            sign(&json!([1, 2, 3]), &app.webhook_secret).into_bytes(),
            400,
            "invalid_payload",
        ),
        (
            "oversized",
            Some(app_id.clone()),
            vec![b'a'; 1024 * 1024 + 1],
            413,
            "payload_too_large",
        ),
        (
            "unknown app",
            Some(uuid::Uuid::new_v4().to_string()),
            valid.clone().into_bytes(),
            404,
            "unknown_app",
        ),
        (
            "app id not a uuid",
            Some("not-a-uuid".into()),
            valid.clone().into_bytes(),
            404,
            "unknown_app",
        ),
        (
            "fixture alg none, unscoped",
            None,
            fixture_bytes("jwt/call_outbound_01_calling.alg_none.jwt"),
            401,
            "unsupported_algorithm",
        ),
        (
            "fixture HS512, unscoped",
            None,
            fixture_bytes("jwt/call_outbound_01_calling.hs512.jwt"),
            401,
            "unsupported_algorithm",
        ),
        (
            "fixture wrong secret, unscoped",
            None,
            fixture_bytes("jwt/call_outbound_01_calling.wrong_secret.jwt"),
            401,
            "invalid_signature",
        ),
    ];
    for (name, app, body, status, code) in cases {
        let response = stack.post_raw(app.as_deref(), body).await;
        assert_eq!(
            error_code(response).await,
            (status, code.to_owned()),
            "{name}"
        );
    }
    assert_eq!(stack.event_total().await, 0, "nothing refused was stored");

    // The valid token is accepted, whatever the Content-Type.
    for content_type in ["application/jwt", "application/json", "text/plain"] {
        let response = stack
            .http
            .post(format!("{}/webhooks/dialpad/{app_id}", stack.ingest_url))
            .header("content-type", content_type)
            .body(valid.clone())
            .send()
            .await
            .expect("ingest answers");
        assert_eq!(response.status(), 200, "{content_type}");
    }
    assert_eq!(stack.event_total().await, 1);
}

#[tokio::test]
async fn duplicate_delivery_is_stored_once_and_answered_200() {
    let stack = TestStack::spawn().await;
    let app = stack.create_app("dupes").await;
    let event = fixture("call_outbound_03_hangup.json");
    let first: Value = stack
        .post_event(&app, &event)
        .await
        .json()
        .await
        .expect("JSON");
    let second = stack.post_event(&app, &event).await;
    assert_eq!(second.status(), 200);
    let second: Value = second.json().await.expect("JSON");
    assert_eq!(first["duplicate"], false);
    assert_eq!(second["duplicate"], true);
    assert_eq!(first["id"], second["id"]);
    assert_eq!(stack.event_total().await, 1);

    // SMS status updates reuse the message id: they are distinct events, both stored.
    stack
        .post_fixtures(
            &app,
            &[
                "sms_outbound_01_pending.json",
                "sms_outbound_02_status_success.json",
            ],
        )
        .await;
    assert_eq!(stack.event_total().await, 3);
}

#[tokio::test]
async fn unscoped_route_stores_events_as_unroutable() {
    let stack = TestStack::spawn().await;
    for jwt in [
        "call_outbound_01_calling.valid.jwt",
        "call_edge_02_ids_above_2pow53.valid.jwt",
    ] {
        let response = stack
            .post_raw(None, fixture_bytes(&format!("jwt/{jwt}")))
            .await;
        assert_eq!(response.status(), 200, "{jwt}");
    }
    // A redelivery on the unscoped route (no app) is recognised too.
    let again = stack
        .post_raw(
            None,
            fixture_bytes("jwt/call_outbound_01_calling.valid.jwt"),
        )
        .await;
    let again: Value = again.json().await.expect("JSON");
    assert_eq!(again["duplicate"], true);

    let report = stack.run_worker().await;
    assert_eq!(report.claimed, 0, "unroutable events are not claimed");
    assert_eq!(
        stack.events_by_status().await,
        vec![("unroutable".to_owned(), 2)]
    );
}

#[tokio::test]
async fn unscoped_route_events_belong_to_unscoped_webhook_app_id_when_it_is_set() {
    let stack = TestStack::spawn().await;
    let app = stack.create_app("single tenant").await;
    let mut settings = e2e::ingest_settings(stack.db.url());
    settings.unscoped_webhook_app_id = Some(app.app_id);
    let ingest = ingest::build(settings).await.expect("ingest starts");
    let url = format!("http://127.0.0.1:{}/webhooks/dialpad", ingest.port());
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(ingest.run_until_stopped(stop.clone().cancelled_owned()));

    // Still verified with DIALPAD_WEBHOOK_SECRET: the app's own secret does not open it.
    let event = fixture("call_outbound_03_hangup.json");
    let forged = stack
        .http
        .post(&url)
        .body(sign(&event, &app.webhook_secret))
        .send();
    assert_eq!(forged.await.expect("ingest answers").status(), 401);
    let signed = stack
        .http
        .post(&url)
        .body(sign(&event, UNSCOPED_SECRET))
        .send();
    assert_eq!(signed.await.expect("ingest answers").status(), 200);

    stack.run_worker().await;
    assert_eq!(stack.events_by_status().await, vec![("done".to_owned(), 1)]);
    let (_, calls) = stack.get_calls(&app.api_key, "").await;
    assert_eq!(calls["calls"][0]["call_id"], event["call_id"].to_string());
    stop.cancel();

    // An id that names no app stops ingest at start-up, with the variable's name.
    let mut settings = e2e::ingest_settings(stack.db.url());
    settings.unscoped_webhook_app_id = Some(uuid::Uuid::new_v4());
    let Err(error) = ingest::build(settings).await else {
        panic!("ingest started with an unknown UNSCOPED_WEBHOOK_APP_ID");
    };
    assert!(
        format!("{error:#}").contains("UNSCOPED_WEBHOOK_APP_ID"),
        "{error:#}"
    );
}

#[tokio::test]
async fn an_event_time_postgres_cannot_hold_is_stored_as_null_not_refused() {
    let stack = TestStack::spawn().await;
    let app = stack.create_app("time travel").await;
    let mut conn = stack.db.connect().await;
    for (n, at) in [
        (1, json!(-300_000_000_000_000_i64)),
        (2, json!(i64::MAX)),
        (3, json!(1e308)),
    ] {
        let mut event = fixture("call_outbound_01_calling.json");
        event["call_id"] = json!(event["call_id"].as_i64().expect("call_id") + n * 8192);
        event["event_timestamp"] = at.clone();
        let response = stack.post_event(&app, &event).await;
        assert_eq!(response.status(), 200, "event_timestamp {at}");
        let body: Value = response.json().await.expect("JSON");
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        let stored: (Option<chrono::DateTime<chrono::Utc>>, Value) =
            db::schema::webhook_events::table
                .find(body["id"].as_i64().expect("id"))
                .select((
                    db::schema::webhook_events::event_timestamp,
                    db::schema::webhook_events::payload,
                ))
                .first(&mut conn)
                .await
                .expect("stored");
        assert_eq!(stored.0, None, "derived column null for {at}");
        assert_eq!(
            stored.1["event_timestamp"], at,
            "the payload keeps the value"
        );
    }
}

#[tokio::test]
async fn health_and_readiness() {
    let stack = TestStack::spawn().await;
    for url in [&stack.ingest_url, &stack.api_url] {
        for path in ["/healthz", "/readyz"] {
            let response = stack
                .http
                .get(format!("{url}{path}"))
                .send()
                .await
                .expect("answers");
            assert_eq!(response.status(), 200, "{url}{path}");
        }
    }
}

#[tokio::test]
async fn a_database_outage_is_retried_within_the_request_then_answered_503() {
    let stack = TestStack::spawn().await;
    let app = stack.create_app("outage").await;
    let proxy = e2e::CuttableProxy::in_front_of(stack.db.url()).await;
    let mut settings = e2e::ingest_settings(&proxy.url_for(stack.db.url()));
    settings.ingest_db_retry_budget_ms = 2_000;
    settings.database.database_connect_timeout_ms = 200;
    let port = stack.spawn_ingest(settings).await;
    let url = format!("http://127.0.0.1:{port}/webhooks/dialpad/{}", app.app_id);
    let post = |event: Value| {
        let request = stack
            .http
            .post(&url)
            .body(sign(&event, &app.webhook_secret));
        async move { request.send().await.expect("ingest answers") }
    };
    assert_eq!(
        post(fixture("call_outbound_01_calling.json"))
            .await
            .status(),
        200
    );

    // A short outage: the request keeps retrying and succeeds once the database is back.
    proxy.cut();
    let restore = {
        let proxy = proxy.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(600)).await;
            proxy.restore();
        })
    };
    let during = post(fixture("call_outbound_02_connected.json")).await;
    assert_eq!(
        during.status(),
        200,
        "answered only once committed, after the outage"
    );
    restore.await.expect("restored");

    // An outage longer than the budget: 503 with Retry-After (Dialpad retries 5xx, never 4xx).
    proxy.cut();
    let response = post(fixture("call_outbound_03_hangup.json")).await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(error_code(response).await, (503, "unavailable".to_owned()));
    proxy.restore();

    // Dialpad's retry of the refused event then lands; nothing was lost or doubled.
    assert_eq!(
        post(fixture("call_outbound_03_hangup.json")).await.status(),
        200
    );
    assert_eq!(stack.event_total().await, 3);
}

#[tokio::test]
async fn concurrent_deliveries_are_each_answered_after_commit_and_duplicates_share_one_row() {
    let stack = TestStack::spawn().await;
    let app = stack.create_app("burst").await;
    let mut requests = Vec::new();
    for n in 0..60_i64 {
        let mut event = fixture("call_outbound_02_connected.json");
        event["call_id"] = json!(7_189_235_590_594_560_i64 + n * 8192);
        requests.push(event);
    }
    // Dialpad retrying one event while others arrive: ten copies in the same burst.
    let repeated = fixture("call_outbound_03_hangup.json");
    requests.extend(std::iter::repeat_n(repeated, 10));

    let answers = futures_util::future::join_all(requests.iter().map(|event| async {
        let response = stack.post_event(&app, event).await;
        assert_eq!(response.status(), 200);
        response.json::<Value>().await.expect("JSON")
    }))
    .await;

    assert_eq!(stack.event_total().await, 61);
    let copies = &answers[60..];
    assert!(
        copies.iter().all(|a| a["id"] == copies[0]["id"]),
        "one row for the copies"
    );
    let first_deliveries = copies.iter().filter(|a| a["duplicate"] == false).count();
    assert_eq!(first_deliveries, 1, "exactly one copy is reported as new");
    let mut ids: Vec<i64> = answers[..60]
        .iter()
        .map(|a| a["id"].as_i64().expect("id"))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 60, "distinct events get distinct rows");
}

#[tokio::test]
async fn an_event_with_a_nul_character_is_stored_not_lost() {
    let stack = TestStack::spawn().await;
    let app = stack.create_app("nul").await;
    let mut event = fixture("call_edge_03_unicode_names.json");
    event["contact"]["name"] = json!("Zoë\u{0}Øster");
    let response = stack.post_event(&app, &event).await;
    assert_eq!(
        response.status(),
        200,
        "Postgres jsonb cannot hold U+0000; ingest must still store the event"
    );
    // The redelivery is still recognised as the same event.
    let again: Value = stack
        .post_event(&app, &event)
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(again["duplicate"], true);
    stack.run_worker().await;
    let (_, body) = stack.get_calls(&app.api_key, "").await;
    assert_eq!(body["calls"][0]["contact"]["name"], "Zoë\u{FFFD}Øster");
}

/// Ingest under a flood of forged webhooks: forged signatures for a real app cost no database
/// query per request (the proxy in front of Postgres counts what ingest sends), a repeated
/// unknown app id is looked up once, and past `INGEST_FAILED_VERIFICATIONS_PER_MIN` refusals
/// from one address answer 429 with `Retry-After`, while a correctly signed webhook from that
/// very address is still stored.
#[tokio::test]
async fn a_forged_flood_costs_no_query_per_request_and_never_throttles_a_valid_webhook() {
    let stack = TestStack::spawn().await;
    let app = stack.create_app("target").await;
    let proxy = e2e::CuttableProxy::in_front_of(stack.db.url()).await;
    let mut settings = e2e::ingest_settings(&proxy.url_for(stack.db.url()));
    settings.ingest_failed_verifications_per_min = 50;
    settings.trusted_proxy_hops = 1;
    let base = format!(
        "http://127.0.0.1:{}/webhooks/dialpad",
        stack.spawn_ingest(settings).await
    );
    let post = |app_id: String, body: String, client: &'static str| {
        let request = stack
            .http
            .post(format!("{base}/{app_id}"))
            .header("x-forwarded-for", client)
            .body(body);
        async move { request.send().await.expect("ingest answers") }
    };
    let mut event = fixture("call_outbound_01_calling.json");
    let valid = |event: &Value| sign(event, &app.webhook_secret);
    use futures_util::StreamExt;

    // One valid webhook: reads the app's secrets, stores the event.
    let before = proxy.bytes_to_server();
    assert_eq!(
        post(app.app_id.to_string(), valid(&event), "198.51.100.7")
            .await
            .status(),
        200
    );
    let one_webhook = proxy.bytes_to_server() - before;

    // 300 forged signatures for the app and 300 posts to one unknown app id, from one address,
    // 32 at a time.
    let started = std::time::Instant::now();
    let before = proxy.bytes_to_server();
    let unknown = uuid::Uuid::new_v4().to_string();
    let forged: Vec<(String, String)> = (0..300)
        .flat_map(|n| {
            let mut event = event.clone();
            event["call_id"] = json!(n);
            let body = sign(&event, "an-attacker-guessing-the-secret");
            [
                (app.app_id.to_string(), body.clone()),
                (unknown.clone(), body),
            ]
        })
        .collect();
    let statuses: Vec<u16> =
        futures_util::stream::iter(forged)
            .map(|(app_id, body)| async move {
                post(app_id, body, "203.0.113.66").await.status().as_u16()
            })
            .buffer_unordered(32)
            .collect()
            .await;
    let flood = proxy.bytes_to_server() - before;
    // The app's secrets may be read again once a second, and the unknown id looked up once.
    let reads_allowed = started.elapsed().as_secs() + 2;
    assert!(
        flood <= one_webhook * reads_allowed,
        "600 forged requests sent {flood} bytes to Postgres; one webhook sends {one_webhook}"
    );
    let count = |status: u16| statuses.iter().filter(|s| **s == status).count();
    // The budget refills one refusal every 1.2 s (50 a minute) while the flood runs.
    let refilled = (started.elapsed().as_secs_f64() / 1.2).ceil() as usize;
    let refused = count(401) + count(404);
    assert!(
        (50..=50 + refilled).contains(&refused) && refused + count(429) == 600,
        "50 refusals a minute, then 429: {statuses:?}"
    );

    // The throttled address still delivers a correctly signed webhook.
    event["call_id"] = json!(42);
    let response = post(app.app_id.to_string(), valid(&event), "203.0.113.66").await;
    assert_eq!(response.status(), 200);
    let throttled = post(unknown.clone(), valid(&event), "203.0.113.66").await;
    assert_eq!(throttled.status(), 429);
    assert!(throttled.headers().contains_key("retry-after"));
    assert_eq!(
        error_code(throttled).await,
        (429, "rate_limited".to_owned())
    );
    assert_eq!(stack.event_total().await, 2);
}
