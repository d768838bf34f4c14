//! Benchmarks against a real Postgres (a fresh database per run), reported as medians of 3 runs.
//!
//! - `bench ceiling [SECONDS] [CONNECTIONS] [HISTORY]`: ingest measured by an external client
//!   (`wrk`) beside the database's own ceiling for the same row (`pgbench`, one insert per
//!   transaction), at each connection count (default `16,64`), SECONDS (default 5) each, into
//!   an event log already holding HISTORY events (default 0: a fresh database per run); see
//!   `ceiling.rs`.
//!
//! - `bench ingest [EVENTS] [CONCURRENCY]`: distinct signed call events posted to an in-process
//!   ingest server by CONCURRENCY keep-alive clients; webhooks/s and latency p50/p99 (each 200
//!   means the row was committed).
//!
//! - `bench api [CALLS] [APPS] [REQUESTS] [CHANGES_PER_S]`: CALLS phone calls (1% live) seeded
//!   over APPS tenants, whose data then changes `CHANGES_PER_S` times a second throughout (default:
//!   each tenant's once a second), each change making that tenant's cached answers stale. Then
//!   REQUESTS requests per scenario from 32 concurrent clients against an in-process api with
//!   its response cache off, each request with a random tenant's key: `GET /api/calls` first
//!   page, a filtered page (`direction=inbound&status=completed`), a deep keyset page (a cursor
//!   5,000 calls down, or half a tenant's calls if fewer) and `GET /api/calls/active`; requests/s
//!   and latency p50/p99. Then the first page at a steady 1,000 requests/s (below saturation),
//!   latency counted from each request's due time. Then the four scenarios again, 4x REQUESTS
//!   each, against an api with the response cache on (as deployed), with the share of hits.
//!
//! The worker benchmarks use traffic of the real shape. A call centre is one tenant with a long
//! history, and Dialpad sends each call's events over minutes, so consecutive events belong to
//! different calls: a batch of 500 touches ~490 legs (printed as a check). The traffic mixes the four fixture
//! lifecycles (40% outbound: 5 events, 1 leg; 20% inbound to voicemail: 6 events, 1 leg; 30%
//! inbound through a call centre: 5 events, 2 legs; 10% transferred: 6 events, 3 legs), each
//! call re-keyed to fresh leg ids (its `call_id`, `master_call_id`, `entry_point_call_id` and
//! `operator_call_id` consistently) and moved to its own start, a call starting every 20 ms,
//! each call's events at its fixtures' offsets (up to 7 minutes apart), all ordered by event
//! time. Each run uses a fresh copy of a template database: 100 tenants, the large one with
//! HISTORY calls, 99 small ones with 1,000 each; their legs (a realistic share of multi-leg
//! calls, linked as the worker links them), phone calls, voicemails and applied events (the
//! last 3 of each leg, `done`), seeded by one `INSERT … SELECT … FROM generate_series` per table,
//! then vacuumed, analysed and checkpointed. Each history size is seeded once per invocation
//! (so chain the worker commands in one invocation, as `just bench-worker` does). Databases
//! are named `cti_bench_{pid}_*` and dropped at the end (also on Ctrl-C); those of a process
//! that no longer runs (killed) are dropped at the start. Concurrent invocations keep their
//! databases apart, but share the machine: their figures are then meaningless.
//!
//! - `bench forged [VALID_RATE] [FORGED_RATE] [SECONDS]`: ingest under attack. `VALID_RATE`
//!   (default 500) correctly signed webhooks a second for `SECONDS` (default 20), alone, then
//!   alongside `FORGED_RATE` (default 2,000) forged requests a second from 64 client addresses
//!   (wrong secret for the same app, or random app ids): the valid webhooks' p50/p99 in both
//!   phases and their ratio, and every status they got (none may be a 503).
//!
//! - `bench worker [EVENTS] [HISTORIES] [MAX_DRAIN_S]`: drain rate against history size. For
//!   each HISTORY in the comma-separated HISTORIES (default `0,100000,1000000`), EVENTS (default
//!   100,000) events are queued as `pending` (90% the large tenant's, the rest spread over the
//!   small ones), then drained by one in-process worker (default settings: batch 500, two
//!   batches in flight as a running worker's lane), batch after batch; events/s. The rate
//!   should not depend on the history. A drain still running after `MAX_DRAIN_S` (default 600)
//!   is stopped and its rate so far reported, marked CAPPED. Each run is paired with the
//!   worker's ceiling: the same backlog on a fresh copy drained by SQL alone, one statement per
//!   batch making the same row changes (`worker/sql_drain.rs`); the report gives both and the
//!   median of the runs' ratios.
//!
//! - `bench latency [BACKLOG] [RATE] [SECONDS] [HISTORY] [MAX_DRAIN_S]`: end-to-end latency
//!   right after a backlog. BACKLOG (default 200,000) events of the large tenant are queued
//!   against HISTORY (default 1,000,000) calls, and drained by a worker woken by `LISTEN` (its
//!   drain time is reported); then ingest receives the traffic that follows (later events of
//!   the backlog's calls among them), RATE (default 500) signed webhooks/s for SECONDS (default
//!   20) over HTTP. Latency runs from ingest's 200 to the moment another connection sees the
//!   event `done` (its domain rows are committed in the same transaction), polled every
//!   millisecond; p50/p99/max. An event still not `done` 30 s after the last webhook counts
//!   with its wait so far (a lower bound), and the count of those is printed.
//!
//! - `bench fairness [BACKLOG] [QUIET_RATE] [MAX_S] [HISTORY]`: a quiet tenant's latency while
//!   another's backlog drains. BACKLOG (default 200,000) events of the large (noisy) tenant are
//!   queued against HISTORY (default 1,000,000) calls; a worker woken by `LISTEN` starts, and
//!   meanwhile a small (quiet) tenant sends `QUIET_RATE` (default 20) signed webhooks/s through
//!   ingest until the backlog is drained or `MAX_S` (default 60) have passed. The quiet
//!   tenant's latency p50/p99 (ingest's 200 to `done`, as in `bench latency`), and the noisy
//!   backlog's drain rate meanwhile.
//!
//! - `bench push [DELIVERIES] [RATE] [SECONDS]`: push to client apps. First DELIVERIES (default
//!   20,000) pending deliveries, 90% to one tenant's subscription and the rest over 9 others',
//!   each body a real `call.completed` (~1.5 KB), sent by one worker's delivery loop (default
//!   settings) to a receiver on loopback answering 204: deliveries/s. Then one tenant with a
//!   subscription at that receiver and an SSE client (through an in-process api) while RATE
//!   (default 200) signed webhooks/s of interleaved calls go to ingest for SECONDS (default 20)
//!   and a worker woken by `LISTEN` processes them: latency from ingest's 200 to the receiver
//!   (and to the SSE client), each arrival matched to its webhook by the call's
//!   `last_event_at`; p50/p99. Then the same with a second subscription of that tenant at a
//!   receiver that hangs 5 s on every request: the fast receiver's p50/p99 and their ratio to
//!   the run without it.
//!
//! Commands can follow each other in one invocation (`bench worker latency fairness` runs all
//! three with their defaults, seeding each history once). Run with `just bench-ingest` /
//! `just bench-worker` / `just bench-api` (release build), or all of them, bounded, with
//! `just bench`. Every invocation ends with a table of its figures (each with its data shape,
//! and its ceiling from the same run where it has one), also written to
//! `target/bench/report.json`.

mod api;
mod ceiling;
mod common;
mod ingest;
mod push;
mod worker;

use std::time::Duration;

use anyhow::Context;

const COMMANDS: [&str; 8] = [
    "ceiling", "ingest", "forged", "worker", "latency", "fairness", "api", "push",
];

const USAGE: &str = "usage: bench COMMAND [ARGS]... [COMMAND [ARGS]...]...
  bench ceiling [SECONDS] [CONNECTIONS] [HISTORY]
  bench ingest [EVENTS] [CONCURRENCY]
  bench forged [VALID_RATE] [FORGED_RATE] [SECONDS]
  bench worker [EVENTS] [HISTORIES] [MAX_DRAIN_S]
  bench latency [BACKLOG] [RATE] [SECONDS] [HISTORY] [MAX_DRAIN_S]
  bench fairness [BACKLOG] [QUIET_RATE] [MAX_S] [HISTORY]
  bench api [CALLS] [APPS] [REQUESTS] [CHANGES_PER_S]
  bench push [DELIVERIES] [RATE] [SECONDS]";

/// A command and its arguments.
struct Command<'a> {
    name: &'a str,
    args: &'a [String],
}

impl Command<'_> {
    fn number(&self, i: usize, default: usize) -> anyhow::Result<usize> {
        self.args.get(i).map_or(Ok(default), |s| {
            s.replace('_', "")
                .parse()
                .with_context(|| format!("{}: not a number: {s}", self.name))
        })
    }

    fn numbers(&self, i: usize, default: &[usize]) -> anyhow::Result<Vec<usize>> {
        self.args.get(i).map_or(Ok(default.to_vec()), |s| {
            s.split(',')
                .map(|n| {
                    n.replace('_', "")
                        .parse()
                        .with_context(|| format!("{}: not a number: {n}", self.name))
                })
                .collect()
        })
    }

    fn seconds(&self, i: usize, default: u64) -> anyhow::Result<Duration> {
        Ok(Duration::from_secs(
            self.number(i, usize::try_from(default)?)? as u64,
        ))
    }
}

/// The commands of `args`: each command name starts one.
fn commands(args: &[String]) -> anyhow::Result<Vec<Command<'_>>> {
    let starts: Vec<usize> = (0..args.len())
        .filter(|&i| COMMANDS.contains(&args[i].as_str()))
        .collect();
    anyhow::ensure!(starts.first() == Some(&0), "{USAGE}");
    Ok(starts
        .iter()
        .enumerate()
        .map(|(n, &start)| Command {
            name: &args[start],
            args: &args[start + 1..starts.get(n + 1).copied().unwrap_or(args.len())],
        })
        .collect())
}

async fn run(commands: &[Command<'_>], templates: &mut worker::Templates) -> anyhow::Result<()> {
    for command in commands {
        match command.name {
            "ceiling" => {
                ceiling::bench_ceiling(
                    command.number(0, 5)? as u64,
                    &command.numbers(1, &[16, 64])?,
                    command.number(2, 0)?,
                )
                .await?;
            }
            "ingest" => {
                ingest::bench_ingest(command.number(0, 20_000)?, command.number(1, 32)?).await?;
            }
            "forged" => {
                ingest::bench_forged(
                    command.number(0, 500)?,
                    command.number(1, 2_000)?,
                    command.number(2, 20)?,
                )
                .await?;
            }
            "worker" => {
                worker::bench_worker(
                    templates,
                    command.number(0, 100_000)?,
                    &command.numbers(1, &[0, 100_000, 1_000_000])?,
                    command.seconds(2, 600)?,
                )
                .await?;
            }
            "latency" => {
                worker::bench_latency(
                    templates,
                    command.number(0, 200_000)?,
                    command.number(1, 500)?,
                    command.number(2, 20)?,
                    command.number(3, 1_000_000)?,
                    command.seconds(4, 600)?,
                )
                .await?;
            }
            "fairness" => {
                worker::bench_fairness(
                    templates,
                    command.number(0, 200_000)?,
                    command.number(1, 20)?,
                    command.number(2, 60)?,
                    command.number(3, 1_000_000)?,
                )
                .await?;
            }
            "push" => {
                push::bench_deliveries(command.number(0, 20_000)?).await?;
                push::bench_push_latency(command.number(1, 200)?, command.number(2, 20)?).await?;
            }
            _ => {
                let apps = command.number(1, 100)?;
                api::bench_api(
                    command.number(0, 1_000_000)?,
                    apps,
                    command.number(2, 5_000)?,
                    command.number(3, apps)?,
                )
                .await?;
            }
        }
    }
    Ok(())
}

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let commands = commands(&args)?;
    let mut templates = worker::Templates::new()?;
    // On Ctrl-C the run stops where it is, and its databases are dropped all the same.
    let result = tokio::select! {
        result = run(&commands, &mut templates) => result,
        interrupted = tokio::signal::ctrl_c() => {
            interrupted.map_err(anyhow::Error::from).and(Err(anyhow::anyhow!("interrupted")))
        }
    };
    templates.drop_all();
    result?;
    common::report::finish(server_version().await.unwrap_or_default()).await
}

/// The benchmark Postgres' version, for the report's machine.
async fn server_version() -> anyhow::Result<String> {
    use diesel_async::{AsyncConnection, RunQueryDsl};
    #[derive(diesel::QueryableByName)]
    struct Version {
        #[diesel(sql_type = diesel::sql_types::Text)]
        server_version: String,
    }
    let mut conn = diesel_async::AsyncPgConnection::establish(&db::testing::server_url()).await?;
    let version: Version = diesel::sql_query("SHOW server_version")
        .get_result(&mut conn)
        .await?;
    Ok(version.server_version)
}
