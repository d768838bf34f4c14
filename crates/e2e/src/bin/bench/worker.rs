//! `bench worker`, `bench latency`, `bench fairness`: the worker under traffic of the real shape
//! (see the binary's docs), each run on a fresh copy of a database seeded with history.

use std::collections::{BTreeMap, HashSet};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use diesel::sql_types::{Array, BigInt, Integer};
use diesel_async::AsyncPgConnection;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use db::queue::NewWebhookEvent;
use e2e::sign;

use crate::common::{
    DIALPAD_ID_STEP, DoneProbe, ID_FIELDS, LEG_ID_BASE, LEG_SLOTS, Lifecycles, MIX, Observed, RUNS,
    ScratchDatabase, TIME_FIELDS, TRAFFIC_START_MS, TrafficEvent, median, new_app, percentile,
    spread, thousands,
};

/// The large tenant's webhook secret.
const LARGE_SECRET: &str = "bench-large-tenant-webhook-secret";
/// Every small tenant's webhook secret.
const SMALL_SECRET: &str = "bench-small-tenant-webhook-secret";
/// Small tenants beside the large one.
const SMALL_TENANTS: usize = 99;
/// Calls of history each small tenant holds.
const SMALL_HISTORY: usize = 1_000;
/// Each tenant's history is spread evenly over the year before the traffic starts.
const HISTORY_SPAN_MS: i64 = 365 * 24 * 3_600_000;
/// Events kept per history leg: its last ones (2.6 per leg on average).
const HISTORY_EVENTS_PER_LEG: usize = 3;
/// Call numbers of generated traffic start here (history calls are numbered from 0).
const TRAFFIC_FIRST_CALL: u64 = 1 << 31;
/// Call numbers of the quiet tenant's traffic in `bench fairness`.
const QUIET_FIRST_CALL: u64 = 3 << 30;
/// Rows per insert statement when queueing a backlog.
const QUEUE_CHUNK: usize = 2_000;
/// How long the latency probe waits, after the last webhook, for the events still pending.
const PATIENCE: Duration = Duration::from_secs(30);

/// The tenants of every seeded database (the same ids in every copy).
#[derive(Debug, Clone)]
struct Tenants {
    /// The call centre: most of the traffic and of the history.
    large: Uuid,
    small: Vec<Uuid>,
}

impl Tenants {
    /// Call `n`'s tenant when 90% of the calls are the large tenant's and the rest are spread
    /// over the small ones.
    fn mostly_large(&self, call: u64) -> Uuid {
        let hash = spread(call);
        if hash.is_multiple_of(10) {
            self.small[((hash / 10) % self.small.len() as u64) as usize]
        } else {
            self.large
        }
    }

    /// The small tenant holding the fixture calls that seeded history copies.
    fn prototype(&self) -> Uuid {
        self.small[0]
    }

    /// The quiet tenant of `bench fairness`.
    fn quiet(&self) -> Uuid {
        self.small[self.small.len() - 1]
    }

    /// Every tenant, the large one first.
    fn all(&self) -> Vec<Uuid> {
        std::iter::once(self.large)
            .chain(self.small.iter().copied())
            .collect()
    }
}

/// A database seeded with history, copied for each run.
#[derive(Debug)]
struct Template {
    db: ScratchDatabase,
    tenants: Tenants,
}

/// The seeded templates by history size: each seeded once per process, when first needed, and
/// dropped with this value.
#[derive(Debug)]
pub struct Templates {
    lifecycles: Arc<Lifecycles>,
    seeded: BTreeMap<usize, Template>,
    swept: bool,
    copies: usize,
}

impl Templates {
    pub fn new() -> anyhow::Result<Templates> {
        Ok(Templates {
            lifecycles: Arc::new(Lifecycles::load()?),
            seeded: BTreeMap::new(),
            swept: false,
            copies: 0,
        })
    }

    async fn template(&mut self, history: usize) -> anyhow::Result<&Template> {
        if !self.swept {
            for name in ScratchDatabase::sweep().await? {
                println!("dropped {name}, left by an earlier run");
            }
            self.swept = true;
        }
        if !self.seeded.contains_key(&history) {
            let template = seed(&self.lifecycles, history).await?;
            self.seeded.insert(history, template);
        }
        self.seeded.get(&history).context("seeded")
    }

    /// A fresh copy of the template of `history`, and its tenants.
    async fn copy(&mut self, history: usize) -> anyhow::Result<(ScratchDatabase, Tenants)> {
        self.copies += 1;
        let suffix = format!("run_{}", self.copies);
        let template = self.template(history).await?;
        let started = Instant::now();
        let db = template.db.clone_as(&suffix).await?;
        println!(
            "  copied the history {} template in {:.1?}",
            thousands(history),
            started.elapsed()
        );
        Ok((db, template.tenants.clone()))
    }

    /// Drops every template.
    pub fn drop_all(&mut self) {
        self.seeded.clear();
    }
}

/// Seeds a template: 100 tenants, the large one with `history` calls, each small one with
/// [`SMALL_HISTORY`]; their legs (`calls`), phone calls (`logical_calls`), voicemails and
/// applied events (`webhook_events`, `done`), one `INSERT … SELECT … FROM generate_series` per
/// table ([`history_statements`]); then what autovacuum would have done by then.
async fn seed(lifecycles: &Lifecycles, history: usize) -> anyhow::Result<Template> {
    use diesel_async::RunQueryDsl;
    println!(
        "history {}: seeding a template: the large tenant {} calls, {SMALL_TENANTS} small tenants {} calls each",
        thousands(history),
        thousands(history),
        thousands(SMALL_HISTORY),
    );
    let started = Instant::now();
    let db = ScratchDatabase::create(&format!("tpl_{history}"), "").await?;
    db::migrations::run_migrations(db.url()).await?;
    let mut conn = db.connect().await?;
    let large = new_app(&mut conn, "large call centre", LARGE_SECRET).await?;
    let mut small = Vec::with_capacity(SMALL_TENANTS);
    for n in 0..SMALL_TENANTS {
        small.push(new_app(&mut conn, &format!("small {n}"), SMALL_SECRET).await?);
    }
    let tenants = Tenants { large, small };
    apply_prototype(&db, &mut conn, lifecycles, tenants.prototype()).await?;

    create_functions(&mut conn, lifecycles).await?;
    let leg_lifecycles: Vec<i32> = lifecycles
        .fixture_leg_lifecycles()
        .iter()
        .map(|&n| i32::try_from(n))
        .collect::<Result<_, _>>()?;
    for (what, statement) in history_statements(history) {
        let step = Instant::now();
        let rows = diesel::sql_query(statement)
            .bind::<Array<diesel::sql_types::Uuid>, _>(tenants.all())
            .bind::<Array<BigInt>, _>(lifecycles.fixture_legs())
            .bind::<Array<Integer>, _>(&leg_lifecycles)
            .bind::<Array<BigInt>, _>(lifecycles.fixture_starts())
            .bind::<diesel::sql_types::Uuid, _>(tenants.prototype())
            .execute(&mut conn)
            .await
            .with_context(|| format!("seeding {what}"))?;
        println!("  {} {what} in {:.1?}", thousands(rows), step.elapsed());
    }
    // As autovacuum would have by then: statistics, hint bits and the visibility map; then a
    // checkpoint, so that writing out the seed does not land in the measurements.
    for statement in ["VACUUM ANALYZE", "CHECKPOINT"] {
        let step = Instant::now();
        diesel::sql_query(statement).execute(&mut conn).await?;
        println!("  {statement} in {:.1?}", step.elapsed());
    }
    drop(conn);
    println!(
        "history {}: template seeded in {:.1?}, {:.2} GB on disk",
        thousands(history),
        started.elapsed(),
        db.size().await? as f64 / 1e9
    );
    Ok(Template { db, tenants })
}

/// The prototype of seeded history: the fixture calls queued for `app_id` and applied by the
/// real worker, so the rows history copies have every column as the worker sets it.
async fn apply_prototype(
    db: &ScratchDatabase,
    conn: &mut AsyncPgConnection,
    lifecycles: &Lifecycles,
    app_id: Uuid,
) -> anyhow::Result<()> {
    use diesel_async::RunQueryDsl;
    let events: Vec<NewWebhookEvent> = lifecycles
        .fixture_events()
        .map(|event| {
            let Value::Object(event) = event.clone() else {
                unreachable!("fixtures are objects")
            };
            NewWebhookEvent::from_verified(Some(app_id), event)
        })
        .collect();
    diesel::insert_into(db::schema::webhook_events::table)
        .values(&events)
        .execute(conn)
        .await?;
    let applied = worker::Worker::build(worker::Settings::new(db.url()))
        .await?
        .drain()
        .await?;
    anyhow::ensure!(
        applied.done == events.len(),
        "prototype applied {applied:?}"
    );
    Ok(())
}

/// The session's SQL twins of [`Lifecycles`]: `pg_temp.bench_leg_id(call, fixture_leg)`, the id
/// a fixture leg takes in history call `call`, and `pg_temp.bench_lifecycle(call)`, the
/// lifecycle (index into the fixture lifecycles) that call follows.
async fn create_functions(
    conn: &mut AsyncPgConnection,
    lifecycles: &Lifecycles,
) -> anyhow::Result<()> {
    use diesel_async::RunQueryDsl;
    let list = |values: &[i64]| {
        values
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    let mix: Vec<i64> = MIX.iter().map(|&n| n as i64).collect();
    for function in [
        format!(
            "CREATE FUNCTION pg_temp.bench_leg_id(call bigint, fixture_leg bigint) RETURNS bigint \
             LANGUAGE sql IMMUTABLE AS $$ SELECT {LEG_ID_BASE} + (call * {LEG_SLOTS} \
             + array_position('{{{}}}'::bigint[], fixture_leg) - 1) * {DIALPAD_ID_STEP} $$",
            list(lifecycles.fixture_legs())
        ),
        format!(
            "CREATE FUNCTION pg_temp.bench_lifecycle(call bigint) RETURNS int \
             LANGUAGE sql IMMUTABLE AS $$ SELECT ('{{{}}}'::int[])[call % 10 + 1] $$",
            list(&mix)
        ),
    ] {
        diesel::sql_query(function).execute(conn).await?;
    }
    Ok(())
}

/// The seeding statements, one per table, each with what it seeds. Each history call copies
/// the prototype rows of its lifecycle with every leg id re-keyed and every time moved; the
/// calls are numbered from 0 (the large tenant's first, then [`SMALL_HISTORY`] per small
/// tenant) and are bound to: `$1` the tenants (the large one first), `$2` the fixture legs
/// and `$3` their lifecycles, `$4` each lifecycle's start in its fixtures, `$5` the prototype's
/// tenant.
fn history_statements(history: usize) -> [(&'static str, String); 4] {
    let total = history + SMALL_TENANTS * SMALL_HISTORY;
    let large_calls = history.max(1);
    // Call g < history is the large tenant's; then SMALL_HISTORY calls per small tenant. Each
    // tenant's calls are evenly spread over the year before TRAFFIC_START_MS; `shift_ms` moves
    // the call's fixture to its start.
    let with = format!(
        "WITH history AS ( \
             SELECT call, lifecycle, app_id, shift_ms, shift_ms * interval '1 millisecond' AS shift \
             FROM ( \
                 SELECT g AS call, pg_temp.bench_lifecycle(g) AS lifecycle, \
                     CASE WHEN g < {history} THEN $1[1] ELSE $1[2 + (g - {history}) / {SMALL_HISTORY}] END AS app_id, \
                     {TRAFFIC_START_MS} - CASE WHEN g < {history} \
                         THEN ({history} - g) * {HISTORY_SPAN_MS} / {large_calls} \
                         ELSE ({SMALL_HISTORY} - (g - {history}) % {SMALL_HISTORY}) * {HISTORY_SPAN_MS} / {SMALL_HISTORY} END \
                     - $4[pg_temp.bench_lifecycle(g) + 1] AS shift_ms \
                 FROM generate_series(0::bigint, {total}::bigint - 1) AS g \
             ) AS h \
         ), \
         legs AS (SELECT * FROM unnest($2::bigint[], $3::int[]) AS l (fixture_leg, lifecycle)), "
    );
    let id = |column: &str| format!("pg_temp.bench_leg_id(h.call, p.{column})");
    [
        (
            "legs (calls)",
            format!(
                "{with} prototype AS MATERIALIZED ( \
                     SELECT l.lifecycle, p.* FROM legs l JOIN calls p \
                     ON p.app_id = $5 AND p.call_id = l.fixture_leg) \
                 INSERT INTO calls (app_id, call_id, master_call_id, entry_point_call_id, \
                     operator_call_id, logical_call_id, direction, from_number, to_number, \
                     external_number, internal_number, state, status, started_at, rang_at, \
                     queued_at, connected_at, ended_at, duration_ms, total_duration_ms, \
                     talk_time_ms, hold_time_ms, was_recorded, is_transferred, mos_score, \
                     recording_url, voicemail_link, transcription_text, target_id, target, \
                     contact, custom_data, event_count, last_event_at, created_at, updated_at, \
                     voicemail_recording_id, voicemail_duration_ms, recording_id, recap_summary, \
                     recap_outcome, recap_action_items, recap_purposes, transferred_from) \
                 SELECT h.app_id, {}, {}, {}, {}, {}, p.direction, p.from_number, p.to_number, \
                     p.external_number, p.internal_number, p.state, p.status, \
                     p.started_at + h.shift, p.rang_at + h.shift, p.queued_at + h.shift, \
                     p.connected_at + h.shift, p.ended_at + h.shift, p.duration_ms, \
                     p.total_duration_ms, p.talk_time_ms, p.hold_time_ms, p.was_recorded, \
                     p.is_transferred, p.mos_score, p.recording_url, p.voicemail_link, \
                     p.transcription_text, p.target_id, p.target, p.contact, p.custom_data, \
                     p.event_count, p.last_event_at + h.shift, p.last_event_at + h.shift, \
                     p.last_event_at + h.shift, p.voicemail_recording_id, \
                     p.voicemail_duration_ms, p.recording_id, p.recap_summary, p.recap_outcome, \
                     p.recap_action_items, p.recap_purposes, p.transferred_from \
                 FROM history h JOIN prototype p USING (lifecycle)",
                id("call_id"),
                id("master_call_id"),
                id("entry_point_call_id"),
                id("operator_call_id"),
                id("logical_call_id"),
            ),
        ),
        (
            "phone calls (logical_calls)",
            format!(
                "{with} prototype AS MATERIALIZED ( \
                     SELECT l.lifecycle, p.* FROM legs l JOIN logical_calls p \
                     ON p.app_id = $5 AND p.logical_call_id = l.fixture_leg) \
                 INSERT INTO logical_calls (app_id, logical_call_id, status, direction, \
                     from_number, to_number, started_at, answered_at, ended_at, talk_time_ms, \
                     hold_time_ms, duration_ms, total_duration_ms, transferred, \
                     first_answered_by, final_handler, voicemail, was_recorded, contact, target, \
                     leg_count, last_event_at, created_at, updated_at) \
                 SELECT h.app_id, {}, p.status, p.direction, p.from_number, p.to_number, \
                     p.started_at + h.shift, p.answered_at + h.shift, p.ended_at + h.shift, \
                     p.talk_time_ms, p.hold_time_ms, p.duration_ms, p.total_duration_ms, \
                     p.transferred, p.first_answered_by, p.final_handler, p.voicemail, \
                     p.was_recorded, p.contact, p.target, p.leg_count, p.last_event_at + h.shift, \
                     p.last_event_at + h.shift, p.last_event_at + h.shift \
                 FROM history h JOIN prototype p USING (lifecycle)",
                id("logical_call_id"),
            ),
        ),
        (
            "voicemails",
            format!(
                "{with} prototype AS MATERIALIZED ( \
                     SELECT l.lifecycle, p.* FROM legs l JOIN voicemails p \
                     ON p.app_id = $5 AND p.call_id = l.fixture_leg) \
                 INSERT INTO voicemails (app_id, call_id, logical_call_id, from_number, \
                     to_number, contact, target, duration_ms, link, recording_id, \
                     transcription_text, left_at, created_at, updated_at) \
                 SELECT h.app_id, {}, {}, p.from_number, p.to_number, p.contact, p.target, \
                     p.duration_ms, p.link, p.recording_id, p.transcription_text, \
                     p.left_at + h.shift, p.left_at + h.shift, p.left_at + h.shift \
                 FROM history h JOIN prototype p USING (lifecycle)",
                id("call_id"),
                id("logical_call_id"),
            ),
        ),
        (
            "applied events (webhook_events, done)",
            format!(
                "{with} prototype AS MATERIALIZED ( \
                     SELECT l.lifecycle, e.* FROM legs l CROSS JOIN LATERAL ( \
                         SELECT * FROM webhook_events e \
                         WHERE e.app_id = $5 AND e.kind = 'call' AND e.dialpad_id = l.fixture_leg \
                         ORDER BY e.event_timestamp DESC LIMIT {HISTORY_EVENTS_PER_LEG}) AS e) \
                 INSERT INTO webhook_events (app_id, kind, event_type, dialpad_id, \
                     event_timestamp, dedupe_key, payload, status, attempts, run_at, \
                     received_at, processed_at) \
                 SELECT h.app_id, p.kind, p.event_type, {}, p.event_timestamp + h.shift, \
                     encode(sha256(convert_to(p.dedupe_key || ':' || h.call, 'UTF8')), 'hex'), \
                     n.payload, \
                     p.status, p.attempts, p.event_timestamp + h.shift, \
                     p.event_timestamp + h.shift, \
                     p.event_timestamp + h.shift + interval '20 milliseconds' \
                 FROM history h JOIN prototype p USING (lifecycle) \
                 CROSS JOIN LATERAL (SELECT p.payload || jsonb_build_object({}) AS payload) AS n",
                id("dialpad_id"),
                ID_FIELDS
                    .iter()
                    .map(|f| format!(
                        "'{f}', pg_temp.bench_leg_id(h.call, (p.payload->>'{f}')::bigint)"
                    ))
                    .chain(
                        TIME_FIELDS
                            .iter()
                            .map(|f| format!("'{f}', (p.payload->>'{f}')::bigint + h.shift_ms"))
                    )
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
        ),
    ]
}

/// Queues `traffic` as pending events, the rows ingest would have stored ([`QUEUE_CHUNK`] a
/// statement); the range of their ids.
async fn queue(
    conn: &mut AsyncPgConnection,
    lifecycles: &Lifecycles,
    traffic: &[TrafficEvent],
) -> anyhow::Result<RangeInclusive<i64>> {
    use db::schema::webhook_events::dsl as e;
    use diesel_async::RunQueryDsl;
    let (mut first, mut last) = (i64::MAX, i64::MIN);
    for chunk in traffic.chunks(QUEUE_CHUNK) {
        let rows: Vec<NewWebhookEvent> = chunk
            .iter()
            .map(|event| {
                let Value::Object(payload) = lifecycles.event(event) else {
                    unreachable!("fixtures are objects")
                };
                NewWebhookEvent::from_verified(Some(event.app_id), payload)
            })
            .collect();
        let ids: Vec<i64> = diesel::insert_into(db::schema::webhook_events::table)
            .values(&rows)
            .returning(e::id)
            .get_results(conn)
            .await?;
        first = ids.iter().copied().fold(first, i64::min);
        last = ids.iter().copied().fold(last, i64::max);
    }
    Ok(first..=last)
}

/// The distinct legs each batch of `traffic` (in queue order) touches: the first batch's, and
/// the mean over full batches.
fn legs_per_batch(lifecycles: &Lifecycles, traffic: &[TrafficEvent], batch: usize) -> (usize, f64) {
    let counts: Vec<usize> = traffic
        .chunks_exact(batch)
        .map(|events| {
            events
                .iter()
                .map(|event| lifecycles.leg_of(event))
                .collect::<HashSet<_>>()
                .len()
        })
        .collect();
    let mean = counts.iter().sum::<usize>() as f64 / counts.len().max(1) as f64;
    (counts.first().copied().unwrap_or_default(), mean)
}

/// How many events of `ids` are no longer pending.
async fn processed(
    conn: &mut AsyncPgConnection,
    ids: &RangeInclusive<i64>,
) -> anyhow::Result<usize> {
    use db::schema::webhook_events::dsl as e;
    use diesel::{ExpressionMethods, QueryDsl};
    use diesel_async::RunQueryDsl;
    let pending: i64 = db::schema::webhook_events::table
        .filter(e::id.between(*ids.start(), *ids.end()))
        .filter(e::status.eq("pending"))
        .count()
        .get_result(conn)
        .await?;
    Ok(usize::try_from(*ids.end() - *ids.start() + 1 - pending)?)
}

/// Polls every 10 ms until no event of `ids` is pending (true), or until `deadline` (false).
async fn wait_drained(
    conn: &mut AsyncPgConnection,
    ids: &RangeInclusive<i64>,
    deadline: Instant,
) -> anyhow::Result<bool> {
    use db::schema::webhook_events::dsl as e;
    use diesel::{ExpressionMethods, OptionalExtension, QueryDsl};
    use diesel_async::RunQueryDsl;
    loop {
        let pending: Option<i64> = db::schema::webhook_events::table
            .filter(e::id.between(*ids.start(), *ids.end()))
            .filter(e::status.eq("pending"))
            .select(e::id)
            .first(conn)
            .await
            .optional()?;
        if pending.is_none() {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An in-process ingest on `url`; the base URL of its tenant routes.
async fn start_ingest(url: &str, stop: &CancellationToken) -> anyhow::Result<String> {
    let server = ingest::build(e2e::ingest_settings(url)).await?;
    let base = format!("http://127.0.0.1:{}/webhooks/dialpad", server.port());
    tokio::spawn(server.run_until_stopped(stop.clone().cancelled_owned()));
    Ok(base)
}

/// Stops ingest and a `run_until_stopped` worker; the worker finishes its batch in hand, unless
/// that takes over 5 s (then it is abandoned, and its batch rolled back).
async fn stop_worker(
    stop: &CancellationToken,
    mut worker: tokio::task::JoinHandle<anyhow::Result<()>>,
) -> anyhow::Result<()> {
    stop.cancel();
    match tokio::time::timeout(Duration::from_secs(5), &mut worker).await {
        Ok(stopped) => stopped?,
        Err(_) => {
            worker.abort();
            Ok(())
        }
    }
}

/// Part 1: drain rate against each history size. See the binary's docs.
pub async fn bench_worker(
    templates: &mut Templates,
    events: usize,
    histories: &[usize],
    max_drain: Duration,
) -> anyhow::Result<()> {
    let lifecycles = Arc::clone(&templates.lifecycles);
    let batch = worker::Settings::new("").worker_batch_size as usize;
    let mut medians = Vec::with_capacity(histories.len());
    for &history in histories {
        let shape = format!(
            "history {} calls (large tenant) + {SMALL_TENANTS} x {}",
            thousands(history),
            thousands(SMALL_HISTORY)
        );
        let mut rates = Vec::with_capacity(RUNS);
        for run in 1..=RUNS {
            let (db, tenants) = templates.copy(history).await?;
            let traffic = lifecycles.traffic(TRAFFIC_FIRST_CALL, events, |call| {
                tenants.mostly_large(call)
            });
            if run == 1 {
                let (first, mean) = legs_per_batch(&lifecycles, &traffic, batch);
                let large = traffic.iter().filter(|e| e.app_id == tenants.large).count();
                println!(
                    "worker, {shape}: backlog of {} interleaved events ({:.0}% the large tenant's): the first batch of {batch} touches {first} legs (mean {mean:.0})",
                    thousands(events),
                    100.0 * large as f64 / events.max(1) as f64,
                );
            }
            let mut conn = db.connect().await?;
            let queued = Instant::now();
            let ids = queue(&mut conn, &lifecycles, &traffic).await?;
            let queued = queued.elapsed();

            let worker = worker::Worker::build(worker::Settings::new(db.url())).await?;
            let started = Instant::now();
            let deadline = started + max_drain;
            let mut done = 0;
            let mut batches = Vec::new();
            // `Worker::drain`, batch by batch, so that a slow drain can be stopped (a batch cut
            // short rolls back).
            loop {
                let at = Instant::now();
                let Ok(report) =
                    tokio::time::timeout_at(deadline.into(), worker.process_batch()).await
                else {
                    break;
                };
                let report = report?;
                if report.claimed == 0 {
                    break;
                }
                batches.push(at.elapsed());
                done += report.done;
            }
            let elapsed = started.elapsed();
            let drained = processed(&mut conn, &ids).await?;
            anyhow::ensure!(drained == done, "{done} done, {drained} processed");
            let rate = done as f64 / elapsed.as_secs_f64();
            batches.sort();
            let cap = if done < events {
                format!(
                    " CAPPED at {max_drain:.0?}: {} of {} done",
                    thousands(done),
                    thousands(events)
                )
            } else {
                String::new()
            };
            let batch_times = match batches.last() {
                Some(max) => format!(
                    "{} batches, p50 {:.0?}, max {max:.0?}",
                    batches.len(),
                    percentile(&batches, 0.5)
                ),
                None => "no batch finished".to_owned(),
            };
            println!(
                "worker run {run}, {shape}: queued in {queued:.1?}, drained in {elapsed:.1?}{cap}: {rate:.0} events/s ({batch_times})"
            );
            rates.push(rate);
        }
        let rate = median(rates);
        println!("worker median of {RUNS}, {shape}: {rate:.0} events/s");
        medians.push((history, rate));
    }
    println!(
        "worker drain rate vs history (median of {RUNS}; one worker, batch {batch}; {} interleaved events, 90% the large tenant's):",
        thousands(events)
    );
    for (history, rate) in medians {
        println!(
            "  large tenant with {:>9} calls of history: {rate:>7.0} events/s",
            thousands(history)
        );
    }
    Ok(())
}

/// p50, p99 and max of `observed`, counting events never seen `done` at their wait so far
/// (a lower bound); and how many those were.
fn summarize(observed: &Observed) -> (Duration, Duration, Duration, usize) {
    let mut all: Vec<Duration> = observed
        .latencies
        .iter()
        .chain(&observed.unfinished)
        .copied()
        .collect();
    all.sort();
    if all.is_empty() {
        return (Duration::ZERO, Duration::ZERO, Duration::ZERO, 0);
    }
    (
        percentile(&all, 0.50),
        percentile(&all, 0.99),
        all.last().copied().unwrap_or_default(),
        observed.unfinished.len(),
    )
}

fn unfinished_note(unfinished: usize) -> String {
    if unfinished == 0 {
        String::new()
    } else {
        format!(
            " ({unfinished} never done within {PATIENCE:.0?} of the last webhook: counted at their wait so far)"
        )
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// Part 2: end-to-end latency right after a backlog. See the binary's docs.
pub async fn bench_latency(
    templates: &mut Templates,
    backlog: usize,
    rate: usize,
    seconds: usize,
    history: usize,
    max_drain: Duration,
) -> anyhow::Result<()> {
    let lifecycles = Arc::clone(&templates.lifecycles);
    let live = rate * seconds;
    let shape = format!(
        "history {} calls, backlog {} events, then {} webhooks at {rate}/s (all the large tenant's, interleaved)",
        thousands(history),
        thousands(backlog),
        thousands(live)
    );
    let (mut p50s, mut p99s, mut maxes) = (Vec::new(), Vec::new(), Vec::new());
    for run in 1..=RUNS {
        let (db, tenants) = templates.copy(history).await?;
        // One stream: the live webhooks are what Dialpad sends next, later events of the
        // backlog's calls among them.
        let traffic = lifecycles.traffic(TRAFFIC_FIRST_CALL, backlog + live, |_| tenants.large);
        let mut conn = db.connect().await?;
        let ids = queue(&mut conn, &lifecycles, &traffic[..backlog]).await?;
        let bodies: Vec<String> = traffic[backlog..]
            .iter()
            .map(|event| sign(&lifecycles.event(event), LARGE_SECRET))
            .collect();

        let stop = CancellationToken::new();
        let url = format!("{}/{}", start_ingest(db.url(), &stop).await?, tenants.large);
        let worker = worker::Worker::build(worker::Settings::new(db.url())).await?;
        let started = Instant::now();
        let worker = tokio::spawn(worker.run_until_stopped(stop.clone()));
        let drained = wait_drained(&mut conn, &ids, started + max_drain).await?;
        let elapsed = started.elapsed();
        let done = processed(&mut conn, &ids).await?;
        let drain = format!(
            "backlog {} in {elapsed:.1?} ({:.0} events/s)",
            if drained { "drained" } else { "NOT drained" },
            done as f64 / elapsed.as_secs_f64()
        );

        let probe = DoneProbe::start(db.url()).await?;
        let sent = probe
            .send_paced(&url, &bodies, rate as f64, &CancellationToken::new())
            .await?;
        probe.wait_for(sent, PATIENCE).await;
        let observed = probe.finish().await?;
        stop_worker(&stop, worker).await?;
        let (p50, p99, max, unfinished) = summarize(&observed);
        println!(
            "latency run {run}: {drain}; then ingest 200 -> done p50 {p50:.2?}, p99 {p99:.2?}, max {max:.2?}{}",
            unfinished_note(unfinished)
        );
        p50s.push(ms(p50));
        p99s.push(ms(p99));
        maxes.push(ms(max));
    }
    println!(
        "latency median of {RUNS}, {shape}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        median(p50s),
        median(p99s),
        median(maxes)
    );
    Ok(())
}

/// Part 3: a quiet tenant's latency while another tenant's backlog drains. See the binary's
/// docs.
pub async fn bench_fairness(
    templates: &mut Templates,
    backlog: usize,
    quiet_rate: usize,
    max_seconds: usize,
    history: usize,
) -> anyhow::Result<()> {
    let lifecycles = Arc::clone(&templates.lifecycles);
    let window = Duration::from_secs(max_seconds as u64);
    let shape = format!(
        "history {} calls, noisy backlog {} events (the large tenant's), quiet tenant {quiet_rate} webhooks/s",
        thousands(history),
        thousands(backlog)
    );
    let (mut p50s, mut p99s, mut rates) = (Vec::new(), Vec::new(), Vec::new());
    for run in 1..=RUNS {
        let (db, tenants) = templates.copy(history).await?;
        let noisy = lifecycles.traffic(TRAFFIC_FIRST_CALL, backlog, |_| tenants.large);
        let mut conn = db.connect().await?;
        let ids = queue(&mut conn, &lifecycles, &noisy).await?;
        let quiet_bodies: Vec<String> = lifecycles
            .traffic(QUIET_FIRST_CALL, quiet_rate * max_seconds, |_| {
                tenants.quiet()
            })
            .iter()
            .map(|event| sign(&lifecycles.event(event), SMALL_SECRET))
            .collect();

        let stop = CancellationToken::new();
        let url = format!(
            "{}/{}",
            start_ingest(db.url(), &stop).await?,
            tenants.quiet()
        );
        let probe = DoneProbe::start(db.url()).await?;
        let worker = worker::Worker::build(worker::Settings::new(db.url())).await?;
        let started = Instant::now();
        let worker = tokio::spawn(worker.run_until_stopped(stop.clone()));
        let stop_sending = CancellationToken::new();
        let (sent, drained) = tokio::join!(
            probe.send_paced(&url, &quiet_bodies, quiet_rate as f64, &stop_sending),
            async {
                let drained = wait_drained(&mut conn, &ids, started + window).await;
                stop_sending.cancel();
                drained
            }
        );
        let (sent, drained) = (sent?, drained?);
        let elapsed = started.elapsed();
        let done = processed(&mut conn, &ids).await?;
        probe.wait_for(sent, PATIENCE).await;
        let observed = probe.finish().await?;
        stop_worker(&stop, worker).await?;
        let rate = done as f64 / elapsed.as_secs_f64();
        let (p50, p99, _, unfinished) = summarize(&observed);
        println!(
            "fairness run {run}: noisy backlog {} in {elapsed:.1?} ({} events, {rate:.0}/s); quiet tenant: {sent} webhooks, ingest 200 -> done p50 {p50:.2?}, p99 {p99:.2?}{}",
            if drained { "drained" } else { "NOT drained" },
            thousands(done),
            unfinished_note(unfinished)
        );
        p50s.push(ms(p50));
        p99s.push(ms(p99));
        rates.push(rate);
    }
    println!(
        "fairness median of {RUNS}, {shape}: quiet p50 {:.2} ms, p99 {:.2} ms; noisy drain {:.0} events/s",
        median(p50s),
        median(p99s),
        median(rates)
    );
    Ok(())
}
