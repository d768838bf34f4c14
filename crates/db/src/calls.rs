//! Call legs: the `calls` table and the event log reads that rebuild it.
//!
//! A leg's row is recomputed from *all* of its applied events by `domain::call::CallLeg::fold`,
//! under a per-leg transaction-scoped advisory lock, so two batches never write one leg at
//! once: the worker's batch defers a leg another holds ([`try_lock_legs`]) and retention waits
//! for it ([`lock_legs`]); whoever writes it next folds the earlier one's committed events in.
//! That gives the same row as in-order, exactly-once processing.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Double, Integer, Jsonb, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::call::{CallLeg, CallStatus, Party};
use domain::event::EventKind;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::DbError;
use crate::prepared::PrepareOnce;
use crate::schema::calls;

/// The columns of a `calls` row the worker writes: one struct for the upsert ([`LegUpsert`]'s
/// rows, built by [`LegRow::from_leg`]) and for reads (embedded in [`Call`]).
#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = calls)]
pub struct LegRow {
    pub app_id: Uuid,
    pub call_id: i64,
    pub master_call_id: Option<i64>,
    pub entry_point_call_id: Option<i64>,
    pub operator_call_id: Option<i64>,
    pub direction: Option<String>,
    pub from_number: Option<String>,
    pub to_number: Option<String>,
    pub external_number: Option<String>,
    pub internal_number: Option<String>,
    pub state: String,
    /// A [`CallStatus`] name.
    pub status: String,
    pub started_at: Option<DateTime<Utc>>,
    pub rang_at: Option<DateTime<Utc>>,
    pub queued_at: Option<DateTime<Utc>>,
    pub connected_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    /// Milliseconds.
    pub duration_ms: Option<f64>,
    /// Milliseconds.
    pub total_duration_ms: Option<f64>,
    /// Milliseconds.
    pub talk_time_ms: Option<i64>,
    /// Milliseconds.
    pub hold_time_ms: Option<i64>,
    pub was_recorded: bool,
    pub is_transferred: bool,
    pub mos_score: Option<f64>,
    pub recording_url: Option<String>,
    pub voicemail_link: Option<String>,
    pub transcription_text: Option<String>,
    pub target_id: Option<String>,
    pub target: Option<Value>,
    pub contact: Option<Value>,
    pub custom_data: Option<String>,
    pub event_count: i32,
    pub last_event_at: Option<DateTime<Utc>>,
    pub voicemail_recording_id: Option<String>,
    /// Milliseconds.
    pub voicemail_duration_ms: Option<i64>,
    pub recording_id: Option<String>,
    pub recap_summary: Option<String>,
    pub recap_outcome: Option<String>,
    pub recap_action_items: Option<Value>,
    pub recap_purposes: Option<Value>,
    pub transferred_from: Option<Value>,
    /// The phone call this leg belongs to (`logical_calls`). When written, the leg's own guess
    /// (its parent's id, else its own): right for every leg whose parent is a root, so
    /// `logical_calls::relink` rarely has to correct it. Written on insert only: only `relink`
    /// changes it afterwards.
    pub logical_call_id: Option<i64>,
}

/// A `calls` row: the written columns and those the database fills.
#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = calls)]
pub struct Call {
    pub id: i64,
    #[diesel(embed)]
    pub leg: LegRow,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl LegRow {
    /// The other legs' ids this leg names (master, entry point, operator): its edges in the
    /// call graph (`crate::logical_calls`).
    pub fn linked_ids(&self) -> impl Iterator<Item = i64> + use<> {
        [
            self.master_call_id,
            self.entry_point_call_id,
            self.operator_call_id,
        ]
        .into_iter()
        .flatten()
    }

    /// The leg this row was written from, as the logical-call aggregation reads it. (Rows hold
    /// everything the aggregation uses; parties come back from their JSON form.)
    pub fn into_leg(self) -> CallLeg {
        let party = party_from_json;
        CallLeg {
            call_id: self.call_id,
            master_call_id: self.master_call_id,
            entry_point_call_id: self.entry_point_call_id,
            operator_call_id: self.operator_call_id,
            direction: self.direction,
            external_number: self.external_number,
            internal_number: self.internal_number,
            state: self.state,
            status: CallStatus::parse(&self.status).unwrap_or(CallStatus::Ringing),
            started_at: self.started_at,
            rang_at: self.rang_at,
            queued_at: self.queued_at,
            connected_at: self.connected_at,
            ended_at: self.ended_at,
            duration_ms: self.duration_ms,
            total_duration_ms: self.total_duration_ms,
            talk_time_ms: self.talk_time_ms,
            hold_time_ms: self.hold_time_ms,
            was_recorded: self.was_recorded,
            is_transferred: self.is_transferred,
            mos_score: self.mos_score,
            recording_url: self.recording_url,
            voicemail_link: self.voicemail_link,
            transcription_text: self.transcription_text,
            contact: party(&self.contact),
            target: party(&self.target),
            custom_data: self.custom_data,
            recording_id: self.recording_id,
            voicemail_recording_id: self.voicemail_recording_id,
            voicemail_duration_ms: self.voicemail_duration_ms,
            transferred_from: party(&self.transferred_from),
            recap_summary: self.recap_summary,
            recap_outcome: self.recap_outcome,
            recap_action_items: self.recap_action_items,
            recap_purposes: self.recap_purposes,
            last_event_at: self.last_event_at,
            event_count: self.event_count,
        }
    }
}

/// A party read back from its stored JSON ([`party_json`]); `None` for none or an empty one.
pub fn party_from_json(value: &Option<Value>) -> Option<Party> {
    value
        .as_ref()
        .and_then(|v| Party::deserialize(v).ok())
        .filter(|p| !p.is_empty())
}

/// A party as stored and returned: `{id, type, name, phone, email}`.
pub fn party_json(party: &Party) -> Value {
    json!({
        // Text: an int64 in canonical decimal (exact for JavaScript clients), or the string
        // Dialpad sent.
        "id": party.id,
        "type": party.kind,
        "name": party.name,
        "phone": party.phone,
        "email": party.email,
    })
}

impl LegRow {
    /// The row for a folded leg of `app_id`.
    pub fn from_leg(app_id: Uuid, leg: CallLeg) -> Self {
        let logical_call_id = Some(leg.parent_call_id().unwrap_or(leg.call_id));
        LegRow {
            app_id,
            call_id: leg.call_id,
            master_call_id: leg.master_call_id,
            entry_point_call_id: leg.entry_point_call_id,
            operator_call_id: leg.operator_call_id,
            from_number: leg.from_number().map(str::to_owned),
            to_number: leg.to_number().map(str::to_owned),
            direction: leg.direction,
            external_number: leg.external_number,
            internal_number: leg.internal_number,
            state: leg.state,
            status: leg.status.as_str().to_owned(),
            started_at: leg.started_at,
            rang_at: leg.rang_at,
            queued_at: leg.queued_at,
            connected_at: leg.connected_at,
            ended_at: leg.ended_at,
            duration_ms: leg.duration_ms,
            total_duration_ms: leg.total_duration_ms,
            talk_time_ms: leg.talk_time_ms,
            hold_time_ms: leg.hold_time_ms,
            was_recorded: leg.was_recorded,
            is_transferred: leg.is_transferred,
            mos_score: leg.mos_score,
            recording_url: leg.recording_url,
            voicemail_link: leg.voicemail_link,
            transcription_text: leg.transcription_text,
            target_id: leg.target.as_ref().and_then(|t| t.id.clone()),
            target: leg.target.as_ref().map(party_json),
            contact: leg.contact.as_ref().map(party_json),
            custom_data: leg.custom_data,
            event_count: leg.event_count,
            last_event_at: leg.last_event_at,
            voicemail_recording_id: leg.voicemail_recording_id,
            voicemail_duration_ms: leg.voicemail_duration_ms,
            recording_id: leg.recording_id,
            recap_summary: leg.recap_summary,
            recap_outcome: leg.recap_outcome,
            recap_action_items: leg.recap_action_items,
            recap_purposes: leg.recap_purposes,
            transferred_from: leg.transferred_from.as_ref().map(party_json),
            logical_call_id,
        }
    }
}

/// Takes a transaction-scoped advisory lock on each leg (or message: SMS ids share the space),
/// in ascending order (so two batches sharing legs cannot deadlock). Keyed by Dialpad's id,
/// which is unique across companies; a rare collision between tenants or kinds only
/// serialises, never mixes data.
///
/// # Errors
/// [`DbError`] from the query.
pub async fn lock_legs(conn: &mut AsyncPgConnection, call_ids: &[i64]) -> Result<(), DbError> {
    diesel::sql_query(
        "SELECT count(pg_advisory_xact_lock(k)) AS locked FROM unnest($1::bigint[]) AS k",
    )
    .bind::<Array<BigInt>, _>(lock_keys(call_ids))
    .prepared()
    .execute(conn)
    .await?;
    Ok(())
}

/// Tries to take the transaction-scoped advisory lock of each leg (or message) of
/// [`lock_legs`] without waiting; returns the ids another transaction holds (their locks are
/// not taken). The worker leaves the events of those legs pending for a later batch instead
/// of waiting for the holder to commit: consecutive batches of a backlog share legs (a call's
/// events arrive seconds apart), and waiting serialised concurrent batches.
///
/// # Errors
/// [`DbError`] from the query.
pub async fn try_lock_legs(
    conn: &mut AsyncPgConnection,
    call_ids: &[i64],
) -> Result<Vec<i64>, DbError> {
    #[derive(QueryableByName)]
    struct Held {
        #[diesel(sql_type = BigInt)]
        k: i64,
    }
    let held: Vec<Held> = diesel::sql_query(
        "SELECT k FROM unnest($1::bigint[]) AS k WHERE NOT pg_try_advisory_xact_lock(k)",
    )
    .bind::<Array<BigInt>, _>(lock_keys(call_ids))
    .prepared()
    .load(conn)
    .await?;
    Ok(held.into_iter().map(|h| h.k).collect())
}

/// The advisory-lock keys of legs: each id once, ascending (the order [`lock_legs`] needs).
fn lock_keys(call_ids: &[i64]) -> Vec<i64> {
    let mut keys = call_ids.to_vec();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// An applied event, as stored.
#[derive(Debug, Clone, QueryableByName)]
pub struct StoredEvent {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub app_id: Uuid,
    #[diesel(sql_type = BigInt)]
    pub dialpad_id: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub dedupe_key: String,
    /// Decoded by the reader (`domain::call::CallEvent::parse_text`).
    #[diesel(sql_type = diesel::sql_types::Json)]
    pub payload: crate::JsonText,
}

/// Every applied (`done`) event of `kind` (a call or an SMS: the kinds with an event log) for the given `(app_id,
/// dialpad_id)` pairs: a leg's or a message's event log.
///
/// One index probe per pair (`webhook_events_call_leg_idx`, `webhook_events_message_idx`):
/// each pair is looked up on its own (a `LATERAL` subquery that `OFFSET 0` keeps from being
/// flattened into a join). As a plain join, the plan depended on the statistics: while they
/// say no event is `done` yet (a backlog queued into a new database, or an outage replay
/// before autovacuum), the planner expects one row and scans the whole event log per batch
/// (`EXPLAIN`, 20,000 pending events: Seq Scan on `webhook_events`, then a nested loop over the
/// pairs). Now: Nested Loop over the pairs' Function Scan, Index Scan using
/// `webhook_events_call_leg_idx` per pair, whatever the statistics.
///
/// # Errors
/// [`DbError`] from the query.
pub async fn applied_events(
    conn: &mut AsyncPgConnection,
    kind: EventKind,
    pairs: &[(Uuid, i64)],
) -> Result<Vec<StoredEvent>, DbError> {
    let (app_ids, dialpad_ids): (Vec<Uuid>, Vec<i64>) = pairs.iter().copied().unzip();
    // The kind as a literal, so the query matches its partial index
    // (`webhook_events_call_leg_idx`, `webhook_events_message_idx`).
    // (`as_str` is one of a fixed set of names, so it is safe to inline.)
    let kind = kind.as_str();
    let query = format!(
        "SELECT e.app_id, e.dialpad_id, e.dedupe_key, e.payload \
         FROM unnest($1::uuid[], $2::bigint[]) AS k (app_id, dialpad_id) \
         CROSS JOIN LATERAL (SELECT e.app_id, e.dialpad_id, e.dedupe_key, e.payload \
             FROM webhook_events e \
             WHERE e.app_id = k.app_id AND e.dialpad_id = k.dialpad_id \
               AND e.kind = '{kind}' AND e.status = 'done' \
             OFFSET 0) AS e"
    );
    Ok(diesel::sql_query(query)
        .bind::<Array<diesel::sql_types::Uuid>, _>(app_ids)
        .bind::<Array<BigInt>, _>(dialpad_ids)
        .prepared()
        .load(conn)
        .await?)
}

/// Inserts or replaces folded legs (one statement for the whole batch, `crate::unnest`).
/// Callers hold the legs' locks ([`lock_legs`]), and each row is the fold of every event, so
/// replacing is correct. `logical_call_id` is written on insert only: `logical_calls::relink`
/// owns it after that.
///
/// Returns the legs as stored: `rows`, each with the `logical_call_id` its stored row has (the
/// row's guess for a new leg, the kept one for an existing leg), so that the relink need not
/// read back the legs just written.
///
/// # Errors
/// [`DbError`] from the query.
pub async fn upsert_legs(
    conn: &mut AsyncPgConnection,
    mut rows: Vec<LegRow>,
) -> Result<Vec<LegRow>, DbError> {
    if rows.is_empty() {
        return Ok(rows);
    }
    let stored: HashMap<(Uuid, i64), Option<i64>> = LegUpsert::execute(conn, &rows)
        .await?
        .into_iter()
        .map(|s| ((s.app_id, s.call_id), s.logical_call_id))
        .collect();
    for row in &mut rows {
        // An upsert returns every row it inserts or updates.
        row.logical_call_id = *stored
            .get(&(row.app_id, row.call_id))
            .ok_or(diesel::result::Error::NotFound)?;
    }
    Ok(rows)
}

/// A leg's key and stored `logical_call_id`, as the leg upsert returns them.
#[derive(QueryableByName)]
struct StoredLink {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    app_id: Uuid,
    #[diesel(sql_type = BigInt)]
    call_id: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    logical_call_id: Option<i64>,
}

crate::unnest::unnest_upsert! {
    /// The `calls` upsert: every column it writes, declared once. On a conflict every one of
    /// them but the key and `logical_call_id` is replaced, and `updated_at` set to `now()`.
    struct LegUpsert for LegRow;
        table: "calls",
        conflict: ["app_id", "call_id"],
        keep: ["logical_call_id"],
        returning: "app_id, call_id, logical_call_id" as StoredLink,
        columns: [
            app_id: diesel::sql_types::Uuid = "uuid",
            call_id: BigInt = "bigint",
            master_call_id: Nullable<BigInt> = "bigint",
            entry_point_call_id: Nullable<BigInt> = "bigint",
            operator_call_id: Nullable<BigInt> = "bigint",
            direction: Nullable<Text> = "text",
            from_number: Nullable<Text> = "text",
            to_number: Nullable<Text> = "text",
            external_number: Nullable<Text> = "text",
            internal_number: Nullable<Text> = "text",
            state: Text = "text",
            status: Text = "text",
            started_at: Nullable<Timestamptz> = "timestamptz",
            rang_at: Nullable<Timestamptz> = "timestamptz",
            queued_at: Nullable<Timestamptz> = "timestamptz",
            connected_at: Nullable<Timestamptz> = "timestamptz",
            ended_at: Nullable<Timestamptz> = "timestamptz",
            duration_ms: Nullable<Double> = "double precision",
            total_duration_ms: Nullable<Double> = "double precision",
            talk_time_ms: Nullable<BigInt> = "bigint",
            hold_time_ms: Nullable<BigInt> = "bigint",
            was_recorded: Bool = "boolean",
            is_transferred: Bool = "boolean",
            mos_score: Nullable<Double> = "double precision",
            recording_url: Nullable<Text> = "text",
            voicemail_link: Nullable<Text> = "text",
            transcription_text: Nullable<Text> = "text",
            target_id: Nullable<Text> = "text",
            target: Nullable<Jsonb> = "jsonb",
            contact: Nullable<Jsonb> = "jsonb",
            custom_data: Nullable<Text> = "text",
            event_count: Integer = "integer",
            last_event_at: Nullable<Timestamptz> = "timestamptz",
            voicemail_recording_id: Nullable<Text> = "text",
            voicemail_duration_ms: Nullable<BigInt> = "bigint",
            recording_id: Nullable<Text> = "text",
            recap_summary: Nullable<Text> = "text",
            recap_outcome: Nullable<Text> = "text",
            recap_action_items: Nullable<Jsonb> = "jsonb",
            recap_purposes: Nullable<Jsonb> = "jsonb",
            transferred_from: Nullable<Jsonb> = "jsonb",
            logical_call_id: Nullable<BigInt> = "bigint",
        ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upsert_writes_every_column_of_calls() {
        let missing = crate::unnest::columns_missing_from(
            "calls",
            LegUpsert::COLUMNS,
            &["id", "created_at", "updated_at"],
        );
        assert!(missing.is_empty(), "not in the calls upsert: {missing:?}");
    }
}
