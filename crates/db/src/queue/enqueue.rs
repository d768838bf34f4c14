//! Storing verified events: one idempotent insert for a batch of webhooks.

use super::*;
use crate::prepared::PrepareOnce;

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
    /// The `x-request-id` ingest answered with (in its log lines and the worker's).
    pub request_id: Option<String>,
    /// When ingest accepted it; `None`: now (the insert's `DEFAULT now()`). Set for an event
    /// that waited in ingest's outage spool, so queue lag counts from its arrival.
    pub received_at: Option<DateTime<Utc>>,
}

impl NewWebhookEvent {
    /// The row for a verified Dialpad event received for `app_id` (`None`: the unscoped route,
    /// stored as [`EventStatus::Unroutable`]). Kind, type, Dialpad id, time and dedupe key are
    /// read from the payload (`domain::event::EventSummary`); U+0000, which Postgres' `text` and
    /// `jsonb` cannot hold (the domain rows copy strings out of the payload, and `->>` on the
    /// stored `json` would fail), is replaced (`domain::event::replace_nul_characters`) after the
    /// dedupe key is taken.
    pub fn from_verified(app_id: Option<Uuid>, event: serde_json::Map<String, Value>) -> Self {
        let summary = EventSummary::of(&event);
        let mut payload = Value::Object(event);
        if replace_nul_characters(&mut payload) {
            tracing::warn!(
                "Event carried U+0000, which Postgres text cannot store; replaced by U+FFFD."
            );
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
            request_id: None,
            received_at: None,
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

/// Stores events in one statement (one transaction, one commit), skipping any already stored
/// (same app, same event time and dedupe key: the same payload). Call [`wake_workers`] after
/// it (it is not done here, so that a caller can answer its requests first and send one
/// notification for many inserts). Returns
/// one outcome per event, in order; an event repeated within `events` is `Stored` once and
/// `Duplicate` after.
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
    let inserted = insert_new(conn, events).await?;
    let inserted: HashMap<(Option<Uuid>, &str), i64> = inserted
        .iter()
        .map(|(id, app, key)| ((*app, key.as_str()), *id))
        .collect();

    // Already stored: look them up per app and per whether the event has a time, so that the
    // leading columns of the `(app_id, event_timestamp, dedupe_key)` unique index are used (a
    // batch rarely spans more than a few apps). Within an app the key fixes the time (both are
    // read from the payload), so matching times and keys as two lists finds only duplicates.
    #[derive(Default)]
    struct Lookup<'a> {
        times: Vec<DateTime<Utc>>,
        keys: Vec<&'a str>,
    }
    let mut missing: HashMap<(Option<Uuid>, bool), Lookup> = HashMap::new();
    for event in events {
        if !inserted.contains_key(&(event.app_id, event.dedupe_key.as_str())) {
            let lookup = missing
                .entry((event.app_id, event.event_timestamp.is_some()))
                .or_default();
            lookup.times.extend(event.event_timestamp);
            lookup.keys.push(&event.dedupe_key);
        }
    }
    let mut existing: Vec<(i64, Option<Uuid>, String)> = Vec::new();
    for ((app_id, timed), Lookup { times, keys }) in missing {
        let same_app = webhook_events::table
            .filter(e::dedupe_key.eq_any(keys))
            .into_boxed();
        let same_app = match app_id {
            Some(app_id) => same_app.filter(e::app_id.eq(app_id)),
            None => same_app.filter(e::app_id.is_null()),
        };
        let same_time = if timed {
            same_app.filter(e::event_timestamp.eq_any(times))
        } else {
            same_app.filter(e::event_timestamp.is_null())
        };
        existing.extend(
            same_time
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

/// A row [`insert_new`] wrote.
#[derive(QueryableByName)]
struct Inserted {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    id: i64,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Uuid>)]
    app_id: Option<Uuid>,
    #[diesel(sql_type = diesel::sql_types::Text)]
    dedupe_key: String,
}

/// Inserts `events` in order (ids ascending), skipping those already stored: `(id, app_id,
/// dedupe_key)` of the rows written. One statement over one array per column of
/// [`NewWebhookEvent`], whose text never changes: it is prepared once per connection
/// (`crate::prepared`), and each batch is one round trip (Bind, Execute), where a multi-row
/// `VALUES` list is a new statement for every batch size (Parse and Describe: a round trip, a
/// parse and a plan of its own, every time).
async fn insert_new(
    conn: &mut AsyncPgConnection,
    events: &[NewWebhookEvent],
) -> Result<Vec<(i64, Option<Uuid>, String)>, DbError> {
    use diesel::sql_types::{Array, BigInt, Json, Nullable, Text, Timestamptz};
    fn column<'a, T>(
        events: &'a [NewWebhookEvent],
        field: impl Fn(&'a NewWebhookEvent) -> T,
    ) -> Vec<T> {
        events.iter().map(field).collect()
    }
    let inserted: Vec<Inserted> = diesel::sql_query(
        "INSERT INTO webhook_events (app_id, kind, event_type, dialpad_id, event_timestamp, \
            dedupe_key, payload, status, request_id, received_at) \
         SELECT app_id, kind, event_type, dialpad_id, event_timestamp, dedupe_key, payload, \
            status, request_id, coalesce(received_at, now()) \
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int8[], $5::timestamptz[], \
            $6::text[], $7::json[], $8::text[], $9::text[], $10::timestamptz[]) WITH ORDINALITY \
            AS e (app_id, kind, event_type, dialpad_id, event_timestamp, dedupe_key, payload, \
            status, request_id, received_at, position) \
         ORDER BY position \
         ON CONFLICT ON CONSTRAINT webhook_events_dedupe_key DO NOTHING \
         RETURNING id, app_id, dedupe_key",
    )
    .bind::<Array<Nullable<diesel::sql_types::Uuid>>, _>(column(events, |e| e.app_id))
    .bind::<Array<Text>, _>(column(events, |e| e.kind))
    .bind::<Array<Nullable<Text>>, _>(column(events, |e| e.event_type.as_deref()))
    .bind::<Array<Nullable<BigInt>>, _>(column(events, |e| e.dialpad_id))
    .bind::<Array<Nullable<Timestamptz>>, _>(column(events, |e| e.event_timestamp))
    .bind::<Array<Text>, _>(column(events, |e| e.dedupe_key.as_str()))
    .bind::<Array<Json>, _>(column(events, |e| &e.payload))
    .bind::<Array<Text>, _>(column(events, |e| e.status))
    .bind::<Array<Nullable<Text>>, _>(column(events, |e| e.request_id.as_deref()))
    .bind::<Array<Nullable<Timestamptz>>, _>(column(events, |e| e.received_at))
    .prepared()
    .load(conn)
    .await?;
    Ok(inserted
        .into_iter()
        .map(|row| (row.id, row.app_id, row.dedupe_key))
        .collect())
}

/// `NOTIFY` [`NOTIFY_CHANNEL`] in a transaction of its own, after events were committed (see
/// the module documentation). A failure is only logged: the events are committed, and workers
/// also poll.
pub async fn wake_workers(conn: &mut AsyncPgConnection) {
    let notified = diesel::sql_query(format!("SELECT pg_notify('{NOTIFY_CHANNEL}', '')"))
        .execute(conn)
        .await;
    if let Err(error) = notified {
        tracing::warn!(error = %error, "Could not notify the workers; they find the events on their next poll.");
    }
}
