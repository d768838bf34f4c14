//! Leases and claims of push deliveries, through `db::push` (what the delivery loop calls) and
//! the attempt log over HTTP: a lost lease's late completion is refused; one subscription's
//! backlog costs another's claim nothing.

use super::*;

/// A lease that ran out is taken by the next claim (a dead loop's deliveries are sent again),
/// and the loop that lost it cannot record its late completion.
#[tokio::test]
async fn a_late_completion_from_a_lost_lease_is_refused() {
    use db::push::{AttemptResult, FailurePolicy, claim_deliveries, record_attempts};
    let stack = TestStack::spawn().await;
    let app = stack.create_app("Acme").await;
    let receiver = receiver_answering(ResponseTemplate::new(200)).await;
    let created = subscribe(&stack, &app, &receiver, json!(["call.started"])).await;
    stack.post_fixtures(&app, &OUTBOUND[..1]).await;
    stack.run_worker().await;

    let mut conn = stack.db.connect().await;
    let first = claim_deliveries(&mut conn, 10, 4, &[], 50)
        .await
        .expect("claims");
    assert_eq!(first.len(), 1);
    assert!(
        claim_deliveries(&mut conn, 10, 4, &[], 50)
            .await
            .expect("claims")
            .is_empty(),
        "a held lease is not taken"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second = claim_deliveries(&mut conn, 10, 4, &[], 10_000)
        .await
        .expect("claims");
    assert_eq!(second.len(), 1, "the expired lease is taken again");
    assert_eq!((second[0].id, second[0].attempt), (first[0].id, 2));

    let success = AttemptResult {
        status_code: Some(200),
        latency_ms: 3,
        error: None,
        retry_in_ms: None,
        disable: None,
    };
    let policy = FailurePolicy {
        max_consecutive_failures: 100,
        max_failing_s: 3_600,
    };
    let late = record_attempts(&mut conn, &[(first[0].clone(), success.clone())], policy)
        .await
        .expect("records");
    assert_eq!(late, 0, "the lost lease's completion is refused");
    let current = record_attempts(&mut conn, &[(second[0].clone(), success)], policy)
        .await
        .expect("records");
    assert_eq!(current, 1);

    let id = created["id"].as_str().expect("id");
    let log = get_when(
        &stack,
        &app,
        &format!("/api/webhooks/subscriptions/{id}/deliveries"),
        |_| true,
    )
    .await;
    let attempts = log["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1, "{log}");
    assert_eq!(attempts[0]["attempt"], 2);
    assert_eq!(attempts[0]["delivery_status"], "delivered");
}

/// A subscription with thousands of due deliveries costs another's claim nothing: the claim
/// reads each subscription's due deliveries apart.
#[tokio::test]
async fn a_deep_backlog_of_one_subscription_does_not_delay_anothers_claim() {
    use db::push::claim_deliveries;
    let stack = TestStack::spawn().await;
    let noisy = stack.create_app("Noisy").await;
    let quiet = stack.create_app("Quiet").await;
    let receiver = receiver_answering(ResponseTemplate::new(200)).await;
    let backlogged = subscribe(&stack, &noisy, &receiver, json!(["*"])).await;
    let other = subscribe(&stack, &quiet, &receiver, json!(["*"])).await;
    // 5,000 due deliveries of the noisy tenant, older than the quiet one's.
    stack
        .run_sql(&format!(
            "INSERT INTO push_events (id, app_id, event_type, body, position, created_at) \
             SELECT gen_random_uuid(), '{}', 'call.started', '{{}}', g, now() - interval '1 hour' \
             FROM generate_series(1, 5000) AS g",
            noisy.app_id
        ))
        .await;
    stack
        .run_sql(
            "INSERT INTO push_deliveries (event_id, subscription_id, app_id, next_attempt_at) \
             SELECT e.id, s.id, e.app_id, now() - interval '1 hour' \
             FROM push_events e JOIN push_subscriptions s USING (app_id)",
        )
        .await;
    stack.post_fixtures(&quiet, &OUTBOUND[..1]).await;
    stack.run_worker().await;

    let mut conn = stack.db.connect().await;
    // The loop already holds as many of the noisy subscription's as it may.
    let noisy_id: uuid::Uuid = backlogged["id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("uuid");
    let leased = claim_deliveries(&mut conn, 32, 4, &[(noisy_id, 4)], 10_000)
        .await
        .expect("claims");
    let quiet_id = other["id"].as_str().expect("id");
    assert!(!leased.is_empty());
    assert!(
        leased
            .iter()
            .all(|d| d.subscription_id.to_string() == quiet_id),
        "only the quiet subscription's deliveries: {:?}",
        leased.iter().map(|d| d.subscription_id).collect::<Vec<_>>()
    );
    // Without that, the oldest due come first, at most 4 of one subscription.
    let leased = claim_deliveries(&mut conn, 32, 4, &[], 10_000)
        .await
        .expect("claims");
    let noisy_leased = leased
        .iter()
        .filter(|d| d.subscription_id == noisy_id)
        .count();
    assert_eq!(noisy_leased, 4);
}
