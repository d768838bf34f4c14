//! `bench ceiling [SECONDS] [CONNECTIONS] [HISTORY]`: ingest as a client sees it, beside the
//! database's own ceiling for the same row, in one run.
//!
//! For each connection count (default `16,64`), [`RUNS`] times:
//! - **ceiling**: `pgbench` (the machine's, `-M prepared`, 2 threads) inserts one ~1.5 KB call
//!   event per transaction, as a webhook's row, for SECONDS (default 5), into a trigger-less
//!   copy of `webhook_events` (same columns, defaults, constraints and indexes): transactions/s.
//!   Also into `webhook_events` itself, whose triggers (the hot queue's row) a webhook's row
//!   pays too;
//! - **ingest**: `wrk` (an external load generator, 2 threads) posts distinct pre-signed live
//!   webhooks (the same event, re-keyed per call, stamped with the time of signing) to an
//!   in-process ingest server (release build, default settings, no worker running) over the
//!   same many keep-alive connections for SECONDS: webhooks/s (every one a 200 after its
//!   commit), p50 and p99.
//!
//! HISTORY (default 0) is the event log's size before the runs: with 0 every run gets a fresh
//! database; otherwise one database is seeded once with HISTORY processed call events of the
//! tenant, one a second up to now, in both `webhook_events` and its copy, and every run inserts
//! into it (each run adds a few percent at most). A call centre's event log holds millions.
//!
//! The figure is ingest's rate over the ceiling of the same run; the median of the runs is
//! reported. Both clients share the 2 cores with Postgres and ingest, as they would on one box.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;
use serde_json::{Value, json};

use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use uuid::Uuid;

use e2e::{TestDatabase, UNSCOPED_SECRET, fixture, sign};

use crate::common::{RUNS, median, new_app};

/// Tokens signed per second of a run: above any rate ingest reaches on 2 cores, so none is
/// sent twice (a repeat would take the cheaper duplicate path; the run fails if one is).
const TOKENS_PER_SECOND: usize = 24_000;
/// wrk's threads (one per core).
const WRK_THREADS: usize = 2;

/// One connection count's figures (medians of the runs).
#[derive(Debug, Serialize)]
pub struct CeilingFigure {
    pub connections: usize,
    /// Events in the event log (and its copy) before the runs.
    pub history: usize,
    /// Into a trigger-less copy of `webhook_events`' shape: the ceiling.
    pub pgbench_tps: f64,
    /// Into `webhook_events` itself, with its triggers.
    pub pgbench_queue_tps: f64,
    pub ingest_per_s: f64,
    /// Median of the runs' ingest / pgbench.
    pub ratio: f64,
    pub ingest_p50_ms: f64,
    pub ingest_p99_ms: f64,
    /// Events per group commit (ingest's `/metrics`).
    pub events_per_commit: f64,
}

const WRK_SCRIPT: &str = r#"-- Distinct pre-signed webhooks: thread n posts the tokens of file ARG.n, one per line.
local threads = {}
function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end
function init(args)
  tokens = {}
  for line in io.lines(args[1] .. "." .. id) do tokens[#tokens + 1] = line end
  sent = 0
  repeated = 0
end
function request()
  sent = sent + 1
  if sent > #tokens then repeated = repeated + 1 end
  local token = tokens[(sent - 1) % #tokens + 1]
  return wrk.format("POST", nil, {["Content-Type"] = "application/jwt"}, token)
end
function done(summary, latency, requests)
  local repeats = 0
  for _, thread in ipairs(threads) do repeats = repeats + thread:get("repeated") end
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"non_2xx":%d,"socket_errors":%d,"repeats":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    repeats, latency:percentile(50), latency:percentile(99)))
end
"#;

/// The benchmark's working files: `target/bench/`.
pub fn bench_dir() -> PathBuf {
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target");
    target.canonicalize().unwrap_or(target).join("bench")
}

pub async fn bench_ceiling(
    seconds: u64,
    connections: &[usize],
    history: usize,
) -> anyhow::Result<Vec<CeilingFigure>> {
    for tool in ["pgbench", "wrk"] {
        anyhow::ensure!(
            Command::new(tool).arg("--version").output().is_ok(),
            "{tool} is not installed (`just bench` installs it: apt-get install postgresql-client wrk)"
        );
    }
    let dir = bench_dir();
    std::fs::create_dir_all(&dir)?;
    let event = fixture("call_outbound_03_hangup.json");
    let tokens = dir.join("ingest-tokens");
    let tokens_per_run = TOKENS_PER_SECOND * usize::try_from(seconds)?;
    // Calls signed so far: each run posts calls of its own, also into a shared database.
    let mut signed = 0;
    let script = dir.join("ingest.lua");
    std::fs::write(&script, WRK_SCRIPT)?;
    let insert = dir.join("insert.sql");
    let seeded = match history {
        0 => None,
        _ => Some(Seeded::new(history, &event).await?),
    };

    let mut figures = Vec::new();
    for &clients in connections {
        let (mut ceilings, mut queue_ceilings, mut rates, mut ratios, mut p50s, mut p99s) = (
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
        );
        let mut batch_sizes = Vec::new();
        for run in 1..=RUNS {
            let tps = pgbench(&insert, &event, clients, seconds, Target::Table, &seeded).await?;
            let queue_tps =
                pgbench(&insert, &event, clients, seconds, Target::Queue, &seeded).await?;
            write_tokens(&tokens, &event, signed, tokens_per_run)?;
            signed += tokens_per_run;
            let ingest = ingest_with_wrk(&script, &tokens, clients, seconds, &seeded).await?;
            let ratio = ingest.rate / tps;
            println!(
                "ceiling run {run}, {clients} connections, history {history}: pgbench {tps:.0} tps (into webhook_events, triggers and all: {queue_tps:.0}), ingest {:.0}/s (p50 {:.2} ms, p99 {:.2} ms; {:.1} events per commit of {:.2} ms): {ratio:.2}x",
                ingest.rate,
                ingest.p50_ms,
                ingest.p99_ms,
                ingest.group_commits.events_per_commit,
                ingest.group_commits.commit_ms,
            );
            ceilings.push(tps);
            queue_ceilings.push(queue_tps);
            rates.push(ingest.rate);
            ratios.push(ratio);
            p50s.push(ingest.p50_ms);
            p99s.push(ingest.p99_ms);
            batch_sizes.push(ingest.group_commits.events_per_commit);
        }
        let figure = CeilingFigure {
            connections: clients,
            history,
            pgbench_tps: median(ceilings),
            pgbench_queue_tps: median(queue_ceilings),
            ingest_per_s: median(rates),
            ratio: median(ratios),
            ingest_p50_ms: median(p50s),
            ingest_p99_ms: median(p99s),
            events_per_commit: median(batch_sizes),
        };
        println!(
            "ceiling median of {RUNS}, {clients} connections, history {history}: pgbench {:.0} tps ({:.0} into webhook_events), ingest {:.0} webhooks/s, {:.2}x; ingest p50 {:.2} ms, p99 {:.2} ms, {:.1} events per commit",
            figure.pgbench_tps,
            figure.pgbench_queue_tps,
            figure.ingest_per_s,
            figure.ratio,
            figure.ingest_p50_ms,
            figure.ingest_p99_ms,
            figure.events_per_commit,
        );
        let shape = format!(
            "distinct ~1.5 KB call events, {clients} keep-alive connections for {seconds} s, no worker, into an event log of {history} events; ingest in the release bench process, wrk and pgbench as processes of their own, Postgres beside them on the same machine"
        );
        let label = match history {
            0 => format!("{clients} connections"),
            _ => format!("{clients} connections, history {history}"),
        };
        crate::common::report::record_with_ceiling(
            format!("ingest webhooks/s (wrk, {label})"),
            shape.clone(),
            figure.ingest_per_s,
            "/s",
            Some(crate::common::report::Ceiling {
                name: "pgbench single-row insert tps".into(),
                value: figure.pgbench_tps,
                ratio: figure.ratio,
            }),
        );
        crate::common::report::record(
            format!("ingest p99 (wrk, {label})"),
            shape.clone(),
            figure.ingest_p99_ms,
            "ms",
        );
        crate::common::report::record(
            format!("pgbench into webhook_events with its triggers ({label})"),
            shape,
            figure.pgbench_queue_tps,
            "tps",
        );
        figures.push(figure);
    }
    for thread in 0..WRK_THREADS {
        drop(std::fs::remove_file(
            tokens.with_extension(thread.to_string()),
        ));
    }
    Ok(figures)
}

/// Signs `count` distinct events, calls `first..first + count` (the call re-keyed, stamped with
/// the time of signing, as a live event is), one token per line, split over [`WRK_THREADS`]
/// files `{path}.{thread}`.
fn write_tokens(path: &Path, event: &Value, first: usize, count: usize) -> anyhow::Result<()> {
    use std::io::Write;
    let mut files = (0..WRK_THREADS)
        .map(|thread| {
            std::fs::File::create(path.with_extension(thread.to_string()))
                .map(std::io::BufWriter::new)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let base = event["call_id"].as_i64().unwrap_or_default();
    let now_ms = chrono::Utc::now().timestamp_millis();
    for i in 0..count {
        let mut event = event.clone();
        event["call_id"] = json!(base + i64::try_from(first + i)? * 8192);
        event["event_timestamp"] = json!(now_ms + i64::try_from(i)?);
        writeln!(files[i % WRK_THREADS], "{}", sign(&event, UNSCOPED_SECRET))?;
    }
    for file in &mut files {
        file.flush()?;
    }
    Ok(())
}

/// Where pgbench inserts.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// `webhook_events` itself: its triggers too (the hot queue's row).
    Queue,
    /// A copy of its shape (columns, defaults, constraints, indexes), without triggers: the
    /// bare single-row insert.
    Table,
}

impl Target {
    fn table(self) -> &'static str {
        match self {
            Target::Queue => "webhook_events",
            Target::Table => "ceiling_events",
        }
    }
}

/// The trigger-less copy of `webhook_events`: columns, defaults, constraints, indexes and
/// storage parameters (`LIKE` leaves those out; the fillfactor sets how many rows fill a page).
async fn create_copy(conn: &mut AsyncPgConnection) -> anyhow::Result<()> {
    conn.batch_execute(
        "CREATE TABLE ceiling_events (LIKE webhook_events INCLUDING DEFAULTS \
             INCLUDING IDENTITY INCLUDING CONSTRAINTS INCLUDING INDEXES); \
         DO $$ DECLARE options text := (SELECT array_to_string(reloptions, ', ') \
             FROM pg_class WHERE oid = 'webhook_events'::regclass); \
         BEGIN IF options IS NOT NULL THEN \
             EXECUTE format('ALTER TABLE ceiling_events SET (%s)', options); \
         END IF; END $$",
    )
    .await?;
    Ok(())
}

/// The database every run shares when the event log starts with a history.
struct Seeded {
    db: TestDatabase,
    app_id: Uuid,
}

impl Seeded {
    /// Seeds `history` processed events of one tenant (`event` re-keyed per call, one a second
    /// up to now) into `webhook_events` and into its trigger-less copy.
    async fn new(history: usize, event: &Value) -> anyhow::Result<Self> {
        const CHUNK: usize = 250_000;
        let db = TestDatabase::migrated().await;
        let mut conn = db.connect().await;
        let app_id = new_app(&mut conn, "bench", UNSCOPED_SECRET).await?;
        create_copy(&mut conn).await?;
        conn.batch_execute("SET synchronous_commit = off").await?;
        let started = std::time::Instant::now();
        for table in [Target::Queue.table(), Target::Table.table()] {
            for first in (0..history).step_by(CHUNK) {
                let last = (first + CHUNK).min(history);
                diesel::sql_query(format!(
                    "INSERT INTO {table} (app_id, kind, event_type, dialpad_id, event_timestamp, \
                         dedupe_key, payload, status, attempts, received_at, processed_at) \
                     SELECT $1, 'call', 'hangup', call_id, at, encode(sha256(int8send(n)), 'hex'), \
                         jsonb_set(jsonb_set($2::jsonb, '{{call_id}}', to_jsonb(call_id)), \
                             '{{event_timestamp}}', to_jsonb((extract(epoch FROM at) * 1000)::int8))::json, \
                         'done', 1, at, at \
                     FROM generate_series($3::int8, $4::int8) AS n, \
                     LATERAL (SELECT (hashint8(n)::int8 & 2147483647) * 4194304 + n % 4194304 AS call_id, \
                         now() - make_interval(secs => $5::int8 - n) AS at) AS call"
                ))
                .bind::<diesel::sql_types::Uuid, _>(app_id)
                .bind::<diesel::sql_types::Text, _>(serde_json::to_string(event)?)
                .bind::<diesel::sql_types::BigInt, _>(i64::try_from(first + 1)?)
                .bind::<diesel::sql_types::BigInt, _>(i64::try_from(last)?)
                .bind::<diesel::sql_types::BigInt, _>(i64::try_from(history)?)
                .execute(&mut conn)
                .await?;
            }
        }
        conn.batch_execute("ANALYZE webhook_events; ANALYZE ceiling_events; CHECKPOINT")
            .await?;
        println!(
            "ceiling: {history} events of history seeded in {:.0} s (the event log and its copy)",
            started.elapsed().as_secs_f64()
        );
        Ok(Seeded { db, app_id })
    }
}

/// A run's database and tenant: the shared seeded one, or a fresh one (dropped after the run).
async fn database(
    seeded: &Option<Seeded>,
    target: Target,
) -> anyhow::Result<(Option<TestDatabase>, String, Uuid)> {
    if let Some(seeded) = seeded {
        return Ok((None, seeded.db.url().to_owned(), seeded.app_id));
    }
    let db = TestDatabase::migrated().await;
    let mut conn = db.connect().await;
    let app_id = new_app(&mut conn, "bench", UNSCOPED_SECRET).await?;
    if let Target::Table = target {
        create_copy(&mut conn).await?;
    }
    let url = db.url().to_owned();
    Ok((Some(db), url, app_id))
}

/// pgbench's single-row insert of `event` as a webhook row, `clients` connections: tps.
async fn pgbench(
    script: &Path,
    event: &Value,
    clients: usize,
    seconds: u64,
    target: Target,
    seeded: &Option<Seeded>,
) -> anyhow::Result<f64> {
    let (_fresh, url, app_id) = database(seeded, target).await?;
    let table = target.table();
    // Passed as a variable (a bound parameter): pgbench would read `:null` in the script's
    // own text as a variable.
    let payload = serde_json::to_string(event)?;
    std::fs::write(
        script,
        format!(
            "\\set n random(1, 1000000000000)\n\
             INSERT INTO {table} (app_id, kind, event_type, dialpad_id, event_timestamp, dedupe_key, payload, status, request_id) \
             VALUES ('{app_id}', 'call', 'hangup', :n, now(), md5(:client_id || '-' || :n || '-' || random()), CAST(:payload AS json), 'pending', 'pgbench') \
             ON CONFLICT (app_id, event_timestamp, dedupe_key) DO NOTHING RETURNING id;\n"
        ),
    )?;
    let output = tokio::process::Command::new("pgbench")
        .args(["-n", "-M", "prepared", "-j", "2"])
        .arg(format!("-c{clients}"))
        .arg(format!("-T{seconds}"))
        .arg("-D")
        .arg(format!("payload={payload}"))
        .arg("-f")
        .arg(script)
        // Plain, as ingest's pool is: libpq's default `prefer` would pay TLS wherever the
        // server has `ssl = on` (Debian's default).
        .arg(format!("{url}?sslmode=disable"))
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "pgbench failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .find_map(|line| {
            line.strip_prefix("tps = ")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .ok_or_else(|| anyhow::anyhow!("no tps in pgbench's output: {stdout}"))
}

struct IngestRun {
    group_commits: GroupCommits,
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// wrk against a fresh ingest server with `clients` connections.
async fn ingest_with_wrk(
    script: &Path,
    tokens: &Path,
    clients: usize,
    seconds: u64,
    seeded: &Option<Seeded>,
) -> anyhow::Result<IngestRun> {
    let (_fresh, database_url, app_id) = database(seeded, Target::Queue).await?;
    let last_before = last_event_id(&database_url).await?;
    let server = ingest::build(e2e::ingest_settings(&database_url)).await?;
    let server_port = server.port();
    let url = format!("http://127.0.0.1:{server_port}/webhooks/dialpad/{app_id}");
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(server.run_until_stopped(stop.clone().cancelled_owned()));
    let output = tokio::process::Command::new("wrk")
        .arg(format!("-t{WRK_THREADS}"))
        .arg(format!("-c{clients}"))
        .arg(format!("-d{seconds}s"))
        .args(["--timeout", "10s", "-s"])
        .arg(script)
        .arg(&url)
        .arg("--")
        .arg(tokens)
        .output()
        .await?;
    let group_commits = group_commits(server_port).await;
    stop.cancel();
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(output.status.success(), "wrk failed: {stdout}");
    let summary: Value = stdout
        .lines()
        .find_map(|line| serde_json::from_str(line).ok())
        .ok_or_else(|| anyhow::anyhow!("no summary in wrk's output: {stdout}"))?;
    let number = |key: &str| summary[key].as_f64().unwrap_or_default();
    anyhow::ensure!(
        number("non_2xx") == 0.0 && number("socket_errors") == 0.0,
        "ingest refused or dropped requests: {summary}"
    );
    anyhow::ensure!(
        number("repeats") == 0.0,
        "wrk ran out of distinct tokens (raise TOKENS_PER_SECOND): {summary}"
    );
    // Every 200 was a new row, committed (requests wrk cut at the end may have been stored
    // too). Counted, not read off the ids: an insert skipped as a duplicate uses an id too.
    let stored = events_after(&database_url, last_before).await?;
    let answered = number("requests");
    anyhow::ensure!(
        stored as f64 >= answered && stored as f64 <= answered + clients as f64,
        "{stored} events stored for {answered} answered webhooks"
    );
    Ok(IngestRun {
        group_commits,
        rate: number("requests") / (number("duration_us") / 1e6),
        p50_ms: number("p50_us") / 1e3,
        p99_ms: number("p99_us") / 1e3,
    })
}

/// The newest event's id (0 when there is none): the ids a run stores come after it.
async fn last_event_id(url: &str) -> anyhow::Result<i64> {
    use diesel::QueryDsl as _;
    let last: Option<i64> = db::schema::webhook_events::table
        .select(diesel::dsl::max(db::schema::webhook_events::id))
        .get_result(&mut db::connect::establish(url).await?)
        .await?;
    Ok(last.unwrap_or(0))
}

/// Events stored with an id above `id`.
async fn events_after(url: &str, id: i64) -> anyhow::Result<i64> {
    use diesel::{ExpressionMethods as _, QueryDsl as _};
    Ok(db::schema::webhook_events::table
        .filter(db::schema::webhook_events::id.gt(id))
        .count()
        .get_result(&mut db::connect::establish(url).await?)
        .await?)
}

/// Ingest's group commits over a run, from its `/metrics`.
#[derive(Debug, Default, Clone, Copy)]
struct GroupCommits {
    /// Events per insert, on average.
    events_per_commit: f64,
    /// One insert's duration, on average, ms.
    commit_ms: f64,
}

/// Reads [`GroupCommits`] off ingest's `/metrics` (zeros if it cannot be read).
async fn group_commits(port: u16) -> GroupCommits {
    let Ok(text) = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .and_then(reqwest::Response::error_for_status)
    else {
        return GroupCommits::default();
    };
    let Ok(text) = text.text().await else {
        return GroupCommits::default();
    };
    let value = |name: &str| e2e::metric_sample(&text, name, &[]).unwrap_or_default();
    let commits = value("ingest_commit_batch_size_count").max(1.0);
    GroupCommits {
        events_per_commit: value("ingest_commit_batch_size_sum") / commits,
        commit_ms: value("ingest_commit_duration_seconds_sum") * 1e3 / commits,
    }
}
