//! `POST /api/webhooks/test`: a sample event sent now, signed as a delivery is, with what the
//! receiver did in the answer.

use super::*;

async fn send_test(stack: &TestStack, app: &TestApp, body: Value) -> (u16, Value) {
    stack
        .tenant(&app.api_key, Method::POST, "/api/webhooks/test", Some(body))
        .await
}

#[tokio::test]
async fn a_test_send_reaches_the_receiver_signed_and_reports_its_answer() {
    let stack = TestStack::spawn().await;
    let app = stack.create_app("Acme").await;
    let receiver = receiver_answering(ResponseTemplate::new(204)).await;
    let created = subscribe(&stack, &app, &receiver, json!(["call.completed"])).await;
    let secret = created["secret_key"].as_str().expect("secret");

    // To a subscription: its URL, its secret.
    let (status, result) = send_test(
        &stack,
        &app,
        json!({"subscription_id": created["id"], "event_type": "call.missed"}),
    )
    .await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["success"], true);
    assert_eq!(result["status_code"], 204);
    assert!(result["latency_ms"].is_u64());
    assert!(
        result.get("secret_key").is_none(),
        "the subscription's secret is not shown"
    );
    let requests = received(&receiver, 1).await;
    let request = &requests[0];
    assert_signed(request, secret);
    let body = body_of(request);
    assert_eq!(
        header(request, "webhook-id"),
        result["webhook_id"].as_str().expect("id")
    );
    assert_eq!(body["id"], result["webhook_id"]);
    assert_eq!(body["event"], "call.missed");
    assert_eq!(body["status"], "missed");
    assert_eq!(body["data"]["call_id"], body["callId"]);

    // To any URL: a one-off secret, shown in the answer.
    let (status, result) = send_test(
        &stack,
        &app,
        json!({"webhook_url": format!("{}/other", receiver.uri()), "event_type": "sms.received"}),
    )
    .await;
    assert_eq!(status, 200, "{result}");
    let one_off = result["secret_key"].as_str().expect("a one-off secret");
    assert_ne!(one_off, secret);
    let requests = received(&receiver, 2).await;
    assert_signed(&requests[1], one_off);
    assert_eq!(body_of(&requests[1])["data"]["direction"], "inbound");

    // A test send changes no subscription's health and logs no attempt.
    let shown = get_when(
        &stack,
        &app,
        &format!(
            "/api/webhooks/subscriptions/{}/deliveries",
            created["id"].as_str().expect("id")
        ),
        |_| true,
    )
    .await;
    assert_eq!(shown["attempts"], json!([]), "{shown}");
}

#[tokio::test]
async fn a_failing_receiver_is_reported_and_bad_test_requests_are_refused() {
    let stack = TestStack::spawn().await;
    let app = stack.create_app("Acme").await;
    let other = stack.create_app("Other").await;
    let receiver = receiver_answering(ResponseTemplate::new(500)).await;
    let created = subscribe(&stack, &app, &receiver, json!(["*"])).await;

    let (status, result) = send_test(
        &stack,
        &app,
        json!({"subscription_id": created["id"], "event_type": "call.started"}),
    )
    .await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["success"], false);
    assert_eq!(result["status_code"], 500);
    assert!(result["error"].as_str().expect("why").contains("500"));

    // Nothing listens there: no answer at all.
    let (status, result) = send_test(
        &stack,
        &app,
        json!({"webhook_url": "http://127.0.0.1:9/hook", "event_type": "call.started"}),
    )
    .await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["success"], false);
    assert!(result["status_code"].is_null());

    // Another app's subscription is not found; bad requests are refused.
    let (status, _) = send_test(
        &stack,
        &other,
        json!({"subscription_id": created["id"], "event_type": "call.started"}),
    )
    .await;
    assert_eq!(status, 404);
    for body in [
        json!({"event_type": "call.started"}),
        json!({"subscription_id": created["id"], "webhook_url": receiver.uri(), "event_type": "call.started"}),
        json!({"subscription_id": created["id"], "event_type": "call.exploded"}),
        json!({"webhook_url": "ftp://example.com/", "event_type": "call.started"}),
    ] {
        let (status, error) = send_test(&stack, &app, body.clone()).await;
        assert_eq!(status, 400, "{body} -> {error}");
        assert_eq!(error["error"], "invalid_request", "{error}");
    }
}
