//! What ingest refuses (bad signatures, bodies, algorithms, floods of forgeries), never storing it.

use super::*;

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
    // Its refusals stay throttled. The budget refills one refusal every 1.2 s, so on a slow
    // run a refilled refusal or two (404) may come before the 429.
    let mut throttled = None;
    for _ in 0..5 {
        let response = post(unknown.clone(), valid(&event), "203.0.113.66").await;
        if response.status() == 429 {
            throttled = Some(response);
            break;
        }
        assert_eq!(response.status(), 404);
    }
    let throttled = throttled.expect("a refusal past the budget is throttled");
    assert!(throttled.headers().contains_key("retry-after"));
    assert_eq!(
        error_code(throttled).await,
        (429, "rate_limited".to_owned())
    );
    assert_eq!(stack.event_total().await, 2);
}
