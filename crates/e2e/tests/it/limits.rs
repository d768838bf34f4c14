//! Bounded time: no statement holds a connection, and its locks, without bound; and what
//! else every pooled connection is set up with (prepared batch statements, custom plans).

use std::time::Duration;

use diesel_async::SimpleAsyncConnection;

use e2e::TestStack;

/// A statement past `DATABASE_STATEMENT_TIMEOUT_MS` is cancelled by Postgres: a request stuck
/// behind a lock is answered 503 (retry later) when the timeout fires, not left hanging until
/// the lock goes (here: never, so without the timeout the client's own 30 s timeout fails the
/// test), and the next request is served once the lock is gone.
#[tokio::test]
async fn a_statement_past_the_timeout_is_cancelled_and_answered_503() {
    let stack = TestStack::spawn_with(|settings| {
        settings.database.database_statement_timeout_ms = 300;
    })
    .await;
    let app = stack.create_app("stuck").await;
    assert_eq!(stack.get_calls(&app.api_key, "").await.0, 200);

    // Another session holds a lock the list needs, as a stuck transaction or a migration would.
    let mut locker = stack.db.connect().await;
    locker
        .batch_execute("BEGIN; LOCK TABLE logical_calls IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");
    let (status, body) = stack.get_calls(&app.api_key, "?direction=inbound").await;
    assert_eq!((status, body["error"].as_str()), (503, Some("unavailable")));
    locker.batch_execute("ROLLBACK").await.expect("unlock");
    assert_eq!(
        stack.get_calls(&app.api_key, "?direction=inbound").await.0,
        200
    );
}

/// Every pooled connection carries the timeout, whoever uses it.
#[tokio::test]
async fn pooled_connections_cancel_a_statement_past_the_timeout() {
    let db = db::testing::TestDatabase::migrated().await;
    let settings = db::PoolSettings {
        statement_timeout: Some(Duration::from_millis(100)),
        ..db::PoolSettings::default()
    };
    let pool = db::connect_pool(db.url(), &settings).await.expect("pool");
    let mut conn = pool.get().await.expect("connection");
    let error = conn
        .batch_execute("SELECT pg_sleep(5)")
        .await
        .expect_err("cancelled");
    assert!(error.to_string().contains("statement timeout"), "{error}");
    let unlimited = db::PoolSettings {
        statement_timeout: None,
        ..db::PoolSettings::default()
    };
    let pool = db::connect_pool(db.url(), &unlimited).await.expect("pool");
    let mut conn = pool.get().await.expect("connection");
    conn.batch_execute("SELECT pg_sleep(0.3)")
        .await
        .expect("no limit");
}

/// The admin budget cannot be side-stepped by percent-encoding the path, nor any budget by
/// writing `X-Forwarded-For` entries: behind `TRUSTED_PROXY_HOPS=1` the address is the one
/// the proxy appended, the right-most.
#[tokio::test]
async fn rate_limits_hold_against_encoded_paths_and_spoofed_addresses() {
    let stack = TestStack::spawn_with(|settings| {
        settings.rate_limit_admin_per_min = 3;
        settings.trusted_proxy_hops = 1;
    })
    .await;
    let get = |path: &str, forwarded: String| {
        let request = stack
            .http
            .get(format!("{}{path}", stack.api_url))
            .bearer_auth(e2e::INTERNAL_SECRET)
            .header("x-forwarded-for", forwarded);
        async move { request.send().await.expect("answers").status().as_u16() }
    };
    let client = "198.51.100.1";
    let mut statuses = Vec::new();
    for path in [
        "/%69nternal/apps",
        "/%69nternal/apps",
        "/internal/apps",
        "/internal/apps",
    ] {
        statuses.push(get(path, client.to_owned()).await);
    }
    assert_eq!(statuses, [200, 200, 200, 429], "/%69nternal is /internal");

    let mut statuses = Vec::new();
    for n in 0..4 {
        statuses.push(get("/internal/apps", format!("10.9.9.{n}, 198.51.100.2")).await);
    }
    assert_eq!(
        statuses,
        [200, 200, 200, 429],
        "spoofed entries change nothing"
    );
    assert_eq!(
        get("/internal/apps", "198.51.100.3".to_owned()).await,
        200,
        "another client has its own budget"
    );
}

/// Knowing a key's id (it is not secret) does not let anyone lock its tenant out or burn a
/// core: a bad secret is charged to its sender's address, bcrypt runs at most
/// `RATE_LIMIT_VERIFICATIONS_PER_MIN` times a minute for one address, the same bad secret
/// again runs none, and the key's own budget is charged only once the key verified.
#[tokio::test]
async fn a_thousand_bad_secrets_for_a_real_key_id_do_not_stop_the_real_key() {
    let stack = TestStack::spawn_with(|settings| {
        settings.rate_limit_per_key_per_min = 5;
        settings.rate_limit_verifications_per_min = 5;
        settings.trusted_proxy_hops = 1;
    })
    .await;
    let app = stack.create_app("target").await;
    let key_id = app
        .api_key
        .strip_prefix("raw_")
        .and_then(|rest| rest.split_once('_'))
        .expect("raw_{key_id}_{secret}")
        .0
        .to_owned();
    let get = |key: String, client: &'static str| {
        let request = stack
            .http
            .get(format!("{}/api/calls", stack.api_url))
            .header("x-app-api-key", key)
            .header("x-forwarded-for", client);
        async move { request.send().await.expect("answers").status().as_u16() }
    };

    let started = std::time::Instant::now();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for n in 0..1_000 {
        let forged = format!("raw_{key_id}_{n:0>40}");
        *statuses
            .entry(get(forged, "203.0.113.66").await)
            .or_default() += 1;
    }
    // The budget refills one verification every 12 s (5 a minute) while this runs.
    let refilled = (started.elapsed().as_secs_f64() / 12.0).ceil() as usize;
    let verified = statuses.get(&401).copied().unwrap_or_default();
    assert!(
        (5..=5 + refilled).contains(&verified)
            && verified + statuses.get(&429).copied().unwrap_or_default() == 1_000,
        "bcrypt ran 5 times, then the sender was limited: {statuses:?}"
    );
    let wrong = format!("raw_{key_id}_{}", "x".repeat(40));
    for _ in 0..20 {
        assert_eq!(
            get(wrong.clone(), "203.0.113.67").await,
            401,
            "the same bad secret again is refused without bcrypt, so without charge"
        );
    }
    for _ in 0..5 {
        assert_eq!(get(app.api_key.clone(), "203.0.113.7").await, 200);
    }
    assert_eq!(
        get(app.api_key.clone(), "203.0.113.8").await,
        429,
        "the key's own budget still holds"
    );
}

/// An ingest server of its own, with `configure` applied to its settings; its address.
async fn ingest_with(stack: &TestStack, configure: impl FnOnce(&mut ingest::Settings)) -> String {
    let mut settings = e2e::ingest_settings(stack.db.url());
    configure(&mut settings);
    format!("127.0.0.1:{}", stack.spawn_ingest(settings).await)
}

/// A client that sends its body slowly (slowloris) is answered 408 once
/// `INGEST_BODY_TIMEOUT_MS` has passed, instead of holding the connection.
#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_answered_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stack = TestStack::spawn().await;
    let app = stack.create_app("slow").await;
    let address = ingest_with(&stack, |settings| settings.ingest_body_timeout_ms = 300).await;
    let mut socket = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connects");
    let head = format!(
        "POST /webhooks/dialpad/{} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 1000\r\n\r\neyJ",
        app.app_id
    );
    socket.write_all(head.as_bytes()).await.expect("sends");
    let mut answer = vec![0_u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(20), socket.read(&mut answer))
        .await
        .expect("answered, not left hanging")
        .expect("answers");
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
}

/// Ingest's retry budget is a deadline: an insert stuck behind a lock is abandoned when the
/// budget runs out and answered 503 (Dialpad retries), not when the lock goes. Dialpad's retry
/// is then stored once, whether or not the abandoned insert committed.
#[tokio::test]
async fn an_insert_stuck_past_the_retry_budget_is_answered_503_and_its_retry_stored_once() {
    let stack = TestStack::spawn().await;
    let app = stack.create_app("stuck").await;
    let address = ingest_with(&stack, |settings| settings.ingest_db_retry_budget_ms = 500).await;
    let url = format!("http://{address}/webhooks/dialpad/{}", app.app_id);
    let body = e2e::sign(
        &e2e::fixture("call_outbound_01_calling.json"),
        &app.webhook_secret,
    );
    // Warm the app's secrets, so only the insert meets the lock.
    let warm = e2e::sign(
        &e2e::fixture("call_outbound_02_connected.json"),
        &app.webhook_secret,
    );
    let post = |body: String| {
        let request = stack.http.post(&url).body(body);
        async move { request.send().await.expect("answers") }
    };
    assert_eq!(post(warm).await.status(), 200);

    let mut locker = stack.db.connect().await;
    locker
        .batch_execute("BEGIN; LOCK TABLE webhook_events IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");
    let stuck = post(body.clone()).await;
    assert_eq!(stuck.status(), 503);
    assert!(stuck.headers().contains_key("retry-after"));
    locker.batch_execute("ROLLBACK").await.expect("unlock");

    assert_eq!(post(body).await.status(), 200, "Dialpad's retry");
    assert_eq!(stack.event_total().await, 2, "stored once");
}

/// The worker's batch statements are raw SQL, which diesel would parse and plan anew on every
/// batch: they are prepared once per connection, and the worker's connections plan each
/// execution for its own arrays (`plan_cache_mode = force_custom_plan`), so the plans stay
/// those checked at 1M calls.
#[tokio::test]
async fn raw_batch_statements_are_prepared_once_and_planned_for_each_batch_on_custom_plan_pools() {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Setting {
        #[diesel(sql_type = diesel::sql_types::Text)]
        plan_cache_mode: String,
    }
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        count: i64,
    }
    let db = db::testing::TestDatabase::migrated().await;
    let settings = db::PoolSettings {
        custom_plans_only: true,
        ..db::PoolSettings::default()
    };
    let pool = db::connect_pool(db.url(), &settings).await.expect("pool");
    let mut conn = pool.get().await.expect("connection");
    let mode: Setting = diesel::sql_query("SHOW plan_cache_mode")
        .get_result(&mut *conn)
        .await
        .expect("setting");
    assert_eq!(mode.plan_cache_mode, "force_custom_plan");

    // Batches of different sizes (outside a transaction, each lock ends with its statement).
    for legs in [vec![1, 2], vec![3, 4, 5, 6, 7]] {
        let held = db::calls::try_lock_legs(&mut conn, &legs)
            .await
            .expect("locked");
        assert!(held.is_empty());
    }
    let prepared: Count = diesel::sql_query(
        "SELECT count(*) AS count FROM pg_prepared_statements \
         WHERE statement LIKE 'SELECT k FROM unnest%pg_try_advisory_xact_lock%'",
    )
    .get_result(&mut *conn)
    .await
    .expect("prepared statements");
    assert_eq!(prepared.count, 1, "one statement, prepared once");

    let default_pool = db::connect_pool(db.url(), &db::PoolSettings::default())
        .await
        .expect("pool");
    let mode: Setting = diesel::sql_query("SHOW plan_cache_mode")
        .get_result(&mut *default_pool.get().await.expect("connection"))
        .await
        .expect("setting");
    assert_eq!(
        mode.plan_cache_mode, "auto",
        "other services keep Postgres' default"
    );
}
