//! The subscriptions API: validation, the per-app limit, tenant isolation; secrets resealed.

use super::*;

#[tokio::test]
async fn subscriptions_are_validated_limited_and_private_to_their_app() {
    let stack = TestStack::spawn_with(|settings| settings.push_max_subscriptions_per_app = 2).await;
    let app = stack.create_app("Acme").await;
    let other = stack.create_app("Other").await;
    let receiver = MockServer::start().await;
    let hook = format!("{}/hook", receiver.uri());
    for (body, field) in [
        (
            json!({ "webhook_url": "ftp://example.test/x", "events": ["*"] }),
            "webhook_url",
        ),
        (
            json!({ "webhook_url": "not a url", "events": ["*"] }),
            "webhook_url",
        ),
        (
            json!({ "webhook_url": "https://u:p@example.test/", "events": ["*"] }),
            "webhook_url",
        ),
        (json!({ "webhook_url": hook, "events": [] }), "events"),
        (
            json!({ "webhook_url": hook, "events": ["call.exploded"] }),
            "events",
        ),
    ] {
        let (status, error) = stack
            .tenant(
                &app.api_key,
                Method::POST,
                "/api/webhooks/subscriptions",
                Some(body),
            )
            .await;
        assert_eq!(
            (status, error["error"].as_str()),
            (400, Some("invalid_request")),
            "{error}"
        );
        assert!(
            error["message"].as_str().is_some_and(|m| m.contains(field)),
            "{error}"
        );
    }
    let (status, _) = stack
        .tenant(
            &app.api_key,
            Method::POST,
            "/api/webhooks/subscriptions",
            Some(json!({ "webhook_url": hook, "events": ["*"], "extra": 1 })),
        )
        .await;
    assert_eq!(status, 400);

    let first = subscribe(&stack, &app, &receiver, json!(["call.ended", "call.ended"])).await;
    assert_eq!(first["events"], json!(["call.ended"]), "duplicates dropped");
    subscribe(&stack, &app, &receiver, json!(["*"])).await;
    let (status, error) = stack
        .tenant(
            &app.api_key,
            Method::POST,
            "/api/webhooks/subscriptions",
            Some(json!({ "webhook_url": hook, "events": ["*"] })),
        )
        .await;
    assert_eq!((status, error["error"].as_str()), (409, Some("conflict")));

    let id = first["id"].as_str().expect("id");
    let one = format!("/api/webhooks/subscriptions/{id}");
    for (method, body) in [
        (Method::GET, None),
        (Method::PATCH, Some(json!({ "active": false }))),
        (Method::DELETE, None),
    ] {
        let (status, _) = stack.tenant(&other.api_key, method, &one, body).await;
        assert_eq!(status, 404, "another app's subscription");
    }
    let (_, listed) = stack
        .tenant(
            &other.api_key,
            Method::GET,
            "/api/webhooks/subscriptions",
            None,
        )
        .await;
    assert_eq!(listed["subscriptions"], json!([]));
    let (_, listed) = stack
        .tenant(
            &app.api_key,
            Method::GET,
            "/api/webhooks/subscriptions",
            None,
        )
        .await;
    assert_eq!(listed["subscriptions"].as_array().map(Vec::len), Some(2));
    assert!(!listed.to_string().contains("whsec_"), "no secret in lists");

    let (status, _) = stack.tenant(&app.api_key, Method::DELETE, &one, None).await;
    assert_eq!(status, 204);
    let (status, _) = stack.tenant(&app.api_key, Method::GET, &one, None).await;
    assert_eq!(status, 404);
    let (status, _) = stack
        .tenant(
            &app.api_key,
            Method::GET,
            "/api/webhooks/subscriptions/not-a-uuid",
            None,
        )
        .await;
    assert_eq!(status, 404);
}

/// `reseal` rewrites subscription secrets too: after it, a worker holding only the new key
/// still signs deliveries with the subscription's secret.
#[tokio::test]
async fn resealed_subscription_secrets_still_sign_with_the_new_key_alone() {
    const NEW_KEY: &str = "bmV3LWVuY3J5cHRpb24ta2V5LTMyLWJ5dGVzLTAwMDA=";
    let stack = TestStack::spawn().await;
    let app = stack.create_app("Acme").await;
    let receiver = receiver_answering(ResponseTemplate::new(200)).await;
    let created = subscribe(&stack, &app, &receiver, json!(["call.started"])).await;
    let secret = created["secret_key"].as_str().expect("secret");
    // Announced (in the outbox) before the reseal, sent after it.
    stack.post_fixtures(&app, &OUTBOUND[..1]).await;
    stack.run_worker().await;

    let database = bootstrap::settings::DatabaseSettings::for_url(stack.db.url());
    let mut encryption = bootstrap::settings::EncryptionSettings::with_key(NEW_KEY);
    encryption.encryption_previous_keys = Some(e2e::ENCRYPTION_KEY.into());
    let resealed = bootstrap::cli::reseal(&database, &encryption)
        .await
        .expect("reseals");
    // The app's inbound secret and the subscription's.
    assert_eq!((resealed.resealed, resealed.unreadable), (2, 0));

    let mut settings = TestStack::worker_settings(&stack.db);
    settings.encryption = bootstrap::settings::EncryptionSettings::with_key(NEW_KEY);
    let worker = worker::Worker::build(settings)
        .await
        .expect("worker builds");
    let stop = tokio_util::sync::CancellationToken::new();
    let deliveries = tokio::spawn({
        let stop = stop.clone();
        async move { worker.run_deliveries(stop).await }
    });
    let requests = received(&receiver, 1).await;
    assert_eq!(requests.len(), 1);
    assert_signed(&requests[0], secret);
    stop.cancel();
    deliveries.await.expect("joins").expect("push loop stops");
}

#[tokio::test]
async fn a_rotated_out_secret_keeps_signing_beside_the_new_one() {
    let stack = TestStack::spawn().await;
    let app = stack.create_app("Acme").await;
    let other = stack.create_app("Other").await;
    let receiver = receiver_answering(ResponseTemplate::new(200)).await;
    let created = subscribe(&stack, &app, &receiver, json!(["call.started"])).await;
    let old = created["secret_key"].as_str().expect("secret").to_owned();
    let rotate = format!(
        "/api/webhooks/subscriptions/{}/rotate-secret",
        created["id"].as_str().expect("id")
    );
    let (status, _) = stack
        .tenant(&other.api_key, Method::POST, &rotate, None)
        .await;
    assert_eq!(status, 404, "another app's subscription");
    let (status, rotated) = stack
        .tenant(&app.api_key, Method::POST, &rotate, None)
        .await;
    assert_eq!(status, 200, "{rotated}");
    let new = rotated["secret_key"].as_str().expect("new secret");
    assert!(new.starts_with("whsec_") && new != old);
    let expires: chrono::DateTime<chrono::Utc> = rotated["previous_secret_expires_at"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("an expiry");
    let hours = (expires - chrono::Utc::now()).num_minutes() as f64 / 60.0;
    assert!((23.9..=24.0).contains(&hours), "{hours} h");

    stack.start_deliveries();
    stack.post_fixtures(&app, &OUTBOUND[..1]).await;
    stack.run_worker().await;
    let requests = received(&receiver, 1).await;
    assert_eq!(requests.len(), 1);
    assert_signed(&requests[0], new);
    assert!(
        standard_verifies(&requests[0], &old),
        "the former secret still verifies"
    );
    let signatures = requests[0].headers["webhook-signature"]
        .to_str()
        .expect("ascii");
    assert_eq!(signatures.split(' ').count(), 2, "{signatures}");
}

/// Retention prunes announcements as old as the events it prunes, once none of their
/// deliveries is pending; a pending one is kept.
#[tokio::test]
async fn retention_prunes_old_announcements_that_are_no_longer_pending() {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    async fn announced(stack: &TestStack) -> i64 {
        let mut conn = stack.db.connect().await;
        diesel::sql_query("SELECT count(*) AS n FROM push_events")
            .get_result::<Count>(&mut conn)
            .await
            .expect("counts")
            .n
    }
    let stack = TestStack::spawn().await;
    let app = stack.create_app("Acme").await;
    let receiver = receiver_answering(ResponseTemplate::new(200)).await;
    subscribe(&stack, &app, &receiver, json!(["call.started"])).await;
    stack.post_fixtures(&app, &OUTBOUND[..1]).await;
    stack.run_worker().await;
    stack
        .run_sql("UPDATE push_events SET created_at = now() - interval '400 days'")
        .await;
    // No delivery loop yet: call.started is pending, kept; the two events nobody takes go.
    stack.worker.prune_expired().await.expect("retention runs");
    assert_eq!(announced(&stack).await, 1);

    stack.start_deliveries();
    assert_eq!(received(&receiver, 1).await.len(), 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while announced(&stack).await > 0 && Instant::now() < deadline {
        stack.worker.prune_expired().await.expect("retention runs");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(announced(&stack).await, 0, "delivered, then pruned");
}
