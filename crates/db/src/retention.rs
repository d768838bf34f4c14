//! Retention: deleting processed events older than a cutoff, in small batches, without losing
//! what the domain rows are built from.
//!
//! A leg or message row is the fold of its whole event log (`domain::call`, `domain::sms`), so
//! its events cannot simply be deleted: a late event would then fold without them. A unit
//! (leg or message) whose events are all processed and all older than the cutoff has its log
//! **replaced by one snapshot event** (`CallLeg::snapshot_event`, `Message::snapshot_event`;
//! `event_type = 'snapshot'`, status `done`), from which the fold rebuilds the same row. Events
//! of other kinds (contact, agent status, unknown) and `ignored` events are simply deleted.
//! `pending`, `dead` and `unroutable` events are never deleted: they are operators' business.
//!
//! Each batch is its own short transaction, and a unit is pruned under the same advisory lock
//! the worker folds it under, so pruning never blocks the queue nor races a late event.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::Value;
use uuid::Uuid;

use domain::event::EventKind;

use crate::DbError;
use crate::calls::{self, LegRow};
use crate::messages::MessageRow;
use crate::queue::{EventStatus, NewWebhookEvent};
use crate::schema::{calls as calls_table, messages, webhook_events};

/// `webhook_events.event_type` of a snapshot event.
pub const SNAPSHOT_EVENT_TYPE: &str = "snapshot";

/// What one batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Events scanned; 0 means the pass is over.
    pub scanned: usize,
    /// Legs and messages whose log was replaced by a snapshot.
    pub units: usize,
    /// Events deleted.
    pub deleted: usize,
    /// The highest event id scanned: the next batch starts after it.
    pub last_id: i64,
}

#[derive(QueryableByName)]
struct Candidate {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Uuid>)]
    app_id: Option<Uuid>,
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<BigInt>)]
    dialpad_id: Option<i64>,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    event_type: Option<String>,
}

/// Prunes one batch: the `limit` oldest processed events after `after_id` received before
/// `cutoff` (see the module docs). Call it with the returned `last_id` until `scanned` is 0.
///
/// # Errors
/// [`DbError`] from the queries; the batch is rolled back.
pub async fn prune_batch(
    conn: &mut AsyncPgConnection,
    cutoff: DateTime<Utc>,
    after_id: i64,
    limit: i64,
) -> Result<Pruned, DbError> {
    conn.transaction(async |conn| {
        let scanned: Vec<Candidate> = diesel::sql_query(
            "SELECT id, app_id, kind, dialpad_id, status, event_type FROM webhook_events \
             WHERE id > $1 AND received_at < $2 AND status IN ('done', 'ignored') \
             ORDER BY id LIMIT $3",
        )
        .bind::<BigInt, _>(after_id)
        .bind::<Timestamptz, _>(cutoff)
        .bind::<BigInt, _>(limit)
        .load(conn)
        .await?;
        let Some(last) = scanned.last() else {
            return Ok(Pruned::default());
        };
        let mut pruned = Pruned {
            scanned: scanned.len(),
            last_id: last.id,
            ..Pruned::default()
        };

        // Not folded into anything: delete outright.
        let loose: Vec<i64> = scanned
            .iter()
            .filter(|c| {
                c.status == EventStatus::Ignored.as_str()
                    || !matches!(
                        EventKind::parse(&c.kind),
                        Some(EventKind::Call | EventKind::Sms)
                    )
                    || c.app_id.is_none()
                    || c.dialpad_id.is_none()
            })
            .map(|c| c.id)
            .collect();
        pruned.deleted +=
            diesel::delete(webhook_events::table.filter(webhook_events::id.eq_any(&loose)))
                .execute(conn)
                .await?;

        // Units with an old, non-snapshot event.
        let mut units: Vec<(Uuid, EventKind, i64)> = scanned
            .iter()
            .filter(|c| c.status == EventStatus::Done.as_str())
            .filter(|c| c.event_type.as_deref() != Some(SNAPSHOT_EVENT_TYPE))
            .filter_map(
                |c| match (c.app_id, c.dialpad_id, EventKind::parse(&c.kind)) {
                    (Some(app_id), Some(id), Some(kind @ (EventKind::Call | EventKind::Sms))) => {
                        Some((app_id, kind, id))
                    }
                    _ => None,
                },
            )
            .collect();
        units.sort();
        units.dedup();
        if units.is_empty() {
            return Ok(pruned);
        }
        calls::lock_legs(conn, &units.iter().map(|u| u.2).collect::<Vec<_>>()).await?;
        let cold = cold_units(conn, &units, cutoff).await?;
        for (app_id, kind, dialpad_id) in cold {
            let snapshot = match kind {
                EventKind::Call => calls_table::table
                    .filter(calls_table::app_id.eq(app_id))
                    .filter(calls_table::call_id.eq(dialpad_id))
                    .select(LegRow::as_select())
                    .first(conn)
                    .await
                    .optional()?
                    .map(|leg| leg.into_leg().snapshot_event()),
                _ => messages::table
                    .filter(messages::app_id.eq(app_id))
                    .filter(messages::message_id.eq(dialpad_id))
                    .select(MessageRow::as_select())
                    .first(conn)
                    .await
                    .optional()?
                    .map(|message| message.to_message().snapshot_event()),
            };
            // No row (its fold never succeeded): keep the log, it is all there is.
            let Some(Value::Object(snapshot)) = snapshot else {
                continue;
            };
            let mut event = NewWebhookEvent::from_verified(Some(app_id), snapshot);
            event.event_type = Some(SNAPSHOT_EVENT_TYPE.to_owned());
            event.status = EventStatus::Done.as_str();
            diesel::insert_into(webhook_events::table)
                .values(&event)
                .on_conflict_do_nothing()
                .execute(conn)
                .await?;
            pruned.deleted += diesel::delete(
                webhook_events::table
                    .filter(webhook_events::app_id.eq(app_id))
                    .filter(webhook_events::kind.eq(kind.as_str()))
                    .filter(webhook_events::dialpad_id.eq(dialpad_id))
                    .filter(webhook_events::status.eq_any(["done", "ignored"]))
                    .filter(webhook_events::dedupe_key.ne(&event.dedupe_key)),
            )
            .execute(conn)
            .await?;
            pruned.units += 1;
        }
        Ok::<_, DbError>(pruned)
    })
    .await
}

/// The units all of whose events are processed and older than `cutoff`.
async fn cold_units(
    conn: &mut AsyncPgConnection,
    units: &[(Uuid, EventKind, i64)],
    cutoff: DateTime<Utc>,
) -> Result<Vec<(Uuid, EventKind, i64)>, DbError> {
    #[derive(QueryableByName)]
    struct Unit {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        app_id: Uuid,
        #[diesel(sql_type = BigInt)]
        dialpad_id: i64,
    }
    let mut by_kind: BTreeMap<EventKind, Vec<(Uuid, i64)>> = BTreeMap::new();
    for (app_id, kind, id) in units {
        by_kind.entry(*kind).or_default().push((*app_id, *id));
    }
    let mut cold = Vec::new();
    for (kind, pairs) in by_kind {
        let (app_ids, ids): (Vec<Uuid>, Vec<i64>) = pairs.into_iter().unzip();
        // The kind as a literal (one of our own names, never input), so each probe uses its
        // partial index.
        let query = format!(
            "SELECT u.app_id, u.id AS dialpad_id \
             FROM unnest($1::uuid[], $2::bigint[]) AS u (app_id, id) WHERE NOT EXISTS ( \
               SELECT 1 FROM webhook_events e WHERE e.app_id = u.app_id AND e.kind = '{}' \
               AND e.dialpad_id = u.id AND (e.received_at >= $3 OR e.status NOT IN ('done', 'ignored')))",
            kind.as_str()
        );
        let found: Vec<Unit> = diesel::sql_query(query)
            .bind::<Array<diesel::sql_types::Uuid>, _>(app_ids)
            .bind::<Array<BigInt>, _>(ids)
            .bind::<Timestamptz, _>(cutoff)
            .load(conn)
            .await?;
        cold.extend(found.into_iter().map(|u| (u.app_id, kind, u.dialpad_id)));
    }
    Ok(cold)
}
