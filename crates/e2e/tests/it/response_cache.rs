//! The response cache (`RESPONSE_CACHE_MB`): a tenant's list answers are served again until
//! that tenant's data changes, whoever changed it; never across tenants; never errors; and
//! never stale after a lost notification.

use std::time::{Duration, Instant};

use e2e::{TestApp, TestStack};
use serde_json::Value;

/// `GET path` as `app`: status, `x-cache` and the JSON body.
async fn get(stack: &TestStack, app: &TestApp, path: &str) -> (u16, String, Value) {
    let response = stack.tenant_get(&app.api_key, path).await;
    let status = response.status().as_u16();
    let cache = response
        .headers()
        .get("x-cache")
        .map_or("", |v| v.to_str().expect("ASCII"))
        .to_owned();
    (status, cache, response.json().await.expect("JSON body"))
}

/// Asks `path` until `done` holds of an answer, for at most `within`; returns that answer.
async fn eventually(
    stack: &TestStack,
    app: &TestApp,
    path: &str,
    within: Duration,
    done: impl Fn(&str, &Value) -> bool,
) -> (String, Value) {
    let deadline = Instant::now() + within;
    loop {
        let (status, cache, body) = get(stack, app, path).await;
        assert_eq!(status, 200, "{path}: {body}");
        if done(&cache, &body) {
            return (cache, body);
        }
        assert!(
            Instant::now() < deadline,
            "{path} not as expected within {within:?}: x-cache {cache}, {body}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Posts one outbound call's first event with `call_id` and applies it (the worker commits).
async fn post_call(stack: &TestStack, app: &TestApp, call_id: i64) {
    let mut event = e2e::fixture("call_outbound_01_calling.json");
    event["call_id"] = call_id.into();
    assert_eq!(stack.post_event(app, &event).await.status(), 200);
    stack.run_worker().await;
}

fn call_ids(body: &Value) -> Vec<&str> {
    body["calls"]
        .as_array()
        .unwrap_or_else(|| panic!("calls in {body}"))
        .iter()
        .map(|call| call["call_id"].as_str().expect("string id"))
        .collect()
}

/// Connections of the stack's database listening for tenant changes.
async fn listeners(stack: &TestStack) -> i64 {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let count: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM pg_stat_activity \
         WHERE datname = current_database() AND query = 'LISTEN tenant_changes'",
    )
    .get_result(&mut stack.db.connect().await)
    .await
    .expect("pg_stat_activity");
    count.n
}

/// A stack whose api caches answers, and counted totals for a minute (as if deployed).
async fn cached_stack() -> TestStack {
    TestStack::spawn_with(|settings| {
        settings.response_cache_mb = 16;
        settings.total_cache_ttl_ms = 60_000;
    })
    .await
}

#[tokio::test]
async fn a_list_answer_is_reused_until_its_tenants_data_changes() {
    let stack = cached_stack().await;
    let (a, b) = (stack.create_app("A").await, stack.create_app("B").await);
    post_call(&stack, &a, 8_100_000_001).await;
    post_call(&stack, &b, 8_200_000_001).await;

    // Once the listener is connected, the first answer is built and the second reused.
    let (cache, first) = eventually(&stack, &a, "/api/calls", Duration::from_secs(5), |c, _| {
        c != "bypass"
    })
    .await;
    assert_eq!(cache, "miss");
    assert_eq!(call_ids(&first), ["8100000001"]);
    let (_, cache, again) = get(&stack, &a, "/api/calls").await;
    assert_eq!((cache.as_str(), &again), ("hit", &first));
    // Every list endpoint is cached, each query string on its own.
    for path in [
        "/api/calls?limit=1",
        "/api/calls?view=legs",
        "/api/calls/active",
        "/api/messages",
        "/api/voicemails",
    ] {
        assert_eq!(get(&stack, &a, path).await.1, "miss", "{path}");
        let (status, cache, _) = get(&stack, &a, path).await;
        assert_eq!((status, cache.as_str()), (200, "hit"), "{path}");
    }
    // Never another tenant's answer.
    let (_, cache, theirs) = get(&stack, &b, "/api/calls").await;
    assert_eq!(
        (cache.as_str(), call_ids(&theirs)),
        ("miss", vec!["8200000001"])
    );
    // Never an error.
    for _ in 0..2 {
        let (status, cache, body) = get(&stack, &a, "/api/calls?limit=0").await;
        assert_eq!((status, cache.as_str()), (400, ""), "{body}");
    }

    // The worker commits a new call of A's: A's answers are rebuilt, B's are still good. A
    // counted total (of a full page) is recounted too, though counts are otherwise kept a
    // minute here.
    post_call(&stack, &a, 8_100_000_002).await;
    let (cache, counted) = eventually(
        &stack,
        &a,
        "/api/calls?limit=1",
        Duration::from_secs(2),
        |_, body| call_ids(body) == ["8100000002"],
    )
    .await;
    assert_eq!(
        (cache.as_str(), counted["total"].as_i64()),
        ("miss", Some(2))
    );
    let (_, cache, fresh) = get(&stack, &a, "/api/calls").await;
    assert_eq!(
        (cache.as_str(), call_ids(&fresh), &fresh["total"]),
        ("miss", vec!["8100000002", "8100000001"], &Value::from(2))
    );
    assert_eq!(get(&stack, &a, "/api/calls").await.1, "hit");
    assert_eq!(get(&stack, &a, "/api/calls/active").await.2["total"], 2);
    assert_eq!(get(&stack, &b, "/api/calls").await.1, "hit");

    // Any writer counts, not only the worker: here a manual fix in SQL.
    stack
        .run_sql("UPDATE logical_calls SET status = 'completed' WHERE logical_call_id = 8100000002")
        .await;
    eventually(
        &stack,
        &a,
        "/api/calls",
        Duration::from_secs(2),
        |_, body| body["calls"][0]["status"] == "completed",
    )
    .await;
    stack
        .run_sql("DELETE FROM calls WHERE call_id = 8100000001")
        .await;
    eventually(
        &stack,
        &a,
        "/api/calls?view=legs",
        Duration::from_secs(2),
        |_, body| call_ids(body) == ["8100000002"],
    )
    .await;
}

#[tokio::test]
async fn a_change_whose_notification_is_lost_is_still_seen() {
    let stack = cached_stack().await;
    let app = stack.create_app("A").await;
    post_call(&stack, &app, 8_300_000_001).await;
    eventually(
        &stack,
        &app,
        "/api/calls",
        Duration::from_secs(5),
        |c, _| c == "hit",
    )
    .await;
    // The listener's connection ends before the change commits, so its notification reaches
    // no one (pg_terminate_backend waits up to 5 s for the backend to exit).
    stack
        .run_sql(
            "DO $$ BEGIN \
                 UPDATE logical_calls SET status = 'completed' WHERE logical_call_id = 8300000001; \
                 IF NOT (SELECT bool_and(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity \
                         WHERE datname = current_database() AND query = 'LISTEN tenant_changes') \
                 THEN RAISE EXCEPTION 'no listener ended'; END IF; \
             END $$",
        )
        .await;
    // Once the api has reconnected (so it noticed), no answer is stale: the reconnect left
    // every earlier answer stale, so the next hit is of a rebuilt answer.
    let deadline = Instant::now() + Duration::from_secs(5);
    while listeners(&stack).await == 0 {
        assert!(Instant::now() < deadline, "the listener reconnects");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (_, body) = eventually(
        &stack,
        &app,
        "/api/calls",
        Duration::from_secs(5),
        |c, body| {
            assert_eq!(body["calls"][0]["status"], "completed", "x-cache {c}");
            c == "hit"
        },
    )
    .await;
    assert_eq!(call_ids(&body), ["8300000001"]);
}
