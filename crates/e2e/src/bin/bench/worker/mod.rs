//! `bench worker`, `bench latency`, `bench fairness`: the worker under traffic of the real shape
//! (see the binary's docs), each run on a fresh copy of a database seeded with history.

mod drain;
mod fairness;
mod latency;
mod seed;
mod sql_drain;

pub use drain::bench_worker;
pub use fairness::bench_fairness;
pub use latency::bench_latency;
pub use seed::Templates;

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
///
/// Each poll resumes at the first pending event the last one found: the events before it are
/// done (an event leaves `pending` only for good, unless an operator replays it). Rescanning
/// them from the start of the range (a primary-key range read, filtered by status) cost the
/// database ~60 ms per poll late in a 100,000-event drain: most of a core, taken from the
/// worker being measured.
async fn wait_drained(
    conn: &mut AsyncPgConnection,
    ids: &RangeInclusive<i64>,
    deadline: Instant,
) -> anyhow::Result<bool> {
    use db::schema::webhook_events::dsl as e;
    use diesel::{ExpressionMethods, OptionalExtension, QueryDsl};
    use diesel_async::RunQueryDsl;
    let mut from = *ids.start();
    loop {
        let pending: Option<i64> = db::schema::webhook_events::table
            .filter(e::id.between(from, *ids.end()))
            .filter(e::status.eq("pending"))
            .order(e::id)
            .select(e::id)
            .first(conn)
            .await
            .optional()?;
        let Some(first_pending) = pending else {
            return Ok(true);
        };
        from = first_pending;
        if Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An in-process ingest on `url`; the base URL of its tenant routes.
pub async fn start_ingest(url: &str, stop: &CancellationToken) -> anyhow::Result<String> {
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
