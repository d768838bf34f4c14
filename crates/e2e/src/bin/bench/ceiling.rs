//! `bench ceiling [SECONDS] [CONNECTIONS]`: ingest as a client sees it, beside the database's
//! own ceiling for the same row, in one run.
//!
//! For each connection count (default `16,64`), [`RUNS`] times:
//! - **ceiling**: `pgbench` (the machine's, `-M prepared`, 2 threads) inserts one ~1.5 KB call
//!   event per transaction, as a webhook's row, for SECONDS (default 5), into a trigger-less
//!   copy of `webhook_events` (same columns, defaults, constraints and indexes): transactions/s.
//!   Also into `webhook_events` itself, whose triggers (the hot queue's row, a `NOTIFY`, which
//!   Postgres serialises at commit) a webhook's row pays too;
//! - **ingest**: `wrk` (an external load generator, 2 threads) posts distinct pre-signed
//!   webhooks (the same event, re-keyed per call) to an in-process ingest server (release
//!   build, default settings, no worker running) on a fresh database over the same many
//!   keep-alive connections for SECONDS: webhooks/s (every one a 200 after its commit), p50 and
//!   p99.
//!
//! The figure is ingest's rate over the ceiling of the same run; the median of the runs is
//! reported. Both clients share the 2 cores with Postgres and ingest, as they would on one box.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;
use serde_json::{Value, json};

use e2e::{TestDatabase, UNSCOPED_SECRET, fixture, sign};

use crate::common::{RUNS, median, new_app};

/// Tokens signed per second of a run: above any rate ingest reaches on 2 cores, so none is
/// sent twice (a repeat would take the cheaper duplicate path; the run fails if one is).
const TOKENS_PER_SECOND: usize = 16_000;
/// wrk's threads (one per core).
const WRK_THREADS: usize = 2;

/// One connection count's figures (medians of the runs).
#[derive(Debug, Serialize)]
pub struct CeilingFigure {
    pub connections: usize,
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
    write_tokens(
        &tokens,
        &event,
        TOKENS_PER_SECOND * usize::try_from(seconds)?,
    )?;
    let script = dir.join("ingest.lua");
    std::fs::write(&script, WRK_SCRIPT)?;
    let insert = dir.join("insert.sql");

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
            let tps = pgbench(&insert, &event, clients, seconds, Target::Table).await?;
            let queue_tps = pgbench(&insert, &event, clients, seconds, Target::Queue).await?;
            let ingest = ingest_with_wrk(&script, &tokens, clients, seconds).await?;
            let ratio = ingest.rate / tps;
            println!(
                "ceiling run {run}, {clients} connections: pgbench {tps:.0} tps (into webhook_events, triggers and all: {queue_tps:.0}), ingest {:.0}/s (p50 {:.2} ms, p99 {:.2} ms; {:.1} events per commit of {:.2} ms): {ratio:.2}x",
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
            pgbench_tps: median(ceilings),
            pgbench_queue_tps: median(queue_ceilings),
            ingest_per_s: median(rates),
            ratio: median(ratios),
            ingest_p50_ms: median(p50s),
            ingest_p99_ms: median(p99s),
            events_per_commit: median(batch_sizes),
        };
        println!(
            "ceiling median of {RUNS}, {clients} connections: pgbench {:.0} tps ({:.0} into webhook_events), ingest {:.0} webhooks/s, {:.2}x; ingest p50 {:.2} ms, p99 {:.2} ms, {:.1} events per commit",
            figure.pgbench_tps,
            figure.pgbench_queue_tps,
            figure.ingest_per_s,
            figure.ratio,
            figure.ingest_p50_ms,
            figure.ingest_p99_ms,
            figure.events_per_commit,
        );
        let shape = format!(
            "distinct ~1.5 KB call events, {clients} keep-alive connections for {seconds} s, no worker; ingest in the release bench process, wrk and pgbench as processes of their own, Postgres beside them on the same machine"
        );
        crate::common::report::record_with_ceiling(
            format!("ingest webhooks/s (wrk, {clients} connections)"),
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
            format!("ingest p99 (wrk, {clients} connections)"),
            shape.clone(),
            figure.ingest_p99_ms,
            "ms",
        );
        crate::common::report::record(
            format!("pgbench into webhook_events with its triggers ({clients} connections)"),
            shape,
            figure.pgbench_queue_tps,
            "tps",
        );
        figures.push(figure);
    }
    drop(std::fs::remove_file(&tokens));
    for thread in 0..WRK_THREADS {
        drop(std::fs::remove_file(
            tokens.with_extension(thread.to_string()),
        ));
    }
    Ok(figures)
}

/// Signs `count` distinct events (the call re-keyed), one token per line, split over
/// [`WRK_THREADS`] files `{path}.{thread}`.
fn write_tokens(path: &Path, event: &Value, count: usize) -> anyhow::Result<()> {
    use std::io::Write;
    let mut files = (0..WRK_THREADS)
        .map(|thread| {
            std::fs::File::create(path.with_extension(thread.to_string()))
                .map(std::io::BufWriter::new)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let base = event["call_id"].as_i64().unwrap_or_default();
    for i in 0..count {
        let mut event = event.clone();
        event["call_id"] = json!(base + i64::try_from(i)? * 8192);
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
    /// `webhook_events` itself: its triggers too (the hot queue's row, one `NOTIFY` per
    /// transaction, which Postgres serialises at commit).
    Queue,
    /// A copy of its shape (columns, defaults, constraints, indexes), without triggers: the
    /// bare single-row insert.
    Table,
}

/// pgbench's single-row insert of `event` as a webhook row, `clients` connections: tps.
async fn pgbench(
    script: &Path,
    event: &Value,
    clients: usize,
    seconds: u64,
    target: Target,
) -> anyhow::Result<f64> {
    let db = TestDatabase::migrated().await;
    let mut conn = db.connect().await;
    let app_id = new_app(&mut conn, "bench", UNSCOPED_SECRET).await?;
    let table = match target {
        Target::Queue => "webhook_events",
        Target::Table => {
            use diesel_async::RunQueryDsl;
            diesel::sql_query(
                "CREATE TABLE ceiling_events (LIKE webhook_events INCLUDING DEFAULTS \
                 INCLUDING IDENTITY INCLUDING CONSTRAINTS INCLUDING INDEXES)",
            )
            .execute(&mut conn)
            .await?;
            // The same storage parameters too (`LIKE` leaves them out): its fillfactor sets
            // how many rows fill a page.
            diesel::sql_query(
                "DO $$ DECLARE options text := (SELECT array_to_string(reloptions, ', ') \
                     FROM pg_class WHERE oid = 'webhook_events'::regclass); \
                 BEGIN IF options IS NOT NULL THEN \
                     EXECUTE format('ALTER TABLE ceiling_events SET (%s)', options); \
                 END IF; END $$",
            )
            .execute(&mut conn)
            .await?;
            "ceiling_events"
        }
    };
    drop(conn);
    // Passed as a variable (a bound parameter): pgbench would read `:null` in the script's
    // own text as a variable.
    let payload = serde_json::to_string(event)?;
    std::fs::write(
        script,
        format!(
            "\\set n random(1, 1000000000000)\n\
             INSERT INTO {table} (app_id, kind, event_type, dialpad_id, event_timestamp, dedupe_key, payload, status, request_id) \
             VALUES ('{app_id}', 'call', 'hangup', :n, now(), md5(:client_id || '-' || :n || '-' || random()), CAST(:payload AS json), 'pending', 'pgbench') \
             ON CONFLICT (app_id, dedupe_key) DO NOTHING RETURNING id;\n"
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
        .arg(format!("{}?sslmode=disable", db.url()))
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
) -> anyhow::Result<IngestRun> {
    let db = TestDatabase::migrated().await;
    let app_id = new_app(&mut db.connect().await, "bench", UNSCOPED_SECRET).await?;
    let server = ingest::build(e2e::ingest_settings(db.url())).await?;
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
    // Every 200 was committed (requests wrk cut at the end may have been stored too).
    let stored: i64 = {
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        db::schema::webhook_events::table
            .count()
            .get_result(&mut db.connect().await)
            .await?
    };
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
