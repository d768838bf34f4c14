//! Dialpad's failures and bad input to the onboarding endpoints.

use super::*;

#[tokio::test]
async fn dialpad_failures_become_502_without_leaking_secrets() {
    let (stack, dialpad) = stack_with_dialpad(true).await;
    let app = stack.create_app("Acme").await;
    let create = format!("/internal/webhooks/create?app_id={}", app.app_id);

    for status in [401_u16, 404, 500] {
        dialpad.reset().await;
        Mock::given(method("POST"))
            .and(path("/api/v2/webhooks"))
            .respond_with(ResponseTemplate::new(status).set_body_json(json!({
                "error": { "code": status, "message": format!("bad credential {SERVER_API_KEY}") }
            })))
            .mount(&dialpad)
            .await;
        let (answered, body) = admin_post(&stack, &create, None).await;
        assert_eq!(answered, 502, "Dialpad {status}");
        assert_eq!(body["error"], "dialpad_error");
        let message = body["message"].as_str().expect("message");
        assert!(
            message.contains(&status.to_string()) && message.contains("create the webhook"),
            "{message}"
        );
        assert!(
            message.contains("[redacted]"),
            "Dialpad's text is kept, scrubbed: {message}"
        );
        for secret in [SERVER_API_KEY, app.webhook_secret.as_str()] {
            assert!(!body.to_string().contains(secret));
        }
        let sent = &requests_to(&dialpad, "POST", "/api/v2/webhooks").await[0];
        assert_eq!(
            sent.headers["authorization"],
            format!("Bearer {SERVER_API_KEY}").as_str()
        );
    }

    dialpad.reset().await;
    Mock::given(method("POST"))
        .and(path("/api/v2/webhooks"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "id": "1", "hook_url": "https://x" }))
                // Longer than DIALPAD_TIMEOUT_MS (1 s here).
                .set_delay(Duration::from_secs(3)),
        )
        .mount(&dialpad)
        .await;
    let (answered, body) = admin_post(&stack, &create, None).await;
    assert_eq!(
        (answered, body["error"].as_str()),
        (502, Some("dialpad_unreachable"))
    );
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("did not answer in time")),
        "{body}"
    );

    assert_eq!(
        table_text(&stack, "dialpad_webhooks").await,
        "",
        "nothing is recorded when Dialpad fails"
    );
}

#[tokio::test]
async fn onboarding_endpoints_validate_their_input() {
    let (stack, _dialpad) = stack_with_dialpad(false).await;
    let app = stack.create_app("Acme").await;
    let expect = |(status, body): (u16, Value), want: (u16, &str), what: &str| {
        assert_eq!(
            (status, body["error"].as_str()),
            (want.0, Some(want.1)),
            "{what}: {body}"
        );
        body
    };
    let body = expect(
        admin_post(&stack, "/internal/webhooks/create", None).await,
        (400, "invalid_parameter"),
        "no app_id",
    );
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("app_id"))
    );
    expect(
        admin_post(&stack, "/internal/webhooks/create?app_id=nope", None).await,
        (400, "invalid_parameter"),
        "bad app_id",
    );
    expect(
        admin_post(
            &stack,
            &format!("/internal/webhooks/create?app_id={}", uuid::Uuid::new_v4()),
            None,
        )
        .await,
        (404, "not_found"),
        "unknown app",
    );
    let create = format!("/internal/webhooks/create?app_id={}", app.app_id);
    expect(
        admin_post(&stack, &create, None).await,
        (400, "dialpad_not_connected"),
        "no credential",
    );
    expect(
        admin_post(&stack, &create, Some(json!({ "webhook_url": "ftp://x" }))).await,
        (400, "invalid_request"),
        "bad URL",
    );
    expect(
        admin_post(&stack, &create, Some(json!({ "webhook_secret": "short" }))).await,
        (400, "invalid_request"),
        "short secret",
    );
    expect(
        admin_post(&stack, &create, Some(json!({ "unknown": 1 }))).await,
        (400, "invalid_json"),
        "unknown field",
    );
    let unauthorized = stack
        .http
        .post(format!("{}{create}", stack.api_url))
        .send()
        .await
        .expect("answers");
    assert_eq!(unauthorized.status(), 401);
    expect(
        admin_post(
            &stack,
            &format!("/internal/subscriptions?app_id={}", app.app_id),
            None,
        )
        .await,
        (400, "invalid_request"),
        "no webhook yet",
    );
    expect(
        admin_post(
            &stack,
            &format!("/internal/subscriptions?app_id={}", app.app_id),
            Some(json!({ "call_states": ["ringing", "unhold"] })),
        )
        .await,
        (400, "invalid_request"),
        "unknown call state",
    );
}
