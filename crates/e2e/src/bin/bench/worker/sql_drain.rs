//! The worker's ceiling: the same backlog drained by SQL alone, one statement per batch.
//!
//! Each batch is one transaction (with `synchronous_commit = off`, as the worker's) of one
//! statement that makes the row changes the worker's batch makes, and nothing more: the
//! claimed events' queue entries are locked and deleted and the events marked `done` (through
//! the same triggers), each leg the batch touches is upserted into `calls` from its latest
//! event, and each of their phone calls into `logical_calls`. What it leaves out is what the
//! worker adds on top of those writes: the fair claim across tenants, the leg and relink locks,
//! the read of each leg's applied events (a leg is a fold of its whole log), the call graph
//! walk, the status rules, voicemails and push announcements, and the client's round trips.
//! So the ratio worker / SQL-only is what that correctness costs beside the database's own
//! price for the same rows.

use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

/// One batch: claim `$1` queued events by id, mark them done, upsert their legs and phone
/// calls. Returns the events claimed.
const BATCH: &str = r"
WITH claimed AS (
    SELECT event_id FROM event_queue WHERE run_at <= now()
    ORDER BY event_id LIMIT $1
    FOR UPDATE SKIP LOCKED
), events AS (
    UPDATE webhook_events e
    SET status = 'done', attempts = e.attempts + 1, processed_at = now(), last_error = NULL
    FROM claimed c WHERE e.id = c.event_id
    RETURNING e.app_id, e.payload::jsonb AS payload
), latest AS (
    SELECT DISTINCT ON (app_id, (payload->>'call_id')::bigint)
        app_id, (payload->>'call_id')::bigint AS call_id, payload AS p,
        count(*) OVER (PARTITION BY app_id, (payload->>'call_id')::bigint)::integer AS events
    FROM events
    ORDER BY app_id, (payload->>'call_id')::bigint, (payload->>'event_timestamp')::bigint DESC
), legs AS (
    INSERT INTO calls AS c (app_id, call_id, master_call_id, entry_point_call_id,
        operator_call_id, direction, from_number, to_number, external_number, internal_number,
        state, status, started_at, rang_at, queued_at, connected_at, ended_at, duration_ms,
        total_duration_ms, talk_time_ms, hold_time_ms, was_recorded, is_transferred, mos_score,
        voicemail_link, transcription_text, target_id, target, contact, custom_data,
        event_count, last_event_at, logical_call_id)
    SELECT app_id, call_id, (p->>'master_call_id')::bigint, (p->>'entry_point_call_id')::bigint,
        (p->>'operator_call_id')::bigint, p->>'direction',
        CASE WHEN p->>'direction' = 'inbound' THEN p->>'external_number' ELSE p->>'internal_number' END,
        CASE WHEN p->>'direction' = 'inbound' THEN p->>'internal_number' ELSE p->>'external_number' END,
        p->>'external_number', p->>'internal_number', p->>'state', p->>'state',
        to_timestamp((p->>'date_started')::float8 / 1000), to_timestamp((p->>'date_rang')::float8 / 1000),
        to_timestamp((p->>'date_queued')::float8 / 1000), to_timestamp((p->>'date_connected')::float8 / 1000),
        to_timestamp((p->>'date_ended')::float8 / 1000), (p->>'duration')::float8,
        (p->>'total_duration')::float8, (p->>'talk_time')::float8::bigint, (p->>'hold_time')::float8::bigint,
        coalesce((p->>'was_recorded')::boolean, false), coalesce((p->>'is_transferred')::boolean, false),
        (p->>'mos_score')::float8, p->>'voicemail_link', p->>'transcription_text', p->'target'->>'id',
        p->'target', p->'contact', p->>'custom_data', events,
        to_timestamp((p->>'event_timestamp')::float8 / 1000),
        coalesce((p->>'master_call_id')::bigint, (p->>'entry_point_call_id')::bigint, call_id)
    FROM latest
    ON CONFLICT (app_id, call_id) DO UPDATE SET
        master_call_id = excluded.master_call_id, entry_point_call_id = excluded.entry_point_call_id,
        operator_call_id = excluded.operator_call_id, direction = excluded.direction,
        from_number = excluded.from_number, to_number = excluded.to_number,
        external_number = excluded.external_number, internal_number = excluded.internal_number,
        state = excluded.state, status = excluded.status,
        started_at = coalesce(c.started_at, excluded.started_at), rang_at = excluded.rang_at,
        queued_at = excluded.queued_at, connected_at = excluded.connected_at,
        ended_at = excluded.ended_at, duration_ms = excluded.duration_ms,
        total_duration_ms = excluded.total_duration_ms, talk_time_ms = excluded.talk_time_ms,
        hold_time_ms = excluded.hold_time_ms, was_recorded = excluded.was_recorded,
        is_transferred = excluded.is_transferred, mos_score = excluded.mos_score,
        voicemail_link = excluded.voicemail_link, transcription_text = excluded.transcription_text,
        target_id = excluded.target_id, target = excluded.target, contact = excluded.contact,
        custom_data = excluded.custom_data, event_count = c.event_count + excluded.event_count,
        last_event_at = greatest(c.last_event_at, excluded.last_event_at),
        logical_call_id = excluded.logical_call_id, updated_at = now()
    RETURNING c.*
), phone_calls AS (
    INSERT INTO logical_calls AS l (app_id, logical_call_id, status, direction, from_number,
        to_number, started_at, answered_at, ended_at, talk_time_ms, hold_time_ms, duration_ms,
        total_duration_ms, transferred, was_recorded, contact, target, leg_count, last_event_at,
        mos_score)
    SELECT app_id, logical_call_id, max(status), max(direction), max(from_number), max(to_number),
        min(started_at), min(connected_at), max(ended_at), coalesce(sum(talk_time_ms), 0),
        coalesce(sum(hold_time_ms), 0), max(duration_ms)::bigint, max(total_duration_ms)::bigint,
        bool_or(is_transferred), bool_or(was_recorded), (array_agg(contact))[1],
        (array_agg(target))[1], count(*)::integer, max(last_event_at), max(mos_score)
    FROM legs GROUP BY app_id, logical_call_id
    ON CONFLICT (app_id, logical_call_id) DO UPDATE SET
        status = excluded.status, direction = excluded.direction,
        from_number = excluded.from_number, to_number = excluded.to_number,
        started_at = least(l.started_at, excluded.started_at),
        answered_at = least(l.answered_at, excluded.answered_at),
        ended_at = greatest(l.ended_at, excluded.ended_at),
        talk_time_ms = excluded.talk_time_ms, hold_time_ms = excluded.hold_time_ms,
        duration_ms = excluded.duration_ms, total_duration_ms = excluded.total_duration_ms,
        transferred = excluded.transferred, was_recorded = excluded.was_recorded,
        contact = excluded.contact, target = excluded.target,
        leg_count = greatest(l.leg_count, excluded.leg_count),
        last_event_at = greatest(l.last_event_at, excluded.last_event_at),
        mos_score = excluded.mos_score, updated_at = now()
    RETURNING 1
)
SELECT (SELECT count(*) FROM events) AS claimed";

#[derive(QueryableByName)]
struct Claimed {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    claimed: i64,
}

/// Drains every queued event of the database on `conn`, `batch` at a time, by SQL alone (see
/// the module docs); returns how many it drained.
pub async fn drain_by_sql(conn: &mut AsyncPgConnection, batch: i64) -> anyhow::Result<usize> {
    // As a worker does when it starts: planned from statistics of an empty queue, the queue
    // trigger's delete scans the whole queue once per completed event.
    db::queue::vacuum(conn).await?;
    let mut drained = 0;
    loop {
        let claimed = conn
            .transaction(async |conn| {
                conn.batch_execute("SET LOCAL synchronous_commit = off")
                    .await?;
                diesel::sql_query(BATCH)
                    .bind::<diesel::sql_types::BigInt, _>(batch)
                    .get_result::<Claimed>(conn)
                    .await
            })
            .await?
            .claimed;
        if claimed == 0 {
            return Ok(drained);
        }
        let before = drained;
        drained += usize::try_from(claimed)?;
        // As the worker does (`db::queue::vacuum`), so claims do not step over dead entries.
        if drained / db::queue::VACUUM_AFTER_EVENTS > before / db::queue::VACUUM_AFTER_EVENTS {
            db::queue::vacuum(conn).await?;
        }
    }
}
