//! Ending a claimed event in the claiming transaction: done, ignored or failed (retry with
//! backoff, or dead letter); and the vacuum that keeps claims fast.

use super::*;
use crate::prepared::PrepareOnce;

/// Vacuums and analyzes `event_queue`, so the entries of completed events stop costing claims
/// anything and the planner knows how big the backlog is (`SKIP_LOCKED`: returns at once if
/// another vacuum of it is running). Workers call it when they start and after every
/// [`VACUUM_AFTER_EVENTS`] events they complete: a large drain would otherwise leave hundreds of
/// thousands of dead entries at the head of the index until autovacuum's next round (up to a
/// minute), and every claim would step over them. (The statistics no longer steer any
/// per-batch plan: the claims use index scans only, and the queue triggers delete by primary
/// key, `= ANY` of the changed ids; when they joined the changed events with `event_queue`,
/// statistics of an empty queue made that a scan of the queue per changed event, 24 s for a
/// 500-event update with a 200k backlog, and statistics of a full one a scan of the whole queue
/// per batch, 20,000 entries read for 500.) On a table that holds only the backlog it takes
/// milliseconds. Must not run inside a transaction.
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
    .prepared()
    .execute(conn)
    .await?;
    Ok(())
}
