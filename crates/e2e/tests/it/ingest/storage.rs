//! What ingest stores: once per delivery, after commit, whatever odd values it holds; and its
//! answers when the database is away.

use super::*;

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

/// The idempotency key is `(app, event time, dedupe key)`, the time leading so that new events
/// land at the index's right edge: an event without a time, or with one Postgres cannot hold
/// (both stored as null), is still recognised when redelivered, and the same call at another
/// time is another event.
#[tokio::test]
async fn events_without_a_storable_time_are_deduplicated_too() {
    let stack = TestStack::spawn().await;
    let app = stack.create_app("untimed").await;
    let hangup = fixture("call_outbound_03_hangup.json");
    let mut untimed = hangup.clone();
    untimed
        .as_object_mut()
        .expect("object")
        .remove("event_timestamp");
    let mut unholdable = hangup.clone();
    unholdable["event_timestamp"] = json!(i64::MAX);
    let mut later = hangup.clone();
    later["event_timestamp"] = json!(hangup["event_timestamp"].as_i64().expect("time") + 1);
    let mut answers = Vec::new();
    for event in [
        &untimed,
        &unholdable,
        &hangup,
        &later,
        &untimed,
        &unholdable,
        &hangup,
    ] {
        let response = stack.post_event(&app, event).await;
        assert_eq!(response.status(), 200);
        answers.push(response.json::<Value>().await.expect("JSON"));
    }
    assert!(answers[..4].iter().all(|a| a["duplicate"] == false));
    for (again, first) in answers[4..].iter().zip(&answers) {
        assert_eq!(
            (&again["duplicate"], &again["id"]),
            (&json!(true), &first["id"])
        );
    }
    assert_eq!(stack.event_total().await, 4);
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
        "Postgres text cannot hold U+0000; ingest must still store the event"
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

#[tokio::test]
async fn a_batch_is_stored_in_order_by_one_statement_prepared_once_per_connection() {
    use chrono::{TimeZone, Utc};
    use db::queue::{Enqueued, NewWebhookEvent, enqueue_many};
    use diesel_async::RunQueryDsl;
    let db = e2e::TestDatabase::migrated().await;
    let app = db.insert_app("batches").await;
    let event = |n: i64| {
        let mut event = fixture("call_outbound_02_connected.json");
        event["call_id"] = json!(7_189_235_590_594_560_i64 + n * 8192);
        let Value::Object(event) = event else {
            unreachable!("a fixture is an object")
        };
        NewWebhookEvent::from_verified(Some(app), event)
    };
    let spooled_at = Utc.with_ymd_and_hms(2026, 12, 1, 9, 30, 0).unwrap();
    let mut conn = db.connect().await;

    let mut first = vec![event(1), event(2), event(1)];
    first[1].received_at = Some(spooled_at);
    first[1].request_id = Some("req-2".into());
    let stored = enqueue_many(&mut conn, &first).await.expect("stored");
    let (Enqueued::Stored(one), Enqueued::Stored(two)) = (stored[0], stored[1]) else {
        panic!("two new rows: {stored:?}");
    };
    assert!(one < two, "ids follow the batch's order: {stored:?}");
    assert_eq!(stored[2], Enqueued::Duplicate(one), "a repeat in the batch");

    // A batch of another size: already stored, new and new, in that order.
    let second = [event(2), event(3), event(4)];
    let stored = enqueue_many(&mut conn, &second).await.expect("stored");
    assert_eq!(stored[0], Enqueued::Duplicate(two));
    let (Enqueued::Stored(three), Enqueued::Stored(four)) = (stored[1], stored[2]) else {
        panic!("two new rows: {stored:?}");
    };
    assert!(two < three && three < four, "{stored:?}");

    #[derive(diesel::QueryableByName, Debug)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        id: i64,
        #[diesel(sql_type = diesel::sql_types::Timestamptz)]
        received_at: chrono::DateTime<Utc>,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        request_id: Option<String>,
        #[diesel(sql_type = diesel::sql_types::Text)]
        status: String,
        #[diesel(sql_type = diesel::sql_types::Bool)]
        queued: bool,
    }
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT e.id, e.received_at, e.request_id, e.status, \
           EXISTS (SELECT 1 FROM event_queue q WHERE q.event_id = e.id) AS queued \
         FROM webhook_events e ORDER BY e.id",
    )
    .load(&mut conn)
    .await
    .expect("rows");
    assert_eq!(rows.len(), 4, "{rows:?}");
    let row = |id: i64| rows.iter().find(|r| r.id == id).expect("row");
    assert_eq!(
        row(two).received_at,
        spooled_at,
        "a spooled event keeps its arrival"
    );
    assert_eq!(row(two).request_id.as_deref(), Some("req-2"));
    assert!(row(one).received_at > spooled_at, "none given: now()");
    assert!(
        rows.iter().all(|r| r.status == "pending" && r.queued),
        "pending and in the hot queue: {rows:?}"
    );

    // Both batch sizes ran the same prepared statement: no Parse and no plan per batch.
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        count: i64,
    }
    let prepared: Count = diesel::sql_query(
        "SELECT count(*) AS count FROM pg_prepared_statements \
         WHERE statement LIKE 'INSERT INTO webhook_events%'",
    )
    .get_result(&mut conn)
    .await
    .expect("prepared statements");
    assert_eq!(prepared.count, 1);
}
