//! Deliveries end to end: a call's and a message's events, signed both ways; retries with the
//! same id; 410 deactivates until the tenant revives the subscription; a replay announces nothing.

use super::*;

#[tokio::test]
async fn a_subscriber_gets_a_calls_events_signed_both_ways_and_a_replay_announces_nothing() {
    let stack = TestStack::spawn().await;
    let app = stack.create_app("Acme").await;
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let created = subscribe(&stack, &app, &receiver, json!(["*"])).await;
    let secret = created["secret_key"].as_str().expect("secret shown once");
    assert!(
        secret.starts_with("whsec_") && secret.len() == 50,
        "{secret}"
    );
    assert_eq!(created["active"], true);
    assert_eq!(created["events"], json!(["*"]));
    stack.start_deliveries();

    stack.post_fixtures(&app, &OUTBOUND).await;
    stack.run_worker().await;
    // The whole lifecycle in one batch is one change: nothing to completed.
    let expected = [
        "call.started",
        "call.answered",
        "call.status.changed",
        "call.recording.ready",
        "call.ended",
        "call.completed",
    ];
    let requests = received(&receiver, expected.len()).await;
    let mut bodies: Vec<Value> = requests.iter().map(body_of).collect();
    bodies.sort_by_key(|b| b["sequence"].as_i64());
    let events: Vec<&str> = bodies
        .iter()
        .map(|b| b["event"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(events, expected);
    for (n, body) in bodies.iter().enumerate() {
        assert_eq!(body["sequence"], json!(n + 1));
        assert_eq!(body["status"], "completed");
        assert!(body["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
    }
    for request in &requests {
        assert_signed(request, secret);
        assert_eq!(
            body_of(request)["id"],
            request.headers["webhook-id"].to_str().expect("ascii")
        );
    }
    // `data` is the phone call exactly as the tenant API shows it.
    let call_id = bodies[0]["callId"].as_str().expect("callId").to_owned();
    let (status, shown) = stack.get_calls(&app.api_key, "").await;
    assert_eq!(status, 200);
    assert_eq!(shown["calls"][0]["call_id"], call_id.as_str());
    assert_eq!(bodies.last().expect("events")["data"], shown["calls"][0]);

    // The subscription's health.
    let id = created["id"].as_str().expect("id");
    let path = format!("/api/webhooks/subscriptions/{id}");
    let subscription = get_when(&stack, &app, &path, |s| s["last_success_at"].is_string()).await;
    assert_eq!(subscription["consecutive_failures"], 0);
    assert!(subscription["last_success_at"].is_string());
    assert!(
        subscription.get("secret_key").is_none(),
        "the secret is shown only once"
    );

    // Redelivered and replayed Dialpad events change nothing, so announce nothing.
    stack.post_fixtures(&app, &OUTBOUND).await;
    let (status, _) = stack
        .admin(
            Method::POST,
            "/internal/replay",
            Some(json!({ "app_id": app.app_id, "from": "2026-11-19T00:00:00Z", "to": "2026-11-20T00:00:00Z" })),
        )
        .await;
    assert_eq!(status, 202);
    stack.run_worker().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(received(&receiver, 0).await.len(), expected.len());
}

#[tokio::test]
async fn a_failing_receiver_gets_the_same_event_again_and_410_deactivates_until_revived() {
    let stack = TestStack::spawn().await;
    let app = stack.create_app("Acme").await;
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(3)
        .with_priority(1)
        .mount(&receiver)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .with_priority(2)
        .mount(&receiver)
        .await;
    let created = subscribe(&stack, &app, &receiver, json!(["call.started"])).await;
    let id = created["id"].as_str().expect("id").to_owned();
    stack.start_deliveries();

    stack.post_fixtures(&app, &OUTBOUND[..1]).await;
    stack.run_worker().await;
    let requests = received(&receiver, 4).await;
    assert_eq!(requests.len(), 4, "three failures, then a success");
    let first = &requests[0];
    for retry in &requests[1..] {
        assert_eq!(retry.headers["webhook-id"], first.headers["webhook-id"]);
        assert_eq!(retry.body, first.body);
    }
    assert_eq!(body_of(first)["event"], "call.started");
    let subscription_path = format!("/api/webhooks/subscriptions/{id}");
    let subscription = get_when(&stack, &app, &subscription_path, |s| {
        s["last_success_at"].is_string()
    })
    .await;
    assert_eq!(subscription["consecutive_failures"], 0);
    assert_eq!(subscription["active"], true);
    assert!(subscription["last_failure_at"].is_string());

    // 410 Gone deactivates at once, without retries.
    receiver.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(410))
        .mount(&receiver)
        .await;
    let (status, _) = stack
        .tenant(
            &app.api_key,
            Method::PATCH,
            &subscription_path,
            Some(json!({ "events": ["*"] })),
        )
        .await;
    assert_eq!(status, 200);
    stack.post_fixtures(&app, &OUTBOUND[1..2]).await;
    stack.run_worker().await;
    let subscription = get_when(&stack, &app, &subscription_path, |s| s["active"] == false).await;
    assert_eq!(subscription["active"], false, "{subscription}");
    assert!(
        subscription["disabled_reason"]
            .as_str()
            .is_some_and(|r| r.contains("410")),
        "{subscription}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let gone = received(&receiver, 0).await;
    let mut ids: Vec<_> = gone
        .iter()
        .map(|r| r.headers["webhook-id"].clone())
        .collect();
    ids.dedup();
    assert_eq!(ids.len(), gone.len(), "no retry after 410");

    // Reactivated by its tenant: failures forgotten.
    let (status, revived) = stack
        .tenant(
            &app.api_key,
            Method::PATCH,
            &subscription_path,
            Some(json!({ "active": true })),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(revived["active"], true);
    assert_eq!(revived["consecutive_failures"], 0);
    assert_eq!(revived["disabled_reason"], Value::Null);
}

#[tokio::test]
async fn a_message_announces_that_it_was_sent_or_received_and_each_status() {
    let stack = TestStack::spawn().await;
    let app = stack.create_app("Acme").await;
    let receiver = receiver_answering(ResponseTemplate::new(200)).await;
    subscribe(
        &stack,
        &app,
        &receiver,
        json!(["sms.sent", "sms.received", "sms.status.changed"]),
    )
    .await;
    stack.start_deliveries();

    let mut seen = 0;
    for (fixture, expected) in [
        (
            "sms_outbound_01_pending.json",
            vec![("sms.sent", 1), ("sms.status.changed", 2)],
        ),
        (
            "sms_outbound_02_status_success.json",
            vec![("sms.status.changed", 3)],
        ),
        (
            "sms_inbound_01_received.json",
            vec![("sms.received", 1), ("sms.status.changed", 2)],
        ),
    ] {
        stack.post_fixtures(&app, &[fixture]).await;
        stack.run_worker().await;
        seen += expected.len();
        let requests = received(&receiver, seen).await;
        assert_eq!(requests.len(), seen, "{fixture}");
        let mut bodies: Vec<Value> = requests[seen - expected.len()..]
            .iter()
            .map(body_of)
            .collect();
        bodies.sort_by_key(|b| b["sequence"].as_i64());
        let events: Vec<(&str, i64)> = bodies
            .iter()
            .map(|b| {
                (
                    b["event"].as_str().unwrap_or(""),
                    b["sequence"].as_i64().unwrap_or(0),
                )
            })
            .collect();
        assert_eq!(events, expected, "{fixture}");
        for body in &bodies {
            assert_eq!(
                body["callId"], body["data"]["message_id"],
                "the message's id"
            );
            assert_eq!(body["status"], body["data"]["status"]);
        }
    }
}

#[tokio::test]
async fn a_voicemail_is_announced_once_with_its_link() {
    let stack = TestStack::spawn().await;
    let app = stack.create_app("Acme").await;
    let receiver = receiver_answering(ResponseTemplate::new(200)).await;
    subscribe(&stack, &app, &receiver, json!(["voicemail.created"])).await;
    stack.start_deliveries();

    // Event by event, as Dialpad sends them: the voicemail appears with its upload.
    for name in db::testing::fixtures::INBOUND_VOICEMAIL {
        stack.post_fixtures(&app, &[name]).await;
        stack.run_worker().await;
    }
    let requests = received(&receiver, 1).await;
    assert_eq!(requests.len(), 1);
    let body = body_of(&requests[0]);
    assert_eq!(body["event"], "voicemail.created");
    assert!(body["data"]["link"].is_string(), "{body}");
    assert_eq!(body["data"]["logical_call_id"], body["callId"]);
    let (_, listed) = stack
        .tenant(&app.api_key, Method::GET, "/api/voicemails", None)
        .await;
    // As GET /api/voicemails lists it, but when it was left: its transcript came later.
    let mut shown = listed["voicemails"][0].clone();
    assert!(shown["transcription_text"].is_string());
    shown["transcription_text"] = Value::Null;
    assert_eq!(body["data"], shown);

    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(received(&receiver, 0).await.len(), 1, "announced once");
}

#[tokio::test]
async fn the_attempt_log_shows_each_attempt_and_a_delivery_can_be_resent() {
    let stack = TestStack::spawn().await;
    let app = stack.create_app("Acme").await;
    let other = stack.create_app("Other").await;
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&receiver)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(2)
        .mount(&receiver)
        .await;
    let created = subscribe(&stack, &app, &receiver, json!(["call.started"])).await;
    let log = format!(
        "/api/webhooks/subscriptions/{}/deliveries",
        created["id"].as_str().expect("id")
    );
    stack.start_deliveries();
    stack.post_fixtures(&app, &OUTBOUND[..1]).await;
    stack.run_worker().await;
    assert_eq!(received(&receiver, 2).await.len(), 2);

    let attempts = get_when(&stack, &app, &log, |l| {
        l["attempts"].as_array().is_some_and(|a| a.len() == 2)
    })
    .await;
    let attempts = attempts["attempts"].as_array().expect("attempts").clone();
    assert_eq!(attempts[0]["attempt"], 2, "newest first");
    assert_eq!(attempts[0]["status_code"], 200);
    assert_eq!(attempts[0]["delivery_status"], "delivered");
    assert_eq!(attempts[0]["event"], "call.started");
    assert_eq!(attempts[1]["attempt"], 1);
    assert_eq!(attempts[1]["status_code"], 503);
    assert!(
        attempts[1]["error"]
            .as_str()
            .is_some_and(|e| e.contains("503"))
    );
    assert!(attempts[1]["latency_ms"].is_number());

    let resend = format!(
        "/api/webhooks/deliveries/{}/resend",
        attempts[0]["delivery_id"].as_str().expect("delivery id")
    );
    let (status, _) = stack
        .tenant(&other.api_key, Method::POST, &resend, None)
        .await;
    assert_eq!(status, 404, "another app's delivery");
    let (status, _) = stack.tenant(&other.api_key, Method::GET, &log, None).await;
    assert_eq!(status, 404, "another app's log");
    let (status, error) = stack
        .tenant(&app.api_key, Method::GET, &format!("{log}?cursor=x"), None)
        .await;
    assert_eq!(
        (status, error["error"].as_str()),
        (400, Some("invalid_parameter"))
    );
    let (status, resent) = stack
        .tenant(&app.api_key, Method::POST, &resend, None)
        .await;
    assert_eq!((status, resent["status"].as_str()), (202, Some("pending")));
    let requests = received(&receiver, 3).await;
    assert_eq!(requests.len(), 3);
    assert_eq!(
        requests[2].headers["webhook-id"],
        requests[0].headers["webhook-id"]
    );
    assert_eq!(requests[2].body, requests[0].body);
}

/// A receiver that hangs on every request holds at most `PUSH_PER_SUBSCRIPTION` of the
/// delivery loop's slots: another tenant's receiver gets its events at once meanwhile.
#[tokio::test]
async fn a_hanging_receiver_does_not_delay_another() {
    let stack = TestStack::spawn().await;
    let slow = stack.create_app("Slow").await;
    let quick = stack.create_app("Quick").await;
    let hanging =
        receiver_answering(ResponseTemplate::new(200).set_delay(Duration::from_secs(4))).await;
    let fast = receiver_answering(ResponseTemplate::new(200)).await;
    subscribe(&stack, &slow, &hanging, json!(["*"])).await;
    subscribe(&stack, &quick, &fast, json!(["call.started"])).await;
    stack.start_deliveries();

    // The slow tenant's events first: more than the loop could hold if it let them.
    for lifecycle in db::testing::fixtures::LIFECYCLES {
        stack.post_fixtures(&slow, lifecycle).await;
    }
    stack.run_worker().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    stack.post_fixtures(&quick, &OUTBOUND[..1]).await;
    stack.run_worker().await;
    assert_eq!(received(&fast, 1).await.len(), 1);
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(2),
        "the quick receiver waited {waited:?}"
    );
    let in_flight = received(&hanging, 0).await.len();
    assert!(
        (1..=4).contains(&in_flight),
        "{in_flight} requests to the hanging receiver: at most PUSH_PER_SUBSCRIPTION"
    );
}

/// Announcements are written in the transaction of the change that caused them: when that
/// transaction fails, nothing is announced; when it is retried, everything is, once.
#[tokio::test]
async fn announcements_roll_back_with_the_change_that_caused_them() {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        events: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        deliveries: i64,
    }
    /// Events announced and deliveries queued.
    async fn outbox(stack: &TestStack) -> (i64, i64) {
        use diesel_async::RunQueryDsl;
        let mut conn = stack.db.connect().await;
        let count = diesel::sql_query(
            "SELECT (SELECT count(*) FROM push_events) AS events, \
                    (SELECT count(*) FROM push_deliveries) AS deliveries",
        )
        .get_result::<Count>(&mut conn)
        .await
        .expect("counts");
        (count.events, count.deliveries)
    }
    let stack = TestStack::spawn().await;
    let app = stack.create_app("Acme").await;
    let receiver = receiver_answering(ResponseTemplate::new(200)).await;
    subscribe(&stack, &app, &receiver, json!(["call.started"])).await;
    // Completing an event fails: the batch's transaction rolls back after the outbox write.
    stack
        .run_sql(
            "CREATE FUNCTION refuse_done() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF NEW.status = 'done' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$",
        )
        .await;
    stack
        .run_sql(
            "CREATE TRIGGER refuse_done BEFORE UPDATE ON webhook_events \
             FOR EACH ROW EXECUTE FUNCTION refuse_done()",
        )
        .await;
    stack.post_fixtures(&app, &OUTBOUND[..1]).await;
    assert!(
        stack.worker.process_batch().await.is_err(),
        "the batch fails"
    );
    assert_eq!(outbox(&stack).await, (0, 0), "nothing announced");

    stack
        .run_sql("DROP TRIGGER refuse_done ON webhook_events")
        .await;
    stack.run_worker().await;
    // call.started, call.ringing, call.status.changed; the subscription takes call.started.
    assert_eq!(outbox(&stack).await, (3, 1));
    stack.start_deliveries();
    assert_eq!(received(&receiver, 1).await.len(), 1);
}
