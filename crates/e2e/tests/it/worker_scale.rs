//! The worker at scale: a batch costs what the batch holds, not what its tenant has stored;
//! tenants share batches fairly; a huge call graph is not followed past its bound.

use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use e2e::{TestApp, TestStack, fixture};
use serde_json::{Value, json};

use db::schema::{calls, logical_calls, webhook_events};

use crate::OUTBOUND;

/// Dialpad ids are multiples of 2^13; re-keyed legs stay on that grid.
const ID_STEP: i64 = 8192;

/// The call-center leg's id in the fixtures: the entry point its agent legs name.
const CALL_CENTER_LEG: i64 = 6_517_261_180_346_368;

/// Call `n` of the call-center lifecycle, new ids: its queued call-center leg and its ringing
/// agent leg, which names the call-center leg as its entry point.
fn call_center_call(n: i64) -> [Value; 2] {
    let mut queued = fixture("call_inbound_cc_01_queued.json");
    let mut ringing = fixture("call_inbound_cc_02_ringing.json");
    let call_center_leg = CALL_CENTER_LEG + (n + 1) * 2 * ID_STEP;
    queued["call_id"] = json!(call_center_leg);
    ringing["call_id"] = json!(call_center_leg + ID_STEP);
    ringing["entry_point_call_id"] = json!(call_center_leg);
    [queued, ringing]
}

/// Rows each table's scans have read (sequential scans' rows plus rows fetched through
/// indexes) and this backend has not yet reported: `pg_stat_xact_user_tables`. (Counts are
/// held back until a transaction ends at least a second after the last report, so they can
/// include earlier transactions: take differences within one transaction.)
#[derive(Debug, QueryableByName)]
struct RowsRead {
    #[diesel(sql_type = diesel::sql_types::Text)]
    table: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    rows: i64,
}

async fn rows_read(conn: &mut AsyncPgConnection) -> Vec<(String, i64)> {
    let rows: Vec<RowsRead> = diesel::sql_query(
        "SELECT relname::text AS table, coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) AS rows \
         FROM pg_stat_xact_user_tables WHERE relname NOT LIKE '\\_\\_%' ORDER BY relname",
    )
    .load(conn)
    .await
    .expect("transaction statistics");
    rows.into_iter().map(|r| (r.table, r.rows)).collect()
}

/// Runs one worker batch inside a transaction on `conn`, commits, and returns the rows each
/// table's scans read during the batch.
async fn rows_read_by_one_batch(
    stack: &TestStack,
    conn: &mut AsyncPgConnection,
) -> Vec<(String, i64)> {
    conn.transaction(async |conn| {
        let before = rows_read(conn).await;
        let report = stack.worker.process_batch_in(conn).await.expect("batch");
        assert!(report.done > 0, "the batch applied events: {report:?}");
        let after = rows_read(conn).await;
        Ok::<_, diesel::result::Error>(
            after
                .into_iter()
                .map(|(table, rows)| {
                    let earlier = before
                        .iter()
                        .find(|(t, _)| *t == table)
                        .map_or(0, |(_, n)| *n);
                    (table, rows - earlier)
                })
                .collect(),
        )
    })
    .await
    .expect("batch commits")
}

/// Gives the app `calls` legs of history (a third of them agent legs of a call-center leg, as
/// in real traffic) with their logical calls and one applied event each, then refreshes the
/// planner's statistics as autovacuum would have by then.
async fn seed_history(stack: &TestStack, app: &TestApp, calls: i64) {
    let app_id = app.app_id;
    for statement in [
        format!(
            "INSERT INTO calls (app_id, call_id, entry_point_call_id, state, status, started_at, \
                 ended_at, logical_call_id, event_count) \
             SELECT '{app_id}', 1099511627776 + g * {ID_STEP}, \
                 CASE WHEN g % 3 = 2 THEN 1099511627776 + (g - 1) * {ID_STEP} END, \
                 'hangup', 'completed', timestamptz '2026-01-01' + g * interval '1 minute', \
                 timestamptz '2026-01-01' + g * interval '1 minute' + interval '4 minutes', \
                 1099511627776 + (CASE WHEN g % 3 = 2 THEN g - 1 ELSE g END) * {ID_STEP}, 1 \
             FROM generate_series(1, {calls}) AS g"
        ),
        format!(
            "INSERT INTO logical_calls (app_id, logical_call_id, status, started_at, ended_at, \
                 leg_count) \
             SELECT app_id, logical_call_id, 'completed', min(started_at), max(ended_at), count(*) \
             FROM calls WHERE app_id = '{app_id}' GROUP BY app_id, logical_call_id"
        ),
        format!(
            "INSERT INTO webhook_events (app_id, kind, event_type, dialpad_id, dedupe_key, payload, \
                 status, attempts, processed_at) \
             SELECT app_id, 'call', 'hangup', call_id, 'history-' || call_id, \
                 jsonb_build_object('call_id', call_id, 'state', 'hangup', \
                     'entry_point_call_id', entry_point_call_id, \
                     'event_timestamp', 1767225600000 + id), \
                 'done', 1, now() \
             FROM calls WHERE app_id = '{app_id}'"
        ),
        "ANALYZE".to_owned(),
    ] {
        stack.run_sql(&statement).await;
    }
}

#[tokio::test]
async fn a_batch_reads_its_own_legs_not_the_tenants_history() {
    const HISTORY: i64 = 50_000;
    const NEW_CALLS: i64 = 100; // 200 new legs
    let stack = TestStack::spawn().await;
    let app = stack.create_app("call centre").await;
    seed_history(&stack, &app, HISTORY).await;
    let events: Vec<Value> = (0..NEW_CALLS).flat_map(call_center_call).collect();
    stack.post_events(&app, &events).await;

    let mut conn = stack.db.connect().await;
    let read = rows_read_by_one_batch(&stack, &mut conn).await;

    // Each new leg costs a handful of index lookups; reading the tenant's history would
    // cost 50,000 rows per table and step.
    let legs = 2 * NEW_CALLS;
    for (table, rows) in &read {
        assert!(
            *rows <= 10 * legs,
            "{table}: {rows} rows read for a batch of {legs} legs (tenant history {HISTORY}): {read:?}"
        );
    }
    let calls_read = read
        .iter()
        .find(|(t, _)| t == "calls")
        .map_or(0, |(_, n)| *n);
    // The walk looks up the legs naming the batch's legs (each call's child names its
    // parent), and never reads back the legs the batch has just written.
    assert!(
        (NEW_CALLS..legs).contains(&calls_read),
        "calls rows read: the children of the new calls, not the written legs again: {read:?}"
    );

    // And the batch was applied: each new call is one phone call of two legs.
    let (_, body) = stack
        .get_calls(&app.api_key, "?limit=1&direction=inbound")
        .await;
    assert_eq!(body["calls"][0]["leg_count"], 2, "{body}");
    let linked: i64 = calls::table
        .filter(calls::app_id.eq(app.app_id))
        .filter(calls::call_id.gt(CALL_CENTER_LEG))
        .filter(calls::logical_call_id.is_not_null())
        .count()
        .get_result(&mut conn)
        .await
        .expect("count");
    assert_eq!(linked, legs);
}

#[tokio::test]
async fn a_batch_reads_its_own_queue_entries_not_the_backlog() {
    const BACKLOG: i64 = 20_000;
    let stack = TestStack::spawn().await;
    let app = stack.create_app("backlog").await;
    // A backlog of distinct hangups (the statement triggers queue them), and statistics that
    // know of it, as the worker's start-up analysis and autovacuum give them.
    stack
        .run_sql(&format!(
            "INSERT INTO webhook_events (app_id, kind, event_type, dialpad_id, dedupe_key, payload) \
             SELECT '{app_id}', 'call', 'hangup', 1099511627776 + g * {ID_STEP}, 'backlog-' || g, \
                 jsonb_build_object('call_id', 1099511627776 + g * {ID_STEP}, 'state', 'hangup', \
                     'event_timestamp', 1767225600000 + g) \
             FROM generate_series(1, {BACKLOG}) AS g",
            app_id = app.app_id
        ))
        .await;
    stack.run_sql("ANALYZE").await;

    let mut conn = stack.db.connect().await;
    let read = rows_read_by_one_batch(&stack, &mut conn).await;

    // Claiming and completing a batch probes the queue once or twice per claimed event; a
    // scan of the backlog (as the completion trigger's join did) reads all 20,000 entries.
    let batch = i64::from(worker::Settings::new("").worker_batch_size);
    let queue_read = read
        .iter()
        .find(|(t, _)| t == "event_queue")
        .map_or(0, |(_, n)| *n);
    assert!(
        (batch..=4 * batch).contains(&queue_read),
        "event_queue: {queue_read} rows read for a batch of {batch} (backlog {BACKLOG}): {read:?}"
    );
    for (table, rows) in &read {
        assert!(
            *rows <= 10 * batch,
            "{table}: {rows} rows read for a batch of {batch} (backlog {BACKLOG}): {read:?}"
        );
    }
    let pending: i64 = webhook_events::table
        .filter(webhook_events::status.eq("pending"))
        .count()
        .get_result(&mut conn)
        .await
        .expect("count");
    assert_eq!(pending, BACKLOG - batch, "one batch was completed");
}

#[tokio::test]
async fn a_tenants_single_event_is_claimed_within_two_batches_of_anothers_backlog() {
    let stack = TestStack::spawn().await;
    let noisy = stack.create_app("noisy").await;
    let quiet = stack.create_app("quiet").await;
    // 5,000 events of 1,000 calls for the noisy tenant, queued first.
    stack.post_events(&noisy, &outbound_backlog(1_000)).await;
    stack
        .post_fixtures(&quiet, &["call_inbound_vm_01_ringing.json"])
        .await;

    let mut conn = stack.db.connect().await;
    let quiet_status = async |conn: &mut AsyncPgConnection| -> String {
        webhook_events::table
            .filter(webhook_events::app_id.eq(quiet.app_id))
            .select(webhook_events::status)
            .first(conn)
            .await
            .expect("quiet event")
    };
    let mut batches = 0;
    while quiet_status(&mut conn).await != "done" {
        let report = stack.worker.process_batch().await.expect("batch");
        assert_eq!(report.claimed, 500, "batches stay full");
        batches += 1;
        assert!(batches <= 2, "the quiet tenant waited {batches} batches");
    }
    let noisy_done: i64 = webhook_events::table
        .filter(webhook_events::app_id.eq(noisy.app_id))
        .filter(webhook_events::status.eq("done"))
        .count()
        .get_result(&mut conn)
        .await
        .expect("count");
    assert_eq!(noisy_done, 500 * batches - 1, "the backlog filled the rest");
    // The backlog still drains completely.
    stack.run_worker().await;
    assert_eq!(
        stack.events_by_status().await,
        vec![("done".to_owned(), 5_001)]
    );
}

/// The noisy tenant's outbound calls `0..calls`, five events each.
fn outbound_backlog(calls: i64) -> Vec<Value> {
    (0..calls)
        .flat_map(|n| {
            OUTBOUND.map(|name| {
                let mut event = fixture(name);
                event["call_id"] = json!(event["call_id"].as_i64().expect("call_id") + n * ID_STEP);
                event
            })
        })
        .collect()
}

#[tokio::test]
async fn a_backlogged_tenants_batch_in_progress_does_not_hold_up_an_up_to_date_tenant() {
    let stack = TestStack::spawn().await;
    let noisy = stack.create_app("noisy").await;
    let quiet = stack.create_app("quiet").await;
    // A backlog: the noisy tenant's events have waited a minute already.
    stack.post_events(&noisy, &outbound_backlog(40)).await;
    let mut conn = stack.db.connect().await;
    diesel::sql_query(
        "UPDATE webhook_events SET run_at = now() - interval '1 minute' WHERE app_id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(noisy.app_id)
    .execute(&mut conn)
    .await
    .expect("age the backlog");
    // Hold the noisy tenant's relink lock (`db::logical_calls`: class 0x4c43, the app id's
    // hash), as a slow batch relinking its calls would: the batch of the backlog stays in
    // progress until it is released. (A leg's lock would not do: a batch defers a leg another
    // holds instead of waiting.)
    const RELINK_LOCK: &str = "19523, hashtext($1::text)";
    let mut holder = stack.db.connect().await;
    diesel::sql_query(format!("SELECT pg_advisory_lock({RELINK_LOCK})"))
        .bind::<diesel::sql_types::Uuid, _>(noisy.app_id)
        .execute(&mut holder)
        .await
        .expect("hold the relink lock");

    let shutdown = tokio_util::sync::CancellationToken::new();
    let worker = worker::Worker::build(TestStack::worker_settings(&stack.db))
        .await
        .expect("worker builds");
    let running = tokio::spawn(worker.run_until_stopped(shutdown.clone()));
    let waits = async |conn: &mut AsyncPgConnection| -> i64 {
        diesel::sql_query(
            "SELECT count(*) AS n FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event = 'advisory'",
        )
        .get_result::<Count>(conn)
        .await
        .expect("lock waits")
        .n
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while waits(&mut conn).await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the backlog's batch never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }

    // The quiet tenant's new event is applied while the backlog's batch is still in progress.
    stack
        .post_fixtures(&quiet, &["call_inbound_vm_01_ringing.json"])
        .await;
    let status_of = async |conn: &mut AsyncPgConnection, app: &TestApp| -> Vec<String> {
        webhook_events::table
            .filter(webhook_events::app_id.eq(app.app_id))
            .select(webhook_events::status)
            .distinct()
            .load(conn)
            .await
            .expect("statuses")
    };
    while status_of(&mut conn, &quiet).await != ["done"] {
        assert!(
            std::time::Instant::now() < deadline,
            "the quiet tenant's event waited for the backlog"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(status_of(&mut conn, &noisy).await, ["pending"]);
    assert_eq!(
        waits(&mut conn).await,
        1,
        "the backlog's batch is still waiting"
    );

    // Released, the backlog drains.
    diesel::sql_query(format!("SELECT pg_advisory_unlock({RELINK_LOCK})"))
        .bind::<diesel::sql_types::Uuid, _>(noisy.app_id)
        .execute(&mut holder)
        .await
        .expect("release the relink lock");
    while stack.events_by_status().await != vec![("done".to_owned(), 201)] {
        assert!(
            std::time::Instant::now() < deadline,
            "the backlog did not drain"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    shutdown.cancel();
    running
        .await
        .expect("worker task")
        .expect("worker stops cleanly");
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

#[tokio::test]
async fn a_call_graph_past_the_bound_still_applies_every_event_but_is_not_followed_further() {
    const LEGS: i64 = 2_000;
    let stack = TestStack::spawn().await;
    let app = stack.create_app("huge graph").await;
    // One call-center leg, and 2,000 agent legs naming it as their entry point.
    let mut events = vec![fixture("call_inbound_cc_01_queued.json")];
    events.extend((1..=LEGS).map(|n| {
        let mut leg = fixture("call_inbound_cc_02_ringing.json");
        leg["call_id"] = json!(CALL_CENTER_LEG + n * ID_STEP);
        leg
    }));
    stack.post_events(&app, &events).await;
    stack.run_worker().await;

    assert_eq!(
        stack.events_by_status().await,
        vec![("done".to_owned(), LEGS + 1)],
        "every event applied"
    );
    let (_, legs) = stack.get_calls(&app.api_key, "?view=legs&limit=1").await;
    assert_eq!(legs["total"], LEGS + 1);
    let mut conn = stack.db.connect().await;
    let linked: i64 = calls::table
        .filter(calls::logical_call_id.eq(CALL_CENTER_LEG))
        .count()
        .get_result(&mut conn)
        .await
        .expect("count");
    assert_eq!(
        linked,
        LEGS + 1,
        "every leg belongs to the call-center call"
    );
    let (leg_count, truncated): (i32, bool) = logical_calls::table
        .filter(logical_calls::logical_call_id.eq(CALL_CENTER_LEG))
        .select((logical_calls::leg_count, logical_calls::graph_truncated))
        .first(&mut conn)
        .await
        .expect("the logical call");
    assert!(truncated, "flagged as cut at the bound");
    // Aggregated from the legs read: the bound's worth, plus the batch's own legs.
    assert!(
        (1_000..=1_001 + 500).contains(&leg_count),
        "leg_count {leg_count}"
    );

    // One more leg: the walk reads about the bound's worth of the 2,000, not all of them.
    let mut leg = fixture("call_inbound_cc_02_ringing.json");
    leg["call_id"] = json!(CALL_CENTER_LEG + (LEGS + 1) * ID_STEP);
    stack.post_events(&app, &[leg]).await;
    let read = rows_read_by_one_batch(&stack, &mut conn).await;
    let calls_read = read
        .iter()
        .find(|(t, _)| t == "calls")
        .map_or(0, |(_, n)| *n);
    assert!(
        calls_read <= 1_100,
        "{calls_read} legs read for one new leg of a {LEGS}-leg graph: {read:?}"
    );
}

#[derive(QueryableByName)]
struct Updates {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    updated: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    hot: i64,
}

#[tokio::test]
async fn completing_events_is_a_hot_update_that_adds_no_index_entry_to_the_event_log() {
    let stack = TestStack::spawn().await;
    let app = stack.create_app("hot").await;
    stack.post_events(&app, &outbound_backlog(40)).await;
    let mut conn = stack.db.connect().await;
    let updates = async |conn: &mut AsyncPgConnection| -> Updates {
        diesel::sql_query(
            "SELECT n_tup_upd AS updated, n_tup_hot_upd AS hot FROM pg_stat_xact_user_tables \
             WHERE relname = 'webhook_events'",
        )
        .get_result(conn)
        .await
        .expect("update statistics")
    };
    let (updated, hot) = conn
        .transaction(async |conn| {
            let before = updates(conn).await;
            let report = stack.worker.process_batch_in(conn).await.expect("batch");
            assert_eq!(report.done, 200);
            let after = updates(conn).await;
            Ok::<_, diesel::result::Error>((after.updated - before.updated, after.hot - before.hot))
        })
        .await
        .expect("batch commits");
    assert_eq!(updated, 200, "one update per completed event");
    // HOT (heap-only) needs no index naming a changed column (with an index on `status`, even
    // a partial one, none would be), and room in the event's page for the new versions of all
    // its rows, which one statement completes together: fillfactor 50 leaves it for the
    // fixtures' realistic 1-2 KB payloads (at 80, about half were not HOT).
    assert_eq!(
        hot, updated,
        "every completion is a HOT update: none adds an entry to an index of webhook_events"
    );
}
