//! Operating the queue through the api: events by status with paging, retrying a dead letter
//! after the fix, re-routing unroutable events, and replaying an app's event log.

use diesel_async::RunQueryDsl;
use e2e::{TestStack, UNSCOPED_SECRET, fixture, sign};
use serde_json::{Value, json};

use crate::OUTBOUND;

#[tokio::test]
async fn a_dead_event_succeeds_when_retried_after_the_fix() {
    let stack = TestStack::spawn().await;
    let app = stack.create_app("poison").await;
    // A bug the database trips over for one leg only (the "poison"), until it is fixed.
    stack
        .run_sql(
            "CREATE FUNCTION reject_leg() RETURNS trigger AS $$ BEGIN \
           IF NEW.call_id = 7189235590594560 THEN RAISE EXCEPTION 'simulated bug'; END IF; \
           RETURN NEW; END $$ LANGUAGE plpgsql",
        )
        .await;
    stack.run_sql("CREATE TRIGGER reject_leg BEFORE INSERT OR UPDATE ON calls FOR EACH ROW EXECUTE FUNCTION reject_leg()").await;
    let poison = fixture(OUTBOUND[2]);
    let neighbour = fixture("call_inbound_vm_04_hangup.json");
    stack.post_event(&app, &poison).await;
    stack.post_event(&app, &neighbour).await;

    // WORKER_MAX_ATTEMPTS is 3 in tests, with a few ms of backoff.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !stack
        .events_by_status()
        .await
        .contains(&("dead".to_owned(), 1))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            stack.events_by_status().await
        );
        stack.run_worker().await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (status, dead) = stack
        .admin(reqwest::Method::GET, "/internal/events?status=dead", None)
        .await;
    assert_eq!(status, 200);
    let event = &dead["events"][0];
    assert_eq!(event["attempts"], 3);
    assert_eq!(event["dialpad_id"], "7189235590594560");
    assert!(
        event["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("simulated bug")),
        "{event}"
    );
    assert!(event.get("payload").is_none(), "lists leave payloads out");
    let id = event["id"].as_str().expect("id").to_owned();
    let (_, one) = stack
        .admin(
            reqwest::Method::GET,
            &format!("/internal/events/{id}"),
            None,
        )
        .await;
    assert_eq!(one["payload"]["call_id"], 7_189_235_590_594_560_i64);
    let (_, body) = stack.get_calls(&app.api_key, "?view=legs").await;
    assert_eq!(body["total"], 1, "the neighbour was applied");

    // The fix ships; the operator retries the dead letter.
    stack.run_sql("DROP TRIGGER reject_leg ON calls").await;
    let (status, body) = stack
        .admin(
            reqwest::Method::POST,
            &format!("/internal/events/{id}/retry"),
            None,
        )
        .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("pending")));
    stack.run_worker().await;
    assert_eq!(stack.events_by_status().await, [("done".to_owned(), 2)]);
    let (_, body) = stack.get_calls(&app.api_key, "?view=legs").await;
    assert_eq!(body["total"], 2);

    let (status, body) = stack
        .admin(
            reqwest::Method::POST,
            &format!("/internal/events/{id}/retry"),
            None,
        )
        .await;
    assert_eq!((status, body["error"].as_str()), (409, Some("conflict")));
    let (status, _) = stack
        .admin(reqwest::Method::POST, "/internal/events/999999/retry", None)
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn unroutable_events_are_rerouted_to_their_tenant() {
    let stack = TestStack::spawn().await;
    let app = stack.create_app("late tenant").await;
    for name in OUTBOUND {
        let response = stack
            .post_raw(None, sign(&fixture(name), UNSCOPED_SECRET))
            .await;
        assert_eq!(response.status(), 200);
    }
    // One of them also reached the app's own route.
    stack.post_event(&app, &fixture(OUTBOUND[0])).await;
    stack.run_worker().await;

    // Paging: 5 unroutable events, 2 per page, newest first.
    let mut ids: Vec<String> = Vec::new();
    let mut path = "/internal/events?status=unroutable&limit=2".to_owned();
    loop {
        let (status, page) = stack.admin(reqwest::Method::GET, &path, None).await;
        assert_eq!(status, 200, "{page}");
        ids.extend(
            page["events"]
                .as_array()
                .expect("events")
                .iter()
                .map(|e| e["id"].as_str().expect("id").to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => {
                path = format!("/internal/events?status=unroutable&limit=2&cursor={cursor}")
            }
            None => break,
        }
    }
    assert_eq!(ids.len(), 5);
    let numeric: Vec<i64> = ids.iter().map(|id| id.parse().expect("numeric")).collect();
    assert!(
        numeric.windows(2).all(|w| w[0] > w[1]),
        "newest first, no repeats: {numeric:?}"
    );

    let (status, body) = stack
        .admin(
            reqwest::Method::POST,
            "/internal/events/reroute",
            Some(json!({ "app_id": app.app_id, "event_ids": ids })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["queued"].as_u64(), body["duplicates"].as_u64()),
        (Some(4), Some(1))
    );
    stack.run_worker().await;
    let (_, calls) = stack.get_calls(&app.api_key, "?view=legs").await;
    assert_eq!(calls["calls"][0]["status"], "completed");
    assert_eq!(calls["calls"][0]["event_count"], 5);

    let (status, _) = stack
        .admin(
            reqwest::Method::POST,
            "/internal/events/reroute",
            Some(json!({ "app_id": uuid::Uuid::new_v4(), "event_ids": ["1"] })),
        )
        .await;
    assert_eq!(status, 404);
    let (status, body) = stack
        .admin(
            reqwest::Method::POST,
            "/internal/events/reroute",
            Some(json!({ "app_id": app.app_id, "event_ids": [] })),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
}

#[tokio::test]
async fn replay_rebuilds_an_apps_rows_from_its_event_log() {
    let stack = TestStack::spawn().await;
    let app = stack.create_app("replay").await;
    stack.post_fixtures(&app, &OUTBOUND).await;
    stack.run_worker().await;
    let (_, before) = stack.get_calls(&app.api_key, "?view=legs").await;

    // A bug damaged the rows.
    stack
        .run_sql("UPDATE calls SET status = 'ringing', talk_time_ms = NULL, recording_url = NULL")
        .await;
    stack.run_sql("DELETE FROM logical_calls").await;

    // Outside the range: nothing to replay.
    let (status, body) = stack.admin(reqwest::Method::POST,
        "/internal/replay",
        Some(json!({ "app_id": app.app_id, "from": "2020-01-01T00:00:00Z", "to": "2020-02-01T00:00:00Z" })),
    )
    .await;
    assert_eq!((status, body["queued"].as_u64()), (202, Some(0)));
    // The call's day: its whole log is queued and rebuilt.
    let (status, body) = stack.admin(reqwest::Method::POST,
        "/internal/replay",
        Some(json!({ "app_id": app.app_id, "from": "2026-11-19T00:00:00Z", "to": "2026-11-20T00:00:00Z" })),
    )
    .await;
    assert_eq!((status, body["queued"].as_u64()), (202, Some(5)));
    stack.run_worker().await;
    let (_, after) = stack.get_calls(&app.api_key, "?view=legs").await;
    let without_times = |mut body: Value| {
        body["calls"][0]["updated_at"] = Value::Null;
        body
    };
    assert_eq!(without_times(after), without_times(before));
    let mut conn = stack.db.connect().await;
    #[derive(diesel::QueryableByName)]
    struct Status {
        #[diesel(sql_type = diesel::sql_types::Text)]
        status: String,
    }
    let rebuilt: Vec<Status> = diesel::sql_query("SELECT status FROM logical_calls")
        .load(&mut conn)
        .await
        .expect("loads");
    assert_eq!(
        rebuilt
            .iter()
            .map(|s| s.status.as_str())
            .collect::<Vec<_>>(),
        ["completed"]
    );

    let (status, body) = stack.admin(reqwest::Method::POST,
        "/internal/replay",
        Some(json!({ "app_id": app.app_id, "from": "2026-11-20T00:00:00Z", "to": "2026-11-19T00:00:00Z" })),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let (status, body) = stack
        .admin(
            reqwest::Method::GET,
            "/internal/events?status=sleeping",
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_parameter"))
    );
    let unauthorized = stack
        .http
        .get(format!("{}/internal/events?status=dead", stack.api_url))
        .send()
        .await
        .expect("answers");
    assert_eq!(unauthorized.status(), 401);
}
