//! The seeded history templates: 100 tenants, the large one with HISTORY calls, copied for
//! each run.

use super::*;

/// A database seeded with history, copied for each run.
#[derive(Debug)]
struct Template {
    db: ScratchDatabase,
    tenants: Tenants,
}

/// The seeded templates by history size: each seeded once per process, when first needed, and
/// dropped with this value.
#[derive(Debug)]
pub struct Templates {
    pub(super) lifecycles: Arc<Lifecycles>,
    seeded: BTreeMap<usize, Template>,
    swept: bool,
    copies: usize,
}

impl Templates {
    pub fn new() -> anyhow::Result<Templates> {
        Ok(Templates {
            lifecycles: Arc::new(Lifecycles::load()?),
            seeded: BTreeMap::new(),
            swept: false,
            copies: 0,
        })
    }

    async fn template(&mut self, history: usize) -> anyhow::Result<&Template> {
        if !self.swept {
            for name in ScratchDatabase::sweep().await? {
                println!("dropped {name}, left by an earlier run");
            }
            self.swept = true;
        }
        if !self.seeded.contains_key(&history) {
            let template = seed(&self.lifecycles, history).await?;
            self.seeded.insert(history, template);
        }
        self.seeded.get(&history).context("seeded")
    }

    /// A fresh copy of the template of `history`, and its tenants.
    pub(super) async fn copy(
        &mut self,
        history: usize,
    ) -> anyhow::Result<(ScratchDatabase, Tenants)> {
        self.copies += 1;
        let suffix = format!("run_{}", self.copies);
        let template = self.template(history).await?;
        let started = Instant::now();
        let db = template.db.clone_as(&suffix).await?;
        println!(
            "  copied the history {} template in {:.1?}",
            thousands(history),
            started.elapsed()
        );
        Ok((db, template.tenants.clone()))
    }

    /// Drops every template.
    pub fn drop_all(&mut self) {
        self.seeded.clear();
    }
}

/// Seeds a template: 100 tenants, the large one with `history` calls, each small one with
/// [`SMALL_HISTORY`]; their legs (`calls`), phone calls (`logical_calls`), voicemails and
/// applied events (`webhook_events`, `done`), one `INSERT … SELECT … FROM generate_series` per
/// table ([`history_statements`]); then what autovacuum would have done by then.
async fn seed(lifecycles: &Lifecycles, history: usize) -> anyhow::Result<Template> {
    use diesel_async::RunQueryDsl;
    println!(
        "history {}: seeding a template: the large tenant {} calls, {SMALL_TENANTS} small tenants {} calls each",
        thousands(history),
        thousands(history),
        thousands(SMALL_HISTORY),
    );
    let started = Instant::now();
    let db = ScratchDatabase::create(&format!("tpl_{history}"), "").await?;
    db::migrations::run_migrations(db.url()).await?;
    let mut conn = db.connect().await?;
    let large = new_app(&mut conn, "large call centre", LARGE_SECRET).await?;
    let mut small = Vec::with_capacity(SMALL_TENANTS);
    for n in 0..SMALL_TENANTS {
        small.push(new_app(&mut conn, &format!("small {n}"), SMALL_SECRET).await?);
    }
    let tenants = Tenants { large, small };
    apply_prototype(&db, &mut conn, lifecycles, tenants.prototype()).await?;

    create_functions(&mut conn, lifecycles).await?;
    let leg_lifecycles: Vec<i32> = lifecycles
        .fixture_leg_lifecycles()
        .iter()
        .map(|&n| i32::try_from(n))
        .collect::<Result<_, _>>()?;
    for (what, statement) in history_statements(history) {
        let step = Instant::now();
        let rows = diesel::sql_query(statement)
            .bind::<Array<diesel::sql_types::Uuid>, _>(tenants.all())
            .bind::<Array<BigInt>, _>(lifecycles.fixture_legs())
            .bind::<Array<Integer>, _>(&leg_lifecycles)
            .bind::<Array<BigInt>, _>(lifecycles.fixture_starts())
            .bind::<diesel::sql_types::Uuid, _>(tenants.prototype())
            .execute(&mut conn)
            .await
            .with_context(|| format!("seeding {what}"))?;
        println!("  {} {what} in {:.1?}", thousands(rows), step.elapsed());
    }
    // As autovacuum would have by then: statistics, hint bits and the visibility map; then a
    // checkpoint, so that writing out the seed does not land in the measurements.
    for statement in ["VACUUM ANALYZE", "CHECKPOINT"] {
        let step = Instant::now();
        diesel::sql_query(statement).execute(&mut conn).await?;
        println!("  {statement} in {:.1?}", step.elapsed());
    }
    drop(conn);
    println!(
        "history {}: template seeded in {:.1?}, {:.2} GB on disk",
        thousands(history),
        started.elapsed(),
        db.size().await? as f64 / 1e9
    );
    Ok(Template { db, tenants })
}

/// The prototype of seeded history: the fixture calls queued for `app_id` and applied by the
/// real worker, so the rows history copies have every column as the worker sets it.
async fn apply_prototype(
    db: &ScratchDatabase,
    conn: &mut AsyncPgConnection,
    lifecycles: &Lifecycles,
    app_id: Uuid,
) -> anyhow::Result<()> {
    use diesel_async::RunQueryDsl;
    let events: Vec<NewWebhookEvent> = lifecycles
        .fixture_events()
        .map(|event| {
            let Value::Object(event) = event.clone() else {
                unreachable!("fixtures are objects")
            };
            NewWebhookEvent::from_verified(Some(app_id), event)
        })
        .collect();
    diesel::insert_into(db::schema::webhook_events::table)
        .values(&events)
        .execute(conn)
        .await?;
    let applied = worker::Worker::build(worker::Settings::new(db.url()))
        .await?
        .drain()
        .await?;
    anyhow::ensure!(
        applied.done == events.len(),
        "prototype applied {applied:?}"
    );
    Ok(())
}

/// The session's SQL twins of [`Lifecycles`]: `pg_temp.bench_leg_id(call, fixture_leg)`, the id
/// a fixture leg takes in history call `call`, and `pg_temp.bench_lifecycle(call)`, the
/// lifecycle (index into the fixture lifecycles) that call follows.
async fn create_functions(
    conn: &mut AsyncPgConnection,
    lifecycles: &Lifecycles,
) -> anyhow::Result<()> {
    use diesel_async::RunQueryDsl;
    let list = |values: &[i64]| {
        values
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    let mix: Vec<i64> = MIX.iter().map(|&n| n as i64).collect();
    for function in [
        format!(
            "CREATE FUNCTION pg_temp.bench_leg_id(call bigint, fixture_leg bigint) RETURNS bigint \
             LANGUAGE sql IMMUTABLE AS $$ SELECT {LEG_ID_BASE} + (call * {LEG_SLOTS} \
             + array_position('{{{}}}'::bigint[], fixture_leg) - 1) * {DIALPAD_ID_STEP} $$",
            list(lifecycles.fixture_legs())
        ),
        format!(
            "CREATE FUNCTION pg_temp.bench_lifecycle(call bigint) RETURNS int \
             LANGUAGE sql IMMUTABLE AS $$ SELECT ('{{{}}}'::int[])[call % 10 + 1] $$",
            list(&mix)
        ),
    ] {
        diesel::sql_query(function).execute(conn).await?;
    }
    Ok(())
}

/// The seeding statements, one per table, each with what it seeds. Each history call copies
/// the prototype rows of its lifecycle with every leg id re-keyed and every time moved; the
/// calls are numbered from 0 (the large tenant's first, then [`SMALL_HISTORY`] per small
/// tenant) and are bound to: `$1` the tenants (the large one first), `$2` the fixture legs
/// and `$3` their lifecycles, `$4` each lifecycle's start in its fixtures, `$5` the prototype's
/// tenant.
fn history_statements(history: usize) -> [(&'static str, String); 4] {
    let total = history + SMALL_TENANTS * SMALL_HISTORY;
    let large_calls = history.max(1);
    // Call g < history is the large tenant's; then SMALL_HISTORY calls per small tenant. Each
    // tenant's calls are evenly spread over the year before TRAFFIC_START_MS; `shift_ms` moves
    // the call's fixture to its start.
    let with = format!(
        "WITH history AS ( \
             SELECT call, lifecycle, app_id, shift_ms, shift_ms * interval '1 millisecond' AS shift \
             FROM ( \
                 SELECT g AS call, pg_temp.bench_lifecycle(g) AS lifecycle, \
                     CASE WHEN g < {history} THEN $1[1] ELSE $1[2 + (g - {history}) / {SMALL_HISTORY}] END AS app_id, \
                     {TRAFFIC_START_MS} - CASE WHEN g < {history} \
                         THEN ({history} - g) * {HISTORY_SPAN_MS} / {large_calls} \
                         ELSE ({SMALL_HISTORY} - (g - {history}) % {SMALL_HISTORY}) * {HISTORY_SPAN_MS} / {SMALL_HISTORY} END \
                     - $4[pg_temp.bench_lifecycle(g) + 1] AS shift_ms \
                 FROM generate_series(0::bigint, {total}::bigint - 1) AS g \
             ) AS h \
         ), \
         legs AS (SELECT * FROM unnest($2::bigint[], $3::int[]) AS l (fixture_leg, lifecycle)), "
    );
    let id = |column: &str| format!("pg_temp.bench_leg_id(h.call, p.{column})");
    [
        (
            "legs (calls)",
            format!(
                "{with} prototype AS MATERIALIZED ( \
                     SELECT l.lifecycle, p.* FROM legs l JOIN calls p \
                     ON p.app_id = $5 AND p.call_id = l.fixture_leg) \
                 INSERT INTO calls (app_id, call_id, master_call_id, entry_point_call_id, \
                     operator_call_id, logical_call_id, direction, from_number, to_number, \
                     external_number, internal_number, state, status, started_at, rang_at, \
                     queued_at, connected_at, ended_at, duration_ms, total_duration_ms, \
                     talk_time_ms, hold_time_ms, was_recorded, is_transferred, mos_score, \
                     recording_url, voicemail_link, transcription_text, target_id, target, \
                     contact, custom_data, event_count, last_event_at, created_at, updated_at, \
                     voicemail_recording_id, voicemail_duration_ms, recording_id, recap_summary, \
                     recap_outcome, recap_action_items, recap_purposes, transferred_from) \
                 SELECT h.app_id, {}, {}, {}, {}, {}, p.direction, p.from_number, p.to_number, \
                     p.external_number, p.internal_number, p.state, p.status, \
                     p.started_at + h.shift, p.rang_at + h.shift, p.queued_at + h.shift, \
                     p.connected_at + h.shift, p.ended_at + h.shift, p.duration_ms, \
                     p.total_duration_ms, p.talk_time_ms, p.hold_time_ms, p.was_recorded, \
                     p.is_transferred, p.mos_score, p.recording_url, p.voicemail_link, \
                     p.transcription_text, p.target_id, p.target, p.contact, p.custom_data, \
                     p.event_count, p.last_event_at + h.shift, p.last_event_at + h.shift, \
                     p.last_event_at + h.shift, p.voicemail_recording_id, \
                     p.voicemail_duration_ms, p.recording_id, p.recap_summary, p.recap_outcome, \
                     p.recap_action_items, p.recap_purposes, p.transferred_from \
                 FROM history h JOIN prototype p USING (lifecycle)",
                id("call_id"),
                id("master_call_id"),
                id("entry_point_call_id"),
                id("operator_call_id"),
                id("logical_call_id"),
            ),
        ),
        (
            "phone calls (logical_calls)",
            format!(
                "{with} prototype AS MATERIALIZED ( \
                     SELECT l.lifecycle, p.* FROM legs l JOIN logical_calls p \
                     ON p.app_id = $5 AND p.logical_call_id = l.fixture_leg) \
                 INSERT INTO logical_calls (app_id, logical_call_id, status, direction, \
                     from_number, to_number, started_at, answered_at, ended_at, talk_time_ms, \
                     hold_time_ms, duration_ms, total_duration_ms, transferred, \
                     first_answered_by, final_handler, voicemail, was_recorded, contact, target, \
                     leg_count, last_event_at, created_at, updated_at) \
                 SELECT h.app_id, {}, p.status, p.direction, p.from_number, p.to_number, \
                     p.started_at + h.shift, p.answered_at + h.shift, p.ended_at + h.shift, \
                     p.talk_time_ms, p.hold_time_ms, p.duration_ms, p.total_duration_ms, \
                     p.transferred, p.first_answered_by, p.final_handler, p.voicemail, \
                     p.was_recorded, p.contact, p.target, p.leg_count, p.last_event_at + h.shift, \
                     p.last_event_at + h.shift, p.last_event_at + h.shift \
                 FROM history h JOIN prototype p USING (lifecycle)",
                id("logical_call_id"),
            ),
        ),
        (
            "voicemails",
            format!(
                "{with} prototype AS MATERIALIZED ( \
                     SELECT l.lifecycle, p.* FROM legs l JOIN voicemails p \
                     ON p.app_id = $5 AND p.call_id = l.fixture_leg) \
                 INSERT INTO voicemails (app_id, call_id, logical_call_id, from_number, \
                     to_number, contact, target, duration_ms, link, recording_id, \
                     transcription_text, left_at, created_at, updated_at) \
                 SELECT h.app_id, {}, {}, p.from_number, p.to_number, p.contact, p.target, \
                     p.duration_ms, p.link, p.recording_id, p.transcription_text, \
                     p.left_at + h.shift, p.left_at + h.shift, p.left_at + h.shift \
                 FROM history h JOIN prototype p USING (lifecycle)",
                id("call_id"),
                id("logical_call_id"),
            ),
        ),
        (
            "applied events (webhook_events, done)",
            format!(
                "{with} prototype AS MATERIALIZED ( \
                     SELECT l.lifecycle, e.* FROM legs l CROSS JOIN LATERAL ( \
                         SELECT * FROM webhook_events e \
                         WHERE e.app_id = $5 AND e.kind = 'call' AND e.dialpad_id = l.fixture_leg \
                         ORDER BY e.event_timestamp DESC LIMIT {HISTORY_EVENTS_PER_LEG}) AS e) \
                 INSERT INTO webhook_events (app_id, kind, event_type, dialpad_id, \
                     event_timestamp, dedupe_key, payload, status, attempts, run_at, \
                     received_at, processed_at) \
                 SELECT h.app_id, p.kind, p.event_type, {}, p.event_timestamp + h.shift, \
                     encode(sha256(convert_to(p.dedupe_key || ':' || h.call, 'UTF8')), 'hex'), \
                     n.payload, \
                     p.status, p.attempts, p.event_timestamp + h.shift, \
                     p.event_timestamp + h.shift, \
                     p.event_timestamp + h.shift + interval '20 milliseconds' \
                 FROM history h JOIN prototype p USING (lifecycle) \
                 CROSS JOIN LATERAL (SELECT p.payload::jsonb || jsonb_build_object({}) AS payload) AS n",
                id("dialpad_id"),
                ID_FIELDS
                    .iter()
                    .map(|f| format!(
                        "'{f}', pg_temp.bench_leg_id(h.call, (p.payload->>'{f}')::bigint)"
                    ))
                    .chain(
                        TIME_FIELDS
                            .iter()
                            .map(|f| format!("'{f}', (p.payload->>'{f}')::bigint + h.shift_ms"))
                    )
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
        ),
    ]
}
