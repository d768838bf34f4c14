//! Logical calls (`logical_calls`) and voicemails (`voicemails`), rebuilt from the legs in
//! `calls` whenever a leg changes.
//!
//! [`relink`] recomputes, for the legs just written, their whole connected group of legs (the
//! call graph of `domain::logical_call`): each leg's `logical_call_id`, the aggregated
//! `logical_calls` rows (dropping rows of ids that stopped being a group's id when two groups
//! merged), and the `voicemails` rows of the group's legs. It runs under a per-app
//! transaction-scoped advisory lock, so two workers never relink one app's calls at once: the
//! later one sees the earlier one's committed legs, and the last to commit sees every leg. The
//! result depends only on the set of legs, so it converges like the leg fold.
//!
//! # Cost: the written legs' graphs, never the tenant's history
//! The graph is walked breadth-first, one query per level ([`MAX_CALL_GRAPH_DEPTH`] at most;
//! Dialpad's graphs are two or three levels deep), each query one index lookup per id and
//! column. Everything else is keyed by primary key. So a batch costs the same whether its
//! tenant has a hundred calls or a million.
//!
//! # Bounded call graphs
//! A group larger than `max_legs` legs (`WORKER_MAX_CALL_GRAPH_LEGS`, default 1,000) is not
//! followed further: each lookup reads at most `max_legs + 1` legs (lowest `call_id` first) and
//! a group that has grown past the bound gets no further lookups. The written legs are stored
//! as always; the group is linked and aggregated from the legs read (so its `leg_count` and
//! totals cover those, not the whole graph), its `logical_calls.graph_truncated` is set, and a
//! warning is logged once per logical call, when that flag is first set. No real phone call has
//! a thousand legs: such a graph is a data error or abuse, and this keeps it from slowing the
//! tenant's other calls and every other tenant.

mod graph;

use graph::CallGraph;
pub use graph::MAX_CALL_GRAPH_DEPTH;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Double, Integer, Jsonb, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::call::CallLeg;
use domain::logical_call::{LegLinks, LogicalCall, link};
use serde_json::Value;
use uuid::Uuid;

use crate::DbError;
use crate::calls::{LegRow, party_json};
use crate::prepared::PrepareOnce;
use crate::push;
use crate::schema::{logical_calls, voicemails};

/// Namespace of the per-app relink locks (`pg_advisory_xact_lock(int, int)`): the two-key
/// lock space is separate from the one-key space of the leg locks.
const RELINK_LOCK_CLASS: i32 = 0x4c43;

/// A `logical_calls` row.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = logical_calls)]
pub struct LogicalCallRow {
    pub app_id: Uuid,
    pub logical_call_id: i64,
    pub status: String,
    pub direction: Option<String>,
    pub from_number: Option<String>,
    pub to_number: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub answered_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    /// Milliseconds.
    pub talk_time_ms: i64,
    /// Milliseconds.
    pub hold_time_ms: i64,
    /// Milliseconds.
    pub duration_ms: Option<i64>,
    /// Milliseconds.
    pub total_duration_ms: Option<i64>,
    pub transferred: bool,
    pub first_answered_by: Option<Value>,
    pub final_handler: Option<Value>,
    pub voicemail: bool,
    pub was_recorded: bool,
    pub contact: Option<Value>,
    pub target: Option<Value>,
    pub leg_count: i32,
    pub last_event_at: Option<DateTime<Utc>>,
    pub recording_url: Option<String>,
    pub mos_score: Option<f64>,
}

impl LogicalCallRow {
    fn new(app_id: Uuid, call: LogicalCall) -> Self {
        LogicalCallRow {
            app_id,
            logical_call_id: call.logical_call_id,
            status: call.status.as_str().to_owned(),
            direction: call.direction,
            from_number: call.from_number,
            to_number: call.to_number,
            started_at: call.started_at,
            answered_at: call.answered_at,
            ended_at: call.ended_at,
            talk_time_ms: call.talk_time_ms,
            hold_time_ms: call.hold_time_ms,
            duration_ms: call.duration_ms,
            total_duration_ms: call.total_duration_ms,
            transferred: call.transferred,
            first_answered_by: call.first_answered_by.as_ref().map(party_json),
            final_handler: call.final_handler.as_ref().map(party_json),
            voicemail: call.voicemail,
            was_recorded: call.was_recorded,
            contact: call.contact.as_ref().map(party_json),
            target: call.target.as_ref().map(party_json),
            leg_count: call.leg_count,
            last_event_at: call.last_event_at,
            recording_url: call.recording_url,
            mos_score: call.mos_score,
        }
    }
}

/// A `voicemails` row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = voicemails)]
pub struct VoicemailRow {
    pub app_id: Uuid,
    pub call_id: i64,
    pub logical_call_id: Option<i64>,
    pub from_number: Option<String>,
    pub to_number: Option<String>,
    pub contact: Option<Value>,
    pub target: Option<Value>,
    /// Milliseconds.
    pub duration_ms: Option<i64>,
    pub link: Option<String>,
    pub recording_id: Option<String>,
    pub transcription_text: Option<String>,
    pub left_at: Option<DateTime<Utc>>,
}

impl VoicemailRow {
    /// The voicemail of a leg, if one was left on it (`voicemail_uploaded` gave its link).
    fn of_leg(app_id: Uuid, logical_call_id: i64, leg: &CallLeg) -> Option<Self> {
        leg.voicemail_link.as_ref()?;
        Some(VoicemailRow {
            app_id,
            call_id: leg.call_id,
            logical_call_id: Some(logical_call_id),
            from_number: leg.from_number().map(str::to_owned),
            to_number: leg.to_number().map(str::to_owned),
            contact: leg.contact.as_ref().map(party_json),
            target: leg.target.as_ref().map(party_json),
            duration_ms: leg.voicemail_duration_ms,
            link: leg.voicemail_link.clone(),
            recording_id: leg.voicemail_recording_id.clone(),
            transcription_text: leg.transcription_text.clone(),
            // The leg's end: when the caller finished leaving it.
            left_at: leg.ended_at.or(leg.last_event_at),
        })
    }
}

/// Recomputes the logical calls of the groups containing `legs` (just written in this
/// transaction, as stored: `crate::calls::upsert_legs` returns them), reading at most about
/// `max_legs` legs of each group (see the module docs, *Bounded call graphs*). Returns what
/// changed for tenants that announce their changes, as announcements for `push::announce`.
///
/// # Errors
/// [`DbError`] from the queries.
#[must_use = "the announcements must be written with push::announce"]
pub async fn relink(
    conn: &mut AsyncPgConnection,
    legs: Vec<LegRow>,
    max_legs: usize,
) -> Result<Vec<push::Announcement>, DbError> {
    if legs.is_empty() {
        return Ok(Vec::new());
    }
    let apps: Vec<Uuid> = legs
        .iter()
        .map(|leg| leg.app_id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    diesel::sql_query(
        "SELECT count(pg_advisory_xact_lock($1, hashtext(a::text))) AS locked \
         FROM unnest($2::uuid[]) AS a",
    )
    .bind::<diesel::sql_types::Integer, _>(RELINK_LOCK_CLASS)
    .bind::<Array<diesel::sql_types::Uuid>, _>(&apps)
    .prepared()
    .execute(conn)
    .await?;

    let max_legs = max_legs.max(1);
    let mut graph = CallGraph::walk(conn, legs, max_legs).await?;
    let oversized = graph.oversized_groups(max_legs);
    let mut by_app: BTreeMap<Uuid, Vec<LegRow>> = BTreeMap::new();
    for ((app_id, _), call) in std::mem::take(&mut graph.legs) {
        by_app.entry(app_id).or_default().push(call);
    }

    let mut relinked: Vec<(Uuid, i64, i64)> = Vec::new();
    let mut stale: Vec<(Uuid, i64)> = Vec::new();
    let mut truncated: BTreeSet<(Uuid, i64)> = BTreeSet::new();
    let mut rows = Vec::new();
    let mut voicemail_rows = Vec::new();
    for (app_id, calls) in by_app {
        // Each leg's stored `logical_call_id`, beside the leg.
        let (stored, legs): (Vec<Option<i64>>, Vec<CallLeg>) = calls
            .into_iter()
            .map(|call| (call.logical_call_id, call.into_leg()))
            .unzip();
        let links = link(&legs.iter().map(LegLinks::from).collect::<Vec<_>>());
        let mut groups: BTreeMap<i64, Vec<&CallLeg>> = BTreeMap::new();
        for (stored, leg) in stored.into_iter().zip(&legs) {
            let logical_call_id = links[&leg.call_id];
            if stored != Some(logical_call_id) {
                relinked.push((app_id, leg.call_id, logical_call_id));
                stale.extend(stored.map(|old| (app_id, old)));
            }
            if oversized.contains(&graph.groups.find((app_id, leg.call_id))) {
                truncated.insert((app_id, logical_call_id));
            }
            groups.entry(logical_call_id).or_default().push(leg);
            voicemail_rows.extend(VoicemailRow::of_leg(app_id, logical_call_id, leg));
        }
        stale.retain(|(stale_app, old)| *stale_app != app_id || !groups.contains_key(old));
        rows.extend(groups.iter().filter_map(|(id, legs)| {
            LogicalCall::aggregate(*id, legs).map(|call| LogicalCallRow::new(app_id, call))
        }));
    }

    // Push: the stored state of the calls of subscribing tenants, before this write changes it.
    let subscribed = push::subscribed_apps(conn, &apps).await?;
    let announced: Vec<LogicalCallRow> = rows
        .iter()
        .filter(|row| subscribed.contains(&row.app_id))
        .cloned()
        .collect();
    let keys: Vec<(Uuid, i64)> = announced
        .iter()
        .map(|row| (row.app_id, row.logical_call_id))
        .collect();
    let before = push::calls_before(conn, &keys).await?;
    let announced_voicemails: Vec<VoicemailRow> = voicemail_rows
        .iter()
        .filter(|v| subscribed.contains(&v.app_id))
        .cloned()
        .collect();
    let new_voicemails = push::new_voicemails(conn, &announced_voicemails).await?;

    set_logical_ids(conn, &relinked).await?;
    delete_logical_calls(conn, &stale).await?;
    upsert_logical_calls(conn, &rows).await?;
    upsert_voicemails(conn, &voicemail_rows).await?;
    let announcements =
        push::call_change_announcements(conn, &before, &announced, &new_voicemails).await?;
    mark_truncated(conn, &truncated, max_legs).await?;
    Ok(announcements)
}

/// Flags the logical calls whose graph was cut, logging each one the first time only (the flag
/// remembers it across batches, workers and restarts).
async fn mark_truncated(
    conn: &mut AsyncPgConnection,
    truncated: &BTreeSet<(Uuid, i64)>,
    max_legs: usize,
) -> Result<(), DbError> {
    #[derive(QueryableByName)]
    struct Flagged {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        app_id: Uuid,
        #[diesel(sql_type = BigInt)]
        logical_call_id: i64,
    }
    if truncated.is_empty() {
        return Ok(());
    }
    let (app_ids, ids): (Vec<Uuid>, Vec<i64>) = truncated.iter().copied().unzip();
    let flagged: Vec<Flagged> = diesel::sql_query(
        "UPDATE logical_calls l SET graph_truncated = true \
         FROM unnest($1::uuid[], $2::bigint[]) AS t (app_id, id) \
         WHERE l.app_id = t.app_id AND l.logical_call_id = t.id AND NOT l.graph_truncated \
         RETURNING l.app_id, l.logical_call_id",
    )
    .bind::<Array<diesel::sql_types::Uuid>, _>(app_ids)
    .bind::<Array<BigInt>, _>(ids)
    .prepared()
    .load(conn)
    .await?;
    for call in flagged {
        tracing::warn!(
            tenant.id = %call.app_id,
            call.logical_id = call.logical_call_id,
            call_graph.max_legs = max_legs,
            "Call graph larger than the bound: not followed further; this logical call is \
             linked and aggregated from the legs found within it."
        );
    }
    Ok(())
}

async fn set_logical_ids(
    conn: &mut AsyncPgConnection,
    relinked: &[(Uuid, i64, i64)],
) -> Result<(), DbError> {
    if relinked.is_empty() {
        return Ok(());
    }
    let app_ids: Vec<Uuid> = relinked.iter().map(|r| r.0).collect();
    let call_ids: Vec<i64> = relinked.iter().map(|r| r.1).collect();
    let logical_ids: Vec<i64> = relinked.iter().map(|r| r.2).collect();
    diesel::sql_query(
        "UPDATE calls SET logical_call_id = v.logical_call_id \
         FROM unnest($1::uuid[], $2::bigint[], $3::bigint[]) AS v (app_id, call_id, logical_call_id) \
         WHERE calls.app_id = v.app_id AND calls.call_id = v.call_id",
    )
    .bind::<Array<diesel::sql_types::Uuid>, _>(app_ids)
    .bind::<Array<BigInt>, _>(call_ids)
    .bind::<Array<BigInt>, _>(logical_ids)
    .prepared()
    .execute(conn)
    .await?;
    Ok(())
}

async fn delete_logical_calls(
    conn: &mut AsyncPgConnection,
    stale: &[(Uuid, i64)],
) -> Result<(), DbError> {
    if stale.is_empty() {
        return Ok(());
    }
    let (app_ids, ids): (Vec<Uuid>, Vec<i64>) = stale.iter().copied().unzip();
    diesel::sql_query(
        "DELETE FROM logical_calls USING unnest($1::uuid[], $2::bigint[]) AS s (app_id, id) \
         WHERE logical_calls.app_id = s.app_id AND logical_calls.logical_call_id = s.id",
    )
    .bind::<Array<diesel::sql_types::Uuid>, _>(app_ids)
    .bind::<Array<BigInt>, _>(ids)
    .prepared()
    .execute(conn)
    .await?;
    Ok(())
}

/// One statement for the whole batch (`crate::unnest`).
async fn upsert_logical_calls(
    conn: &mut AsyncPgConnection,
    rows: &[LogicalCallRow],
) -> Result<(), DbError> {
    if rows.is_empty() {
        return Ok(());
    }
    LogicalCallUpsert::execute(conn, rows).await?;
    Ok(())
}

crate::unnest::unnest_upsert! {
    /// The `logical_calls` upsert: every column it writes, declared once. On a conflict every
    /// one of them but the key is replaced, and `updated_at` set to `now()`.
    struct LogicalCallUpsert for LogicalCallRow;
        table: "logical_calls",
        conflict: ["app_id", "logical_call_id"],
        keep: [],
        columns: [
            app_id: diesel::sql_types::Uuid = "uuid",
            logical_call_id: BigInt = "bigint",
            status: Text = "text",
            direction: Nullable<Text> = "text",
            from_number: Nullable<Text> = "text",
            to_number: Nullable<Text> = "text",
            started_at: Nullable<Timestamptz> = "timestamptz",
            answered_at: Nullable<Timestamptz> = "timestamptz",
            ended_at: Nullable<Timestamptz> = "timestamptz",
            talk_time_ms: BigInt = "bigint",
            hold_time_ms: BigInt = "bigint",
            duration_ms: Nullable<BigInt> = "bigint",
            total_duration_ms: Nullable<BigInt> = "bigint",
            transferred: Bool = "boolean",
            first_answered_by: Nullable<Jsonb> = "jsonb",
            final_handler: Nullable<Jsonb> = "jsonb",
            voicemail: Bool = "boolean",
            was_recorded: Bool = "boolean",
            contact: Nullable<Jsonb> = "jsonb",
            target: Nullable<Jsonb> = "jsonb",
            leg_count: Integer = "integer",
            last_event_at: Nullable<Timestamptz> = "timestamptz",
            recording_url: Nullable<Text> = "text",
            mos_score: Nullable<Double> = "double precision",
        ]
}

crate::unnest::unnest_upsert! {
    /// The `voicemails` upsert: every column it writes, declared once. On a conflict every one
    /// of them but the key is replaced, and `updated_at` set to `now()`.
    struct VoicemailUpsert for VoicemailRow;
    table: "voicemails",
    conflict: ["app_id", "call_id"],
    keep: [],
    columns: [
        app_id: diesel::sql_types::Uuid = "uuid",
        call_id: BigInt = "bigint",
        logical_call_id: Nullable<BigInt> = "bigint",
        from_number: Nullable<Text> = "text",
        to_number: Nullable<Text> = "text",
        contact: Nullable<Jsonb> = "jsonb",
        target: Nullable<Jsonb> = "jsonb",
        duration_ms: Nullable<BigInt> = "bigint",
        link: Nullable<Text> = "text",
        recording_id: Nullable<Text> = "text",
        transcription_text: Nullable<Text> = "text",
        left_at: Nullable<Timestamptz> = "timestamptz",
    ]
}

async fn upsert_voicemails(
    conn: &mut AsyncPgConnection,
    rows: &[VoicemailRow],
) -> Result<(), DbError> {
    if !rows.is_empty() {
        VoicemailUpsert::execute(conn, rows).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upsert_writes_every_column_of_logical_calls() {
        // `graph_truncated` and `push_sequence` are set by their own statements (`relink`, `push`).
        let missing = crate::unnest::columns_missing_from(
            "logical_calls",
            LogicalCallUpsert::COLUMNS,
            &[
                "created_at",
                "updated_at",
                "graph_truncated",
                "push_sequence",
            ],
        );
        assert!(
            missing.is_empty(),
            "not in the logical_calls upsert: {missing:?}"
        );
    }

    #[test]
    fn the_upsert_writes_every_column_of_voicemails() {
        let missing = crate::unnest::columns_missing_from(
            "voicemails",
            VoicemailUpsert::COLUMNS,
            &["created_at", "updated_at"],
        );
        assert!(
            missing.is_empty(),
            "not in the voicemails upsert: {missing:?}"
        );
    }
}
