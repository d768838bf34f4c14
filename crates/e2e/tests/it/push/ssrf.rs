//! The SSRF guard: at subscribe time in the api, and at every send in the worker.

use super::*;

#[tokio::test]
async fn webhook_urls_that_reach_non_public_addresses_are_refused() {
    let stack = TestStack::spawn_with(|settings| settings.allow_private_webhook_urls = false).await;
    let app = stack.create_app("Acme").await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://10.0.0.1/",
        "http://172.16.0.1/",
        "http://192.168.0.1/",
        "http://169.254.169.254/latest/meta-data",
        "http://100.64.0.1/",
        "http://0.0.0.0/",
        "http://224.0.0.1/",
        "http://[::1]/",
        "http://[fc00::1]/",
        "http://[fd00:ec2::254]/",
        "http://[fe80::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://localhost:8080/hook",
    ] {
        let (status, error) = stack
            .tenant(
                &app.api_key,
                Method::POST,
                "/api/webhooks/subscriptions",
                Some(json!({ "webhook_url": url, "events": ["*"] })),
            )
            .await;
        assert_eq!(
            (status, error["error"].as_str()),
            (400, Some("invalid_request")),
            "{url}: {error}"
        );
        assert!(
            error["message"]
                .as_str()
                .is_some_and(|m| m.contains("webhook_url")),
            "{error}"
        );
    }

    let production = TestStack::spawn_with(|settings| {
        settings.allow_private_webhook_urls = false;
        settings.dialpad.dialpad_env = "production".into();
    })
    .await;
    let app = production.create_app("Acme").await;
    let (status, error) = production
        .tenant(
            &app.api_key,
            Method::POST,
            "/api/webhooks/subscriptions",
            Some(json!({ "webhook_url": "http://example.test/hook", "events": ["*"] })),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("https")),
        "{error}"
    );
}

/// The worker checks again at every send: a subscription whose host name resolves to a
/// loopback address (as DNS rebinding would make it) gets no request, and the attempt fails.
#[tokio::test]
async fn the_worker_refuses_to_send_to_a_host_that_resolves_to_a_private_address() {
    let stack = TestStack::spawn().await;
    let app = stack.create_app("Acme").await;
    let receiver = receiver_answering(ResponseTemplate::new(200)).await;
    let port = receiver.address().port();
    let (status, created) = stack
        .tenant(
            &app.api_key,
            Method::POST,
            "/api/webhooks/subscriptions",
            Some(json!({ "webhook_url": format!("http://localhost:{port}/hook"), "events": ["call.started"] })),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let mut settings = TestStack::worker_settings(&stack.db);
    settings.push.allow_private_webhook_urls = false;
    let guarded = worker::Worker::build(settings)
        .await
        .expect("worker builds");
    let stop = tokio_util::sync::CancellationToken::new();
    let deliveries = tokio::spawn({
        let stop = stop.clone();
        async move { guarded.run_deliveries(stop).await }
    });

    stack.post_fixtures(&app, &OUTBOUND[..1]).await;
    stack.run_worker().await;
    let path = format!(
        "/api/webhooks/subscriptions/{}",
        created["id"].as_str().expect("id")
    );
    let subscription = get_when(&stack, &app, &path, |s| s["last_failure_at"].is_string()).await;
    assert!(
        subscription["last_failure_at"].is_string(),
        "{subscription}"
    );
    assert_eq!(
        received(&receiver, 0).await.len(),
        0,
        "nothing reached the receiver"
    );
    stop.cancel();
    deliveries.await.expect("joins").expect("push loop stops");
}
