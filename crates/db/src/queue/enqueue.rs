//! Storing verified events: one idempotent insert for a batch of webhooks.

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};

use super::*;

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
/// (same app, same dedupe key). Call [`wake_workers`] after it (it is not done here, so that a
/// caller can answer its requests first and send one notification for many inserts). Returns
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

/// The insert of a batch, around its ten array parameters (one per column of
/// [`NewWebhookEvent`]), in order: the events are inserted in their order (ids ascending).
const INSERT_EVENTS: [&str; 11] = [
    "INSERT INTO webhook_events (app_id, kind, event_type, dialpad_id, event_timestamp, \
        dedupe_key, payload, status, request_id, received_at) \
    SELECT app_id, kind, event_type, dialpad_id, event_timestamp, dedupe_key, payload, status, \
        request_id, coalesce(received_at, now()) \
    FROM unnest(",
    "::uuid[], ",
    "::text[], ",
    "::text[], ",
    "::int8[], ",
    "::timestamptz[], ",
    "::text[], ",
    "::jsonb[], ",
    "::text[], ",
    "::text[], ",
    "::timestamptz[]) WITH ORDINALITY \
        AS e(app_id, kind, event_type, dialpad_id, event_timestamp, dedupe_key, payload, status, \
        request_id, received_at, position) \
    ORDER BY position \
    ON CONFLICT ON CONSTRAINT webhook_events_dedupe_key DO NOTHING \
    RETURNING id, app_id, dedupe_key",
];

/// [`INSERT_EVENTS`] with its arrays: one per column of [`NewWebhookEvent`].
struct InsertEvents<'a> {
    app_id: Vec<Option<Uuid>>,
    kind: Vec<&'a str>,
    event_type: Vec<Option<&'a str>>,
    dialpad_id: Vec<Option<i64>>,
    event_timestamp: Vec<Option<DateTime<Utc>>>,
    dedupe_key: Vec<&'a str>,
    payload: Vec<&'a Value>,
    status: Vec<&'a str>,
    request_id: Vec<Option<&'a str>>,
    received_at: Vec<Option<DateTime<Utc>>>,
}

impl<'a> InsertEvents<'a> {
    fn new(events: &'a [NewWebhookEvent]) -> Self {
        fn column<'a, T>(
            events: &'a [NewWebhookEvent],
            field: impl Fn(&'a NewWebhookEvent) -> T,
        ) -> Vec<T> {
            events.iter().map(field).collect()
        }
        InsertEvents {
            app_id: column(events, |e| e.app_id),
            kind: column(events, |e| e.kind),
            event_type: column(events, |e| e.event_type.as_deref()),
            dialpad_id: column(events, |e| e.dialpad_id),
            event_timestamp: column(events, |e| e.event_timestamp),
            dedupe_key: column(events, |e| e.dedupe_key.as_str()),
            payload: column(events, |e| &e.payload),
            status: column(events, |e| e.status),
            request_id: column(events, |e| e.request_id.as_deref()),
            received_at: column(events, |e| e.received_at),
        }
    }
}

impl QueryFragment<Pg> for InsertEvents<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        use diesel::sql_types::{Array, BigInt, Jsonb, Nullable, Text, Timestamptz};
        let [
            start,
            app_id,
            kind,
            event_type,
            dialpad_id,
            event_timestamp,
            dedupe_key,
            payload,
            status,
            request_id,
            end,
        ] = INSERT_EVENTS;
        out.push_sql(start);
        out.push_bind_param::<Array<Nullable<diesel::sql_types::Uuid>>, _>(&self.app_id)?;
        out.push_sql(app_id);
        out.push_bind_param::<Array<Text>, _>(&self.kind)?;
        out.push_sql(kind);
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.event_type)?;
        out.push_sql(event_type);
        out.push_bind_param::<Array<Nullable<BigInt>>, _>(&self.dialpad_id)?;
        out.push_sql(dialpad_id);
        out.push_bind_param::<Array<Nullable<Timestamptz>>, _>(&self.event_timestamp)?;
        out.push_sql(event_timestamp);
        out.push_bind_param::<Array<Text>, _>(&self.dedupe_key)?;
        out.push_sql(dedupe_key);
        out.push_bind_param::<Array<Jsonb>, _>(&self.payload)?;
        out.push_sql(payload);
        out.push_bind_param::<Array<Text>, _>(&self.status)?;
        out.push_sql(status);
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.request_id)?;
        out.push_sql(request_id);
        out.push_bind_param::<Array<Nullable<Timestamptz>>, _>(&self.received_at)?;
        out.push_sql(end);
        Ok(())
    }
}

/// The statement's text never changes, so it is cached by type: prepared once per connection.
impl QueryId for InsertEvents<'_> {
    type QueryId = InsertEvents<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl Query for InsertEvents<'_> {
    type SqlType = (
        diesel::sql_types::BigInt,
        diesel::sql_types::Nullable<diesel::sql_types::Uuid>,
        diesel::sql_types::Text,
    );
}

/// Inserts `events` in order (ids ascending), skipping those already stored: `(id, app_id,
/// dedupe_key)` of the rows written. One statement whose text never changes: it is prepared
/// once per connection, and each batch is one round trip (Bind, Execute), where a multi-row
/// `VALUES` list is a new statement for every batch size (Parse and Describe: a round trip, a
/// parse and a plan of its own, every time).
async fn insert_new(
    conn: &mut AsyncPgConnection,
    events: &[NewWebhookEvent],
) -> Result<Vec<(i64, Option<Uuid>, String)>, DbError> {
    Ok(InsertEvents::new(events).load(conn).await?)
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
