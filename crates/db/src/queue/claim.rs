//! Claiming due events, shared fairly between tenants and served in lanes (see the module docs).

use super::*;
use crate::prepared::PrepareOnce;

/// A claimed event, locked by the claiming transaction until it commits or rolls back.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = webhook_events)]
pub struct ClaimedEvent {
    pub id: i64,
    pub app_id: Option<Uuid>,
    pub kind: String,
    pub dedupe_key: String,
    /// Decoded by the worker (`domain::call::CallEvent::parse_text`).
    pub payload: crate::JsonText,
    /// Attempts made before this one.
    pub attempts: i32,
    /// The `x-request-id` ingest answered it with.
    pub request_id: Option<String>,
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
    .prepared()
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
    .prepared()
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
