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
    let report = stack.run_worker().await;
    assert_eq!(report.claimed, 0, "unroutable events are not claimed");
    assert_eq!(
        stack.events_by_status().await,
        vec![("unroutable".to_owned(), 2)]
    );
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
