//! The worker: racing replicas, poison events.

use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use e2e::{TestStack, fixture};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use db::schema::webhook_events;

use crate::OUTBOUND;

/// The outbound lifecycle re-keyed as call number `n` (a distinct leg).
fn outbound_call(n: i64) -> Vec<Value> {
    OUTBOUND
        .iter()
        .map(|name| {
            let mut event = fixture(name);
            let call_id = event["call_id"].as_i64().expect("call_id") + n * 8192;
            event["call_id"] = json!(call_id);
            event
        })
        .collect()
}

#[tokio::test]
async fn two_workers_process_each_event_exactly_once() {
    let stack = TestStack::spawn().await;
    let app = stack.create_app("racing").await;
    const CALLS: i64 = 40;
    for n in 0..CALLS {
        for event in outbound_call(n) {
            assert_eq!(stack.post_event(&app, &event).await.status(), 200);
        }
    }

    let shutdown = CancellationToken::new();
    let mut handles = Vec::new();
    for name in ["worker-a", "worker-b"] {
        let mut settings = TestStack::worker_settings(&stack.db);
        settings.worker_batch_size = 7;
        settings.worker_poll_interval_ms = 20;
        settings.worker_id = Some(name.into());
        let worker = worker::Worker::build(settings)
            .await
            .expect("worker builds");
        handles.push(tokio::spawn(worker.run_until_stopped(shutdown.clone())));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while stack.events_by_status().await != vec![("done".to_owned(), CALLS * 5)] {
        assert!(
            Instant::now() < deadline,
            "workers did not finish: {:?}",
            stack.events_by_status().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    for handle in handles {
        handle
            .await
            .expect("worker task")
            .expect("worker stops cleanly");
    }

    // Every event was completed by exactly one attempt.
    let mut conn = stack.db.connect().await;
    let attempts: Vec<i32> = webhook_events::table
        .select(webhook_events::attempts)
        .load(&mut conn)
        .await
        .expect("attempts");
    assert!(attempts.iter().all(|a| *a == 1), "attempts: {attempts:?}");

    let (_, body) = stack.get_calls(&app.api_key, "?view=legs&limit=200").await;
    assert_eq!(body["total"], CALLS);
    for call in body["calls"].as_array().expect("calls") {
        assert_eq!(call["status"], "completed");
        assert_eq!(call["event_count"], 5);
        assert_eq!(call["ended_at"], "2026-11-19T16:04:24.160Z");
    }
}

#[tokio::test]
async fn a_leg_another_batch_is_writing_is_deferred_not_waited_for() {
    use diesel_async::SimpleAsyncConnection;
    let stack = TestStack::spawn().await;
    let app = stack.create_app("deferred").await;
    let (held, free) = (outbound_call(0), outbound_call(1));
    for event in held.iter().chain(&free) {
        assert_eq!(stack.post_event(&app, event).await.status(), 200);
    }
    // Another batch (a second loop, another replica) is writing the first leg: its
    // transaction holds the leg's lock.
    let held_leg = held[0]["call_id"].as_i64().expect("call_id");
    let mut other = stack.db.connect().await;
    other
        .batch_execute(&format!("BEGIN; SELECT pg_advisory_xact_lock({held_leg})"))
        .await
        .expect("the other batch holds the leg");

    let first = tokio::time::timeout(Duration::from_secs(10), stack.worker.process_batch())
        .await
        .expect("the batch does not wait for the other one")
        .expect("batch");
    assert_eq!(
        (first.claimed, first.done, first.deferred, first.failed),
        (10, 5, 5, 0),
        "the free leg applied, the held one's events left for later"
    );
    let mut conn = stack.db.connect().await;
    let pending: Vec<i32> = webhook_events::table
        .filter(webhook_events::status.eq("pending"))
        .select(webhook_events::attempts)
        .load(&mut conn)
        .await
        .expect("pending events");
    assert_eq!(pending, vec![0; 5], "deferred events keep their attempts");
    let (_, body) = stack.get_calls(&app.api_key, "?view=legs").await;
    assert_eq!(body["total"], 1, "only the free leg so far: {body}");

    other.batch_execute("COMMIT").await.expect("commits");
    let second = stack.worker.process_batch().await.expect("batch");
    assert_eq!((second.claimed, second.done, second.deferred), (5, 5, 0));
    let (_, body) = stack.get_calls(&app.api_key, "?view=legs").await;
    assert_eq!(body["total"], 2);
    for call in body["calls"].as_array().expect("calls") {
        assert_eq!(call["status"], "completed");
        assert_eq!(call["event_count"], 5);
    }

    // Operators see how often batches collide.
    stack.start_worker();
    let metrics = crate::metrics::scrape(&stack.worker_url().await).await;
    assert_eq!(
        crate::metrics::sample(&metrics, "worker_events_deferred_total", &[]),
        Some(5.0),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_event_that_can_never_apply_is_dead_at_once_without_blocking_its_batch() {
    let stack = TestStack::spawn().await;
    let app = stack.create_app("poison").await;
    let mut poison = fixture("call_outbound_01_calling.json");
    poison["call_id"] = json!(1.5); // An id that passed through a float may have lost digits.
    assert_eq!(stack.post_event(&app, &poison).await.status(), 200);
    stack.post_fixtures(&app, &OUTBOUND).await;

    let first = stack.worker.process_batch().await.expect("batch");
    assert_eq!(
        (first.claimed, first.done, first.failed, first.dead),
        (6, 5, 0, 1),
        "neighbours applied in the same batch; the poison event dead at once, not retried"
    );
    let (_, body) = stack.get_calls(&app.api_key, "?view=legs").await;
    assert_eq!(body["calls"][0]["status"], "completed");
    assert_eq!(stack.run_worker().await.claimed, 0, "nothing left to retry");

    let mut conn = stack.db.connect().await;
    let (attempts, error): (i32, Option<String>) = webhook_events::table
        .filter(webhook_events::status.eq("dead"))
        .select((webhook_events::attempts, webhook_events::last_error))
        .first(&mut conn)
        .await
        .expect("dead event");
    assert_eq!(attempts, 1);
    assert_eq!(
        error.as_deref(),
        Some("call event has no usable call_id (an int64, or a string of digits)")
    );
}

#[tokio::test]
async fn a_transient_failure_is_retried_with_backoff_and_then_applies() {
    let stack = TestStack::spawn().await;
    let app = stack.create_app("flaky").await;
    // The database refuses the next two writes of a leg (the batch's, then the unit's own
    // retry), as a deadlock or a full disk would; a sequence counts outside transactions.
    stack.run_sql("CREATE SEQUENCE flaky_writes").await;
    stack
        .run_sql(
            "CREATE FUNCTION flaky() RETURNS trigger AS $$
             BEGIN
                 IF nextval('flaky_writes') <= 2 THEN
                     RAISE EXCEPTION 'simulated transient failure';
                 END IF;
                 RETURN NEW;
             END $$ LANGUAGE plpgsql",
        )
        .await;
    stack
        .run_sql(
            "CREATE TRIGGER flaky BEFORE INSERT ON calls FOR EACH ROW EXECUTE FUNCTION flaky()",
        )
        .await;
    stack.post_fixtures(&app, &OUTBOUND[..1]).await;

    let first = stack.worker.process_batch().await.expect("batch");
    assert_eq!((first.claimed, first.failed, first.dead), (1, 1, 0));
    let mut conn = stack.db.connect().await;
    let (status, attempts, error): (String, i32, Option<String>) = webhook_events::table
        .select((
            webhook_events::status,
            webhook_events::attempts,
            webhook_events::last_error,
        ))
        .first(&mut conn)
        .await
        .expect("event");
    assert_eq!((status.as_str(), attempts), ("pending", 1));
    assert!(
        error.is_some_and(|e| e.contains("simulated transient failure")),
        "the reason is recorded"
    );

    // Due again after the (test-short) backoff; then it applies.
    let deadline = Instant::now() + Duration::from_secs(10);
    while stack.run_worker().await.done == 0 {
        assert!(Instant::now() < deadline, "never retried");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(stack.events_by_status().await, vec![("done".to_owned(), 1)]);
    let (_, body) = stack.get_calls(&app.api_key, "?view=legs").await;
    assert_eq!(body["total"], 1);
}

#[tokio::test]
async fn the_worker_rides_out_a_database_restart() {
    let stack = TestStack::spawn().await;
    let app = stack.create_app("restart").await;
    let server = stack
        .db
        .url()
        .split_once('@')
        .and_then(|(_, rest)| rest.split_once('/'))
        .map(|(host, _)| host.to_owned())
        .expect("host:port");
    let proxy = e2e::CuttableProxy::start(server).await;
    let mut settings = TestStack::worker_settings(&stack.db);
    settings.database.database_url = Some(proxy.url_for(stack.db.url()).into());
    settings.database.database_connect_timeout_ms = 200;
    settings.worker_poll_interval_ms = 100;
    let worker = worker::Worker::build(settings)
        .await
        .expect("worker builds");
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(worker.run_until_stopped(shutdown.clone()));

    let wait_for_done = |expected: i64| {
        let stack = &stack;
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            while stack.events_by_status().await != vec![("done".to_owned(), expected)] {
                assert!(
                    Instant::now() < deadline,
                    "not processed: {:?}",
                    stack.events_by_status().await
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let calls = outbound_call(0);
    for event in &calls[..2] {
        assert_eq!(stack.post_event(&app, event).await.status(), 200);
    }
    wait_for_done(2).await;

    // The database goes away (every worker connection drops) while events keep arriving.
    proxy.cut();
    for event in &calls[2..] {
        assert_eq!(stack.post_event(&app, event).await.status(), 200);
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(!running.is_finished(), "the worker survives the outage");
    proxy.restore();
    wait_for_done(5).await;

    let (_, body) = stack.get_calls(&app.api_key, "?view=legs").await;
    assert_eq!(body["calls"][0]["status"], "completed");
    assert_eq!(body["calls"][0]["event_count"], 5);
    shutdown.cancel();
    running
        .await
        .expect("joins")
        .expect("stops cleanly after the outage");
}

#[tokio::test]
async fn retention_replaces_an_old_log_by_a_snapshot_and_late_events_still_fold() {
    let stack = TestStack::spawn().await;
    let app = stack.create_app("retention").await;
    stack.post_fixtures(&app, &OUTBOUND).await;
    stack
        .post_fixtures(&app, &["call_inbound_vm_01_ringing.json"])
        .await;
    let contact = json!({ "event": "Created", "contact": { "id": 1, "name": "Dana" } });
    assert_eq!(stack.post_event(&app, &contact).await.status(), 200);
    stack.run_worker().await;
    let mut conn = stack.db.connect().await;
    // The outbound call and the contact event are 100 days old; the voicemail call is new.
    diesel::sql_query(
        "UPDATE webhook_events SET received_at = now() - interval '100 days' \
         WHERE dialpad_id = 7189235590594560 OR kind = 'contact'",
    )
    .execute(&mut conn)
    .await
    .expect("aged");
    let (_, before) = stack.get_calls(&app.api_key, "?view=legs").await;

    let pruned = stack.worker.prune_expired().await.expect("prunes");
    assert_eq!((pruned.units, pruned.deleted), (1, 6), "{pruned:?}");
    let outbound_events: Vec<(String, Option<String>)> = webhook_events::table
        .filter(webhook_events::dialpad_id.eq(7_189_235_590_594_560_i64))
        .select((webhook_events::status, webhook_events::event_type))
        .load(&mut conn)
        .await
        .expect("events");
    assert_eq!(
        outbound_events,
        [("done".to_owned(), Some("snapshot".to_owned()))]
    );
    assert_eq!(
        stack.event_total().await,
        2,
        "the snapshot and the recent call's event"
    );
    let (_, after) = stack.get_calls(&app.api_key, "?view=legs").await;
    assert_eq!(after["calls"], before["calls"], "rows untouched");

    // A very late event for the pruned leg folds onto the snapshot, losing nothing.
    let late = json!({
        "call_id": 7_189_235_590_594_560_i64, "state": "csat",
        "event_timestamp": 1_795_190_400_000_i64, "direction": "outbound",
    });
    assert_eq!(stack.post_event(&app, &late).await.status(), 200);
    stack.run_worker().await;
    let (_, body) = stack.get_calls(&app.api_key, "?view=legs").await;
    let leg = body["calls"]
        .as_array()
        .expect("calls")
        .iter()
        .find(|c| c["call_id"] == "7189235590594560")
        .expect("the leg");
    assert_eq!(leg["state"], "csat");
    assert_eq!(leg["status"], "completed");
    assert_eq!(leg["event_count"], 6);
    let old = before["calls"]
        .as_array()
        .expect("calls")
        .iter()
        .find(|c| c["call_id"] == "7189235590594560")
        .expect("the leg");
    assert!(old["recording_url"].is_string() && old["talk_time"].is_number());
    for field in [
        "recording_url",
        "talk_time",
        "duration",
        "connected_at",
        "ended_at",
        "contact",
    ] {
        assert_eq!(leg[field], old[field], "{field} kept");
    }
    // Nothing more to prune: the snapshot is not pruned again, the late event is recent.
    assert_eq!(
        stack.worker.prune_expired().await.expect("prunes").deleted,
        0
    );
}
