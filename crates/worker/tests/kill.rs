//! A worker process killed (SIGKILL) in the middle of a batch loses nothing: its transaction
//! rolls back, a second worker process takes the events at once, and every event ends applied
//! exactly once.

use std::time::{Duration, Instant};

use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use db::queue::{NewWebhookEvent, enqueue_many};
use db::testing::TestDatabase;
use db::testing::fixtures::{OUTBOUND, fixture};

const CALLS: i64 = 1_500;
fn spawn_worker(database_url: &str, name: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_worker"))
        .env_remove("CONFIG_FILE")
        .env("DATABASE_URL", database_url)
        .env("WORKER_ID", name)
        // Several at once: each picks a free port for its health endpoints.
        .env("METRICS_PORT", "0")
        .env("WORKER_BATCH_SIZE", "500")
        .env("WORKER_POLL_INTERVAL_MS", "100")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("the worker starts")
}

#[derive(diesel::QueryableByName, Debug, PartialEq)]
struct Count {
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn statuses(db: &TestDatabase) -> Vec<Count> {
    let mut conn = db.connect().await;
    diesel::sql_query(
        "SELECT status, count(*) AS n FROM webhook_events GROUP BY status ORDER BY status",
    )
    .load(&mut conn)
    .await
    .expect("counts")
}

async fn count(db: &TestDatabase, query: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct One {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let mut conn = db.connect().await;
    let rows: Vec<One> = diesel::sql_query(query)
        .load(&mut conn)
        .await
        .expect("count");
    rows[0].n
}

#[tokio::test]
async fn a_worker_killed_mid_batch_loses_nothing() {
    let db = TestDatabase::migrated().await;
    let app_id = db.insert_app("kill").await;
    let mut conn = db.connect().await;
    let lifecycle: Vec<Value> = OUTBOUND.iter().map(|name| fixture(name)).collect();
    let events: Vec<NewWebhookEvent> = (0..CALLS)
        .flat_map(|n| {
            lifecycle.iter().map(move |event| {
                let mut event = event.clone();
                event["call_id"] = json!(event["call_id"].as_i64().expect("id") + n * 8192);
                let Value::Object(event) = event else {
                    unreachable!("an object")
                };
                NewWebhookEvent::from_verified(Some(app_id), event)
            })
        })
        .collect();
    for chunk in events.chunks(1_000) {
        enqueue_many(&mut conn, chunk).await.expect("enqueued");
    }
    let total = CALLS * 5;

    // Kill the first worker as soon as it has committed something: it is mid-stream.
    let mut first = spawn_worker(db.url(), "doomed");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = count(
            &db,
            "SELECT count(*) AS n FROM webhook_events WHERE status = 'done'",
        )
        .await;
        if done > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the first worker never committed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.start_kill().expect("SIGKILL");
    first.wait().await.expect("reaped");
    let done_at_kill = count(
        &db,
        "SELECT count(*) AS n FROM webhook_events WHERE status = 'done'",
    )
    .await;
    assert!(
        done_at_kill < total,
        "killed before the end ({done_at_kill} of {total} done)"
    );
    assert_eq!(done_at_kill % 500, 0, "only whole batches committed");

    // A second worker takes over at once (no lease to wait for) and finishes.
    let started = Instant::now();
    let mut second = spawn_worker(db.url(), "survivor");
    while statuses(&db).await
        != [Count {
            status: "done".into(),
            n: total,
        }]
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not finished within 30 s: {:?}",
            statuses(&db).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    second.start_kill().expect("stop");

    // Exactly once: every event completed on its first counted attempt (the killed batch's
    // attempt rolled back with it), none failed, and every leg folded each of its 5 events.
    assert_eq!(
        count(
            &db,
            "SELECT count(*) AS n FROM webhook_events WHERE attempts <> 1 OR last_error IS NOT NULL"
        )
        .await,
        0
    );
    assert_eq!(count(&db, "SELECT count(*) AS n FROM calls").await, CALLS);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) AS n FROM calls WHERE event_count = 5 AND status = 'completed'"
        )
        .await,
        CALLS
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) AS n FROM logical_calls WHERE status = 'completed'"
        )
        .await,
        CALLS
    );
}
