//! The `webhook_events` queue: how an event moves from ingest to done, in one place.
//!
//! # Life of an event
//!
//! ```text
//!   ingest ──enqueue──▶ pending ──claim+apply+complete (one transaction)──▶ done
//!      │                  │  ▲                                     └──────▶ ignored (kind we do not model)
//!      │                  │  └── failed: attempts+1, last_error, run_at = now + backoff
//!      │                  └───── failed WORKER_MAX_ATTEMPTS times ──────▶ dead (a dead letter)
//!      └── unscoped route (no tenant) ─────────────────────────────────▶ unroutable
//! ```
//!
//! - **Enqueue** ([`enqueue_many`]) is idempotent by constraint: `(app_id, dedupe_key)` is
//!   unique (NULLs not distinct), so a redelivered event is stored once and reported as a
//!   duplicate. Ingest batches concurrent webhooks into one insert (one commit). An
//!   `AFTER INSERT` statement trigger sends `NOTIFY webhook_events` ([`NOTIFY_CHANNEL`]).
//! - **Claim** ([`claim_batch`]) selects due pending events, oldest first, `FOR UPDATE SKIP
//!   LOCKED`: concurrent workers take disjoint batches and never wait on each other.
//! - **Apply and complete** happen in the claiming transaction ([`complete`], [`ignore`],
//!   [`fail`]): the domain rows and the event's new status commit together or not at all. A
//!   worker that dies mid-batch holds no lease to expire: its transaction is rolled back by
//!   Postgres when its connection drops, and the events are claimable again at once.
//! - The `locked_by`/`locked_until` lease columns are reserved for any future step that must run
//!   outside the claiming transaction (an outbound HTTP call); no such step exists today.
//! - **Operators** move `dead` and `unroutable` events back to `pending`, or replay an app's log
//!   ([`crate::operations`]); **retention** prunes old processed events, keeping a snapshot of
//!   each leg's and message's log ([`crate::retention`]).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::upsert::on_constraint;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
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
            event_timestamp: summary
                .event_timestamp_ms
                .and_then(DateTime::from_timestamp_millis),
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

/// Claims up to `limit` due pending events, oldest first, skipping rows other workers hold.
/// Must run inside a transaction; the rows stay locked until it ends.
///
/// # Errors
/// [`DbError`] from the query.
pub async fn claim_batch(
    conn: &mut AsyncPgConnection,
    limit: i64,
) -> Result<Vec<ClaimedEvent>, DbError> {
    use webhook_events::dsl as e;
    Ok(webhook_events::table
        .filter(e::status.eq(EventStatus::Pending.as_str()))
        .filter(e::run_at.le(diesel::dsl::now))
        .order(e::id)
        .limit(limit)
        .for_update()
        .skip_locked()
        .select(ClaimedEvent::as_select())
        .load(conn)
        .await?)
}

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

/// Records a failed attempt: back to `pending` until `retry_at`, or `dead` when `retry_at` is
/// `None` (attempts exhausted).
///
/// # Errors
/// [`DbError`] from the query.
pub async fn fail(
    conn: &mut AsyncPgConnection,
    id: i64,
    error: &str,
    retry_at: Option<DateTime<Utc>>,
) -> Result<(), DbError> {
    use webhook_events::dsl as e;
    let target = webhook_events::table.filter(e::id.eq(id));
    let changes = (e::attempts.eq(e::attempts + 1), e::last_error.eq(error));
    match retry_at {
        Some(at) => {
            diesel::update(target)
                .set((
                    changes,
                    e::status.eq(EventStatus::Pending.as_str()),
                    e::run_at.eq(at),
                ))
                .execute(conn)
                .await?
        }
        None => {
            diesel::update(target)
                .set((
                    changes,
                    e::status.eq(EventStatus::Dead.as_str()),
                    e::processed_at.eq(diesel::dsl::now),
                ))
                .execute(conn)
                .await?
        }
    };
    Ok(())
}
