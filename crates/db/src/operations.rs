//! What operators do to the queue (the api's `/internal/events*`): look at events by status,
//! retry a dead letter, give unroutable events their tenant, and replay an app's event log.
//!
//! Each of these only moves events back to `pending`: the worker then applies them as it
//! applies any event (see [`crate::queue`]), so there is one way events reach the domain tables.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Nullable, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::Value;
use uuid::Uuid;

use crate::DbError;
use crate::queue::EventStatus;
use crate::schema::webhook_events;

/// An event as operators see it.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = webhook_events)]
pub struct EventRecord {
    pub id: i64,
    pub app_id: Option<Uuid>,
    pub kind: String,
    pub event_type: Option<String>,
    pub dialpad_id: Option<i64>,
    pub event_timestamp: Option<DateTime<Utc>>,
    pub status: String,
    pub attempts: i32,
    pub run_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub received_at: DateTime<Utc>,
    pub processed_at: Option<DateTime<Utc>>,
    /// The Dialpad event itself.
    pub payload: Value,
    /// The `x-request-id` ingest answered it with.
    pub request_id: Option<String>,
}

/// A page of events, newest first.
#[derive(Debug)]
pub struct EventPage {
    pub events: Vec<EventRecord>,
    /// The id to pass as `before_id` for the next page; `None` on the last page.
    pub next_before_id: Option<i64>,
}

/// Events with `status`, optionally of one app, newest first (by id), `limit` at most, with
/// ids below `before_id` (keyset paging).
///
/// # Errors
/// [`DbError`] from the query.
pub async fn list_events(
    conn: &mut AsyncPgConnection,
    status: EventStatus,
    app_id: Option<Uuid>,
    before_id: Option<i64>,
    limit: i64,
) -> Result<EventPage, DbError> {
    use webhook_events::dsl as e;
    let mut query = webhook_events::table
        .filter(e::status.eq(status.as_str()))
        .order(e::id.desc())
        .limit(limit + 1)
        .select(EventRecord::as_select())
        .into_boxed();
    if status == EventStatus::Dead {
        // The few dead letters by their own table, not a walk of the whole log.
        use crate::schema::dead_letters;
        query = query.filter(e::id.eq_any(dead_letters::table.select(dead_letters::event_id)));
    }
    if let Some(app_id) = app_id {
        query = query.filter(e::app_id.eq(app_id));
    }
    if let Some(before_id) = before_id {
        query = query.filter(e::id.lt(before_id));
    }
    let mut events: Vec<EventRecord> = query.load(conn).await?;
    let more = events.len() as i64 > limit;
    events.truncate(usize::try_from(limit).unwrap_or(0));
    let next_before_id = more.then(|| events.last().map(|e| e.id)).flatten();
    Ok(EventPage {
        events,
        next_before_id,
    })
}

/// One event by id.
///
/// # Errors
/// [`DbError`] from the query.
pub async fn find_event(
    conn: &mut AsyncPgConnection,
    id: i64,
) -> Result<Option<EventRecord>, DbError> {
    Ok(webhook_events::table
        .find(id)
        .select(EventRecord::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// Puts a dead event back in the queue with a fresh set of attempts (its `last_error` stays
/// until it succeeds). `false` when the event is not dead (unknown, or any other status).
///
/// # Errors
/// [`DbError`] from the query.
pub async fn retry_dead(conn: &mut AsyncPgConnection, id: i64) -> Result<bool, DbError> {
    use webhook_events::dsl as e;
    let updated = diesel::update(
        webhook_events::table
            .filter(e::id.eq(id))
            .filter(e::status.eq(EventStatus::Dead.as_str())),
    )
    .set((
        e::status.eq(EventStatus::Pending.as_str()),
        e::attempts.eq(0),
        e::run_at.eq(diesel::dsl::now),
        e::processed_at.eq(None::<DateTime<Utc>>),
    ))
    .execute(conn)
    .await?;
    Ok(updated == 1)
}

/// What re-routing did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rerouted {
    /// Given to the app and queued.
    pub queued: usize,
    /// Already stored for the app (the same payload also came in on its own route): marked
    /// `ignored` as duplicates.
    pub duplicates: usize,
}

/// Gives unroutable events (of `ids`) to `app_id` and queues them. An event whose payload the
/// app already has is marked `ignored` instead (the store keeps one copy per app).
///
/// # Errors
/// [`DbError`] from the queries; nothing changes on error.
pub async fn reroute_unroutable(
    conn: &mut AsyncPgConnection,
    app_id: Uuid,
    ids: &[i64],
) -> Result<Rerouted, DbError> {
    conn.transaction(async |conn| {
        let duplicates = diesel::sql_query(
            "UPDATE webhook_events e SET status = 'ignored', processed_at = now(), \
                 last_error = 'duplicate: the app already has this event' \
             WHERE e.id = ANY($2) AND e.status = 'unroutable' AND (EXISTS ( \
                 SELECT 1 FROM webhook_events d WHERE d.app_id = $1 \
                     AND d.event_timestamp = e.event_timestamp AND d.dedupe_key = e.dedupe_key) \
             OR e.event_timestamp IS NULL AND EXISTS ( \
                 SELECT 1 FROM webhook_events d WHERE d.app_id = $1 \
                     AND d.event_timestamp IS NULL AND d.dedupe_key = e.dedupe_key))",
        )
        .bind::<diesel::sql_types::Uuid, _>(app_id)
        .bind::<Array<BigInt>, _>(ids)
        .execute(conn)
        .await?;
        let queued = diesel::sql_query(
            "UPDATE webhook_events SET app_id = $1, status = 'pending', run_at = now(), \
                 attempts = 0, last_error = NULL \
             WHERE id = ANY($2) AND status = 'unroutable'",
        )
        .bind::<diesel::sql_types::Uuid, _>(app_id)
        .bind::<Array<BigInt>, _>(ids)
        .execute(conn)
        .await?;
        Ok::<_, DbError>(Rerouted { queued, duplicates })
    })
    .await
}

/// Queues again every applied event of the app's legs and messages that have an event in
/// `[from, to)` (by Dialpad's `event_timestamp`, else the time we received it): the worker
/// then rebuilds those rows from their whole event log. Returns how many events were queued.
///
/// # Errors
/// [`DbError`] from the query.
pub async fn replay(
    conn: &mut AsyncPgConnection,
    app_id: Uuid,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> Result<usize, DbError> {
    Ok(diesel::sql_query(
        "WITH units AS ( \
             SELECT DISTINCT kind, dialpad_id FROM webhook_events \
             WHERE app_id = $1 AND kind IN ('call', 'sms') AND dialpad_id IS NOT NULL \
               AND status IN ('done', 'ignored') \
               AND ($2::timestamptz IS NULL OR coalesce(event_timestamp, received_at) >= $2) \
               AND ($3::timestamptz IS NULL OR coalesce(event_timestamp, received_at) < $3)) \
         UPDATE webhook_events e SET status = 'pending', run_at = now(), attempts = 0, \
             processed_at = NULL, last_error = NULL \
         FROM units WHERE e.app_id = $1 AND e.kind = units.kind AND e.dialpad_id = units.dialpad_id \
           AND e.status IN ('done', 'ignored')",
    )
    .bind::<diesel::sql_types::Uuid, _>(app_id)
    .bind::<Nullable<Timestamptz>, _>(from)
    .bind::<Nullable<Timestamptz>, _>(to)
    .execute(conn)
    .await?)
}
