//! The `webhook_events` queue: how an event moves from ingest to done, in one place.
//!
//! # Life of an event
//!
//! ```text
//!   ingest ──enqueue──▶ pending ──claim+apply+complete (one transaction)──▶ done
//!      │                  │  ▲                                     └──────▶ ignored (kind we do not model)
//!      │                  │  └── failed (transient): attempts+1, last_error, run_at = now + backoff
//!      │                  ├───── failed WORKER_MAX_ATTEMPTS times ──────▶ dead (a dead letter)
//!      │                  └───── can never apply (identity unusable) ───▶ dead at once, with the reason
//!      └── unscoped route (no tenant) ─────────────────────────────────▶ unroutable
//! ```
//!
//! - **Enqueue** ([`enqueue_many`]) is idempotent by constraint: `(app_id, dedupe_key)` is
//!   unique (NULLs not distinct), so a redelivered event is stored once and reported as a
//!   duplicate. Ingest batches concurrent webhooks into one insert (one commit). An
//!   `AFTER INSERT` statement trigger sends `NOTIFY webhook_events` ([`NOTIFY_CHANNEL`]).
//! - **The hot queue.** Every pending event also has a row in `event_queue` (`event_id`,
//!   `app_id`, `run_at`), inserted and deleted by statement triggers on `webhook_events` as its
//!   status enters or leaves `pending`, so every writer keeps the two in step (ingest, the
//!   worker, operators, retention, a manual fix). Claims read only this table: it holds the
//!   backlog, not the history, so a claim after millions of processed events costs what it
//!   costs on an empty database. Its rows are deleted on completion, which leaves dead index
//!   entries at the head of each tenant's range until a vacuum: workers [`vacuum`] it every
//!   [`VACUUM_AFTER_EVENTS`] completed events (milliseconds on a table this small; per-table
//!   autovacuum settings are the fallback), and claims use plain index scans, which mark the
//!   entries they step over dead so the next claim skips them. Measured on a 1M-call tenant:
//!   right after a 400k-event drain with no vacuum, a one-row claim read 3,671 pages (11 ms);
//!   after the vacuum (143 ms), 0.24 ms. (The event log's own `status` changes touch no index
//!   the claim reads.)
//! - **Claim** ([`claim_batch`]) locks due entries `FOR UPDATE SKIP LOCKED`: concurrent
//!   workers take disjoint batches and never wait on each other.
//! - **Apply and complete** happen in the claiming transaction ([`complete`], [`ignore`],
//!   [`fail`]): the domain rows and the event's new status commit together or not at all. A
//!   worker that dies mid-batch holds no lease to expire: its transaction is rolled back by
//!   Postgres when its connection drops, and the events are claimable again at once.
//! - The `locked_by`/`locked_until` lease columns are reserved for any future step that must run
//!   outside the claiming transaction (an outbound HTTP call); no such step exists today.
//! - **Operators** move `dead` and `unroutable` events back to `pending`, or replay an app's log
//!   ([`crate::operations`]); **retention** prunes old processed events, keeping a snapshot of
//!   each leg's and message's log ([`crate::retention`]).
//!
//! # Fairness
//! A batch is shared between the tenants with due events, not taken oldest-first from the whole
//! queue, so one tenant's backlog (an outage replay of 200k events) delays another tenant's new
//! events by the batch in progress and the next one, not by the backlog:
//! 1. The tenants with a due event are found by a loose index scan (one probe per tenant),
//!    ordered by their oldest due event; if there are more of them than places in the batch,
//!    the longest-waiting ones take part (the others' heads only grow older, so they come next).
//! 2. The places are split evenly between them (shares differ by at most one); each tenant
//!    gets its share of its own due events, oldest first (`run_at`, then id).
//! 3. Places left by tenants with fewer events than their share are split again among the
//!    tenants that filled theirs, continuing after what they already got; up to
//!    [`MAX_CLAIM_ROUNDS`] rounds. So a lone tenant still gets a full batch.
//!
//! # Lanes: a tenant behind does not hold up the tenants that are up to date
//! Splitting each batch evenly still makes a quiet tenant's new event wait for the batch in
//! progress and its own, and a batch of a tenant's backlog takes ~100 ms. So a worker serves
//! the queue in two [`Lane`]s at once, one transaction each: a tenant whose oldest due event
//! has waited longer than the lag threshold (`WORKER_BACKLOG_AFTER_MS`) is *backlogged* and
//! served by the backlog lane; every other tenant is *up to date* and served by the other lane,
//! whose batches are then small and quick (a quiet tenant's event is claimed as it arrives, not
//! after the backlog's batch). Which lane serves a tenant is decided at each claim from its
//! oldest due event, so a tenant moves to the backlog lane when it falls behind and back when it
//! has caught up; with no backlog anywhere every tenant is up to date, and the up-to-date lane
//! alone takes full batches, as a single lane would. A claim of [`Lane::Any`] serves every
//! tenant (tests, tools, the drain benchmark). Two lanes serving one tenant at the moment it
//! changes lane is harmless: claims skip each other's rows, and the leg and relink locks order
//! their writes. The worker wakes the up-to-date lane on each notification of new events and
//! runs the backlog lane on a timer of the lag threshold (no new event can be backlogged), so a
//! tenant that falls behind is picked up by the backlog lane within one more threshold.
//!
//! Within a tenant, events are taken by `run_at` then id (a retried event waits for its
//! backoff); across tenants, order is not kept, which is safe because every row is a fold of
//! its whole event log (the result does not depend on the order events are applied in).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::upsert::on_constraint;
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use serde_json::Value;
use uuid::Uuid;

use domain::event::{EventSummary, replace_nul_characters};

use crate::DbError;
use crate::schema::webhook_events;

/// The channel the insert trigger notifies; workers `LISTEN` on it.
pub const NOTIFY_CHANNEL: &str = "webhook_events";

/// Where an event is in its life (`webhook_events.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventStatus {
    /// Waiting to be claimed once `run_at` has passed.
    Pending,
    /// Applied to the domain tables.
    Done,
    /// Stored but not modelled (contact, agent status, unknown kinds); `last_error` says why.
    Ignored,
    /// Failed `WORKER_MAX_ATTEMPTS` times: a dead letter, kept for operators.
    Dead,
    /// Received on the unscoped route, so no tenant is known; kept for operators.
    Unroutable,
}

impl EventStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Pending => "pending",
            EventStatus::Done => "done",
            EventStatus::Ignored => "ignored",
            EventStatus::Dead => "dead",
            EventStatus::Unroutable => "unroutable",
        }
    }
}

/// A verified event to store.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = webhook_events)]
pub struct NewWebhookEvent {
    /// The tenant from the route; `None` on the unscoped route.
    pub app_id: Option<Uuid>,
    pub kind: &'static str,
    pub event_type: Option<String>,
    pub dialpad_id: Option<i64>,
    pub event_timestamp: Option<DateTime<Utc>>,
    pub dedupe_key: String,
    pub payload: Value,
    pub status: &'static str,
}

impl NewWebhookEvent {
    /// The row for a verified Dialpad event received for `app_id` (`None`: the unscoped route,
    /// stored as [`EventStatus::Unroutable`]). Kind, type, Dialpad id, time and dedupe key are
    /// read from the payload (`domain::event::EventSummary`); U+0000, which `jsonb` cannot hold,
    /// is replaced (`domain::event::replace_nul_characters`) after the dedupe key is taken.
    pub fn from_verified(app_id: Option<Uuid>, event: serde_json::Map<String, Value>) -> Self {
        let summary = EventSummary::of(&event);
        let mut payload = Value::Object(event);
        if replace_nul_characters(&mut payload) {
            tracing::warn!("Event carried U+0000, which jsonb cannot store; replaced by U+FFFD.");
        }
        NewWebhookEvent {
            app_id,
            kind: summary.kind.as_str(),
            event_type: summary.event_type,
            dialpad_id: summary.dialpad_id,
            // A time Postgres cannot hold is stored as null: the payload keeps the value, and a
            // verified event is never refused for it.
            event_timestamp: summary
                .event_timestamp_ms
                .and_then(domain::json::storable_time),
            dedupe_key: summary.dedupe_key,
            payload,
            status: match app_id {
                Some(_) => EventStatus::Pending.as_str(),
                None => EventStatus::Unroutable.as_str(),
            },
        }
    }
}

/// The outcome of storing one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// A new row was committed with this id.
    Stored(i64),
    /// The same event was already stored under this id; nothing was written.
    Duplicate(i64),
}

impl Enqueued {
    /// The event's id either way.
    pub fn id(self) -> i64 {
        match self {
            Enqueued::Stored(id) | Enqueued::Duplicate(id) => id,
        }
    }
}

/// Stores events in one statement (one transaction, one commit, one `NOTIFY`), skipping any
/// already stored (same app, same dedupe key). Returns one outcome per event, in order; an
/// event repeated within `events` is `Stored` once and `Duplicate` after.
///
/// When it returns `Ok`, every row is committed.
///
/// # Errors
/// [`DbError::Unavailable`] when the database cannot be reached; [`DbError::Query`] otherwise.
/// An error in the duplicate lookup comes after the insert has committed, so some rows may be
/// stored: retrying is always safe, because the insert is idempotent.
pub async fn enqueue_many(
    conn: &mut AsyncPgConnection,
    events: &[NewWebhookEvent],
) -> Result<Vec<Enqueued>, DbError> {
    use std::collections::HashMap;
    use webhook_events::dsl as e;
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let inserted: Vec<(i64, Option<Uuid>, String)> = diesel::insert_into(webhook_events::table)
        .values(events)
        .on_conflict(on_constraint("webhook_events_dedupe_key"))
        .do_nothing()
        .returning((e::id, e::app_id, e::dedupe_key))
        .get_results(conn)
        .await?;
    let inserted: HashMap<(Option<Uuid>, &str), i64> = inserted
        .iter()
        .map(|(id, app, key)| ((*app, key.as_str()), *id))
        .collect();

    // Already stored: look them up per app, so both columns of the `(app_id, dedupe_key)`
    // unique index are used (a batch rarely spans more than a few apps).
    let mut missing: HashMap<Option<Uuid>, Vec<&str>> = HashMap::new();
    for event in events {
        if !inserted.contains_key(&(event.app_id, event.dedupe_key.as_str())) {
            missing
                .entry(event.app_id)
                .or_default()
                .push(&event.dedupe_key);
        }
    }
    let mut existing: Vec<(i64, Option<Uuid>, String)> = Vec::new();
    for (app_id, keys) in missing {
        let same_app = webhook_events::table
            .filter(e::dedupe_key.eq_any(keys))
            .into_boxed();
        let same_app = match app_id {
            Some(app_id) => same_app.filter(e::app_id.eq(app_id)),
            None => same_app.filter(e::app_id.is_null()),
        };
        existing.extend(
            same_app
                .select((e::id, e::app_id, e::dedupe_key))
                .load::<(i64, Option<Uuid>, String)>(conn)
                .await?,
        );
    }
    let existing: HashMap<(Option<Uuid>, &str), i64> = existing
        .iter()
        .map(|(id, app, key)| ((*app, key.as_str()), *id))
        .collect();

    let mut answered = std::collections::HashSet::new();
    events
        .iter()
        .map(|event| {
            let key = (event.app_id, event.dedupe_key.as_str());
            match (inserted.get(&key), existing.get(&key)) {
                (Some(id), _) if answered.insert(key) => Ok(Enqueued::Stored(*id)),
                (Some(id), _) | (None, Some(id)) => Ok(Enqueued::Duplicate(*id)),
                // Unreachable: a skipped row conflicts with a committed one, which is found.
                (None, None) => Err(DbError::Query(diesel::result::Error::NotFound)),
            }
        })
        .collect()
}

/// A claimed event, locked by the claiming transaction until it commits or rolls back.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = webhook_events)]
pub struct ClaimedEvent {
    pub id: i64,
    pub app_id: Option<Uuid>,
    pub kind: String,
    pub dedupe_key: String,
    pub payload: Value,
    /// Attempts made before this one.
    pub attempts: i32,
}

/// Which tenants a claim serves (see *Lanes* in the module docs). A tenant's *lag* is how long
/// ago its oldest due event became due (`run_at`: its arrival, or the end of its backoff).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Every tenant with a due event.
    Any,
    /// Tenants whose lag is at most this many milliseconds.
    UpToDate { lag_ms: u64 },
    /// Tenants whose lag is more than this many milliseconds.
    Backlogged { lag_ms: u64 },
}

impl Lane {
    /// The `(most, least)` lag in milliseconds of the tenants served; `None` for no bound.
    fn lag_bounds(self) -> (Option<i64>, Option<i64>) {
        let ms = |lag_ms: u64| Some(i64::try_from(lag_ms).unwrap_or(i64::MAX));
        match self {
            Lane::Any => (None, None),
            Lane::UpToDate { lag_ms } => (ms(lag_ms), None),
            Lane::Backlogged { lag_ms } => (None, ms(lag_ms)),
        }
    }
}

/// Claims up to `limit` due pending events of the tenants `lane` serves, shared fairly between
/// them (see *Fairness* and *Lanes* in the module docs), skipping rows other workers hold. Must
/// run inside a transaction; the rows stay locked until it ends. Returns the events in id
/// order.
///
/// Reads only `event_queue` (plus the claimed events by primary key), never the event log's
/// history: one index probe per tenant with due events, then one index range per tenant and
/// round (at most [`MAX_CLAIM_ROUNDS`]).
///
/// # Errors
/// [`DbError`] from the queries.
pub async fn claim_batch(
    conn: &mut AsyncPgConnection,
    limit: i64,
    lane: Lane,
) -> Result<Vec<ClaimedEvent>, DbError> {
    let limit = usize::try_from(limit).unwrap_or(0);
    // Plain index scans only: they walk `event_queue_due_idx` in order and stop at the quota,
    // and they mark the entries of deleted rows dead as they pass them. A bitmap scan (which
    // the planner prefers while the table's statistics say it is nearly empty, as they do
    // right after a drain) would visit every deleted row's heap tuple instead, until vacuum.
    conn.batch_execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off")
        .await?;
    // On an error the transaction is aborted, and the settings go with it.
    let claimed = claim_entries(conn, limit, lane).await?;
    conn.batch_execute(
        "SET LOCAL enable_seqscan TO DEFAULT; SET LOCAL enable_bitmapscan TO DEFAULT",
    )
    .await?;
    if claimed.is_empty() {
        return Ok(Vec::new());
    }
    load_claimed(conn, claimed.iter().map(|e| e.event_id).collect()).await
}

/// The queue entries of a claim (see [`claim_batch`]), locked.
async fn claim_entries(
    conn: &mut AsyncPgConnection,
    limit: usize,
    lane: Lane,
) -> Result<Vec<QueueEntry>, DbError> {
    let tenants = tenants_waiting(conn, limit, lane).await?;
    let mut claimed: Vec<QueueEntry> = Vec::with_capacity(limit);
    // Each tenant's place in its own queue: rounds after the first continue after it.
    let mut cursors: Vec<TenantCursor> = tenants
        .into_iter()
        .map(|app_id| TenantCursor {
            app_id,
            after: None,
        })
        .collect();
    for _ in 0..MAX_CLAIM_ROUNDS {
        let remaining = limit - claimed.len();
        if remaining == 0 || cursors.is_empty() {
            break;
        }
        // Oldest-waiting tenants first when there are more tenants than places.
        cursors.truncate(remaining);
        let quotas = share(remaining, cursors.len());
        let round = claim_round(conn, &cursors, &quotas).await?;
        // A tenant that filled its quota may have more; the others are empty (or locked).
        let mut next = Vec::new();
        for (cursor, quota) in cursors.iter().zip(&quotas) {
            let mine: Vec<&QueueEntry> =
                round.iter().filter(|e| e.app_id == cursor.app_id).collect();
            if mine.len() == *quota {
                next.push(TenantCursor {
                    app_id: cursor.app_id,
                    after: mine.last().map(|e| (e.run_at, e.event_id)),
                });
            }
        }
        claimed.extend(round);
        cursors = next;
    }
    Ok(claimed)
}

/// How many rounds a claim makes at most (each fills the places the tenants that ran out left).
pub const MAX_CLAIM_ROUNDS: usize = 4;

/// `places` split into `tenants` shares that differ by at most one, larger first.
fn share(places: usize, tenants: usize) -> Vec<usize> {
    let (each, extra) = (places / tenants, places % tenants);
    (0..tenants)
        .map(|i| each + usize::from(i < extra))
        .collect()
}

/// A tenant taking part in a claim, and the last `(run_at, event_id)` it got so far.
#[derive(Debug, Clone, Copy)]
struct TenantCursor {
    app_id: Uuid,
    after: Option<(DateTime<Utc>, i64)>,
}

#[derive(Debug, Clone, Copy, QueryableByName)]
struct QueueEntry {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    event_id: i64,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    app_id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    run_at: DateTime<Utc>,
}

#[derive(Debug, QueryableByName)]
struct Waiting {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    app_id: Uuid,
}

/// The tenants with a due event that `lane` serves, the longest-waiting first (by their oldest
/// due event), at most `limit`. A loose index scan: one probe of `event_queue_due_idx` per
/// tenant with queued events, whatever the backlog.
async fn tenants_waiting(
    conn: &mut AsyncPgConnection,
    limit: usize,
    lane: Lane,
) -> Result<Vec<Uuid>, DbError> {
    use diesel::sql_types::{BigInt, Nullable};
    let (most_lag_ms, least_lag_ms) = lane.lag_bounds();
    let waiting: Vec<Waiting> = diesel::sql_query(
        "WITH RECURSIVE tenants (app_id) AS ( \
             (SELECT app_id FROM event_queue ORDER BY app_id LIMIT 1) \
           UNION ALL \
             SELECT (SELECT q.app_id FROM event_queue q WHERE q.app_id > t.app_id \
                     ORDER BY q.app_id LIMIT 1) \
             FROM tenants t WHERE t.app_id IS NOT NULL \
         ) \
         SELECT t.app_id FROM tenants t \
         CROSS JOIN LATERAL (SELECT q.run_at, q.event_id FROM event_queue q \
             WHERE q.app_id = t.app_id AND q.run_at <= now() \
             ORDER BY q.run_at, q.event_id LIMIT 1) AS head \
         WHERE ($2::bigint IS NULL OR head.run_at >= now() - $2 * interval '1 millisecond') \
           AND ($3::bigint IS NULL OR head.run_at < now() - $3 * interval '1 millisecond') \
         ORDER BY head.run_at, head.event_id LIMIT $1",
    )
    .bind::<BigInt, _>(i64::try_from(limit).unwrap_or(i64::MAX))
    .bind::<Nullable<BigInt>, _>(most_lag_ms)
    .bind::<Nullable<BigInt>, _>(least_lag_ms)
    .load(conn)
    .await?;
    Ok(waiting.into_iter().map(|w| w.app_id).collect())
}

/// One round of a claim: for each tenant, up to its quota of due events after its cursor,
/// oldest first, locked, skipping rows other workers hold.
async fn claim_round(
    conn: &mut AsyncPgConnection,
    cursors: &[TenantCursor],
    quotas: &[usize],
) -> Result<Vec<QueueEntry>, DbError> {
    use diesel::sql_types::{Array, BigInt, Nullable, Timestamptz};
    let app_ids: Vec<Uuid> = cursors.iter().map(|c| c.app_id).collect();
    let quotas: Vec<i64> = quotas
        .iter()
        .map(|q| i64::try_from(*q).unwrap_or(i64::MAX))
        .collect();
    let after_run_at: Vec<Option<DateTime<Utc>>> =
        cursors.iter().map(|c| c.after.map(|(at, _)| at)).collect();
    let after_id: Vec<Option<i64>> = cursors.iter().map(|c| c.after.map(|(_, id)| id)).collect();
    Ok(diesel::sql_query(
        "SELECT q.event_id, q.app_id, q.run_at \
         FROM unnest($1::uuid[], $2::bigint[], $3::timestamptz[], $4::bigint[]) \
             AS t (app_id, quota, after_run_at, after_id) \
         CROSS JOIN LATERAL (SELECT event_id, app_id, run_at FROM event_queue q \
             WHERE q.app_id = t.app_id AND q.run_at <= now() \
               AND (q.run_at, q.event_id) > (coalesce(t.after_run_at, '-infinity'), coalesce(t.after_id, 0)) \
             ORDER BY q.run_at, q.event_id LIMIT t.quota \
             FOR UPDATE SKIP LOCKED) AS q",
    )
    .bind::<Array<diesel::sql_types::Uuid>, _>(app_ids)
    .bind::<Array<BigInt>, _>(quotas)
    .bind::<Array<Nullable<Timestamptz>>, _>(after_run_at)
    .bind::<Array<Nullable<BigInt>>, _>(after_id)
    .load(conn)
    .await?)
}

/// The claimed events themselves, by primary key. A queue entry whose event is gone or no
/// longer pending (only a manual change could do that: the triggers keep both in step) is
/// dropped, so it cannot take a place in every claim.
async fn load_claimed(
    conn: &mut AsyncPgConnection,
    ids: Vec<i64>,
) -> Result<Vec<ClaimedEvent>, DbError> {
    use crate::schema::event_queue;
    use webhook_events::dsl as e;
    let events: Vec<ClaimedEvent> = webhook_events::table
        .filter(e::id.eq_any(&ids))
        .filter(e::status.eq(EventStatus::Pending.as_str()))
        .order(e::id)
        .select(ClaimedEvent::as_select())
        .load(conn)
        .await?;
    if events.len() < ids.len() {
        let found: std::collections::HashSet<i64> = events.iter().map(|e| e.id).collect();
        let orphans: Vec<i64> = ids.into_iter().filter(|id| !found.contains(id)).collect();
        tracing::warn!(
            events.orphaned = orphans.len(),
            "Queue entries without a pending event; removed."
        );
        diesel::delete(event_queue::table.filter(event_queue::event_id.eq_any(orphans)))
            .execute(conn)
            .await?;
    }
    Ok(events)
}

/// Vacuums and analyzes `event_queue`, so the entries of completed events stop costing claims
/// anything and the planner knows how big the backlog is (`SKIP_LOCKED`: returns at once if
/// another vacuum of it is running). Workers call it when they start and after every
/// [`VACUUM_AFTER_EVENTS`] events they complete: a large drain would otherwise leave hundreds of
/// thousands of dead entries at the head of the index until autovacuum's next round (up to a
/// minute), and every claim would step over them. The statistics matter as much: planned
/// from statistics taken while the queue was empty, the hot-queue trigger's delete (a join of
/// the statement's changed events with `event_queue`) scanned the whole queue once per
/// changed event: measured with a 200k backlog, a 500-event status update took 24 s instead
/// of 10 ms. On a table that holds only the backlog it takes milliseconds. Must not run inside
/// a transaction.
///
/// # Errors
/// [`DbError`] from the statement.
pub async fn vacuum(conn: &mut AsyncPgConnection) -> Result<(), DbError> {
    conn.batch_execute("VACUUM (ANALYZE, SKIP_LOCKED) event_queue")
        .await?;
    Ok(())
}

/// Events a worker completes between two [`vacuum`]s of the queue.
pub const VACUUM_AFTER_EVENTS: usize = 10_000;

/// Marks claimed events as applied.
///
/// # Errors
/// [`DbError`] from the query.
pub async fn complete(conn: &mut AsyncPgConnection, ids: &[i64]) -> Result<(), DbError> {
    use webhook_events::dsl as e;
    if ids.is_empty() {
        return Ok(());
    }
    diesel::update(webhook_events::table.filter(e::id.eq_any(ids)))
        .set((
            e::status.eq(EventStatus::Done.as_str()),
            e::attempts.eq(e::attempts + 1),
            e::processed_at.eq(diesel::dsl::now),
            e::last_error.eq(None::<String>),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Marks claimed events as stored but not modelled, with the reason.
///
/// # Errors
/// [`DbError`] from the query.
pub async fn ignore(
    conn: &mut AsyncPgConnection,
    ids: &[i64],
    reason: &str,
) -> Result<(), DbError> {
    use webhook_events::dsl as e;
    if ids.is_empty() {
        return Ok(());
    }
    diesel::update(webhook_events::table.filter(e::id.eq_any(ids)))
        .set((
            e::status.eq(EventStatus::Ignored.as_str()),
            e::attempts.eq(e::attempts + 1),
            e::processed_at.eq(diesel::dsl::now),
            e::last_error.eq(reason),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// A failed attempt at one claimed event.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub id: i64,
    /// Stored as `last_error`; never holds a secret.
    pub error: String,
    /// Back to `pending`, claimable from then on (backoff); `None`: `dead` (a dead letter).
    pub retry_at: Option<DateTime<Utc>>,
}

/// Records a batch's failed attempts in one statement: `attempts + 1`, `last_error`, and either
/// `pending` again at `retry_at` or `dead`.
///
/// # Errors
/// [`DbError`] from the query.
pub async fn fail(conn: &mut AsyncPgConnection, failures: &[Failure]) -> Result<(), DbError> {
    use diesel::sql_types::{Array, BigInt, Nullable, Text, Timestamptz};
    if failures.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = failures.iter().map(|f| f.id).collect();
    let errors: Vec<&str> = failures.iter().map(|f| f.error.as_str()).collect();
    let retry_at: Vec<Option<DateTime<Utc>>> = failures.iter().map(|f| f.retry_at).collect();
    diesel::sql_query(
        "UPDATE webhook_events e SET attempts = e.attempts + 1, last_error = f.error, \
             status = CASE WHEN f.retry_at IS NULL THEN 'dead' ELSE 'pending' END, \
             run_at = coalesce(f.retry_at, e.run_at), \
             processed_at = CASE WHEN f.retry_at IS NULL THEN now() ELSE e.processed_at END \
         FROM unnest($1::bigint[], $2::text[], $3::timestamptz[]) AS f(id, error, retry_at) \
         WHERE e.id = f.id",
    )
    .bind::<Array<BigInt>, _>(ids)
    .bind::<Array<Text>, _>(errors)
    .bind::<Array<Nullable<Timestamptz>>, _>(retry_at)
    .execute(conn)
    .await?;
    Ok(())
}
