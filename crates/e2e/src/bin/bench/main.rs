//! Benchmarks against a real Postgres (a fresh database per run), reported as medians.
//!
//! - `bench ingest [EVENTS] [CONCURRENCY]`: distinct signed call events posted to an in-process
//!   ingest server by CONCURRENCY keep-alive clients; webhooks/s and latency p50/p99 (each 200
//!   means the row was committed).
//! - `bench worker [EVENTS] [APPS]`: the queue pre-filled with realistic call events (the outbound
//!   lifecycle, 5 events per call) over APPS tenants, then drained by one in-process worker;
//!   events/s.
//!
//! - `bench latency [RATE] [SECONDS]`: end-to-end latency at a steady RATE of webhooks per
//!   second: ingest and a worker woken by `LISTEN` run in-process; latency runs from ingest's 200 to
//!   the moment another connection sees the event applied (its domain row is committed in the
//!   same transaction), observed by polling every millisecond; p50/p99.
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
//! Run with `just bench-ingest` / `just bench-worker` / `just bench-api` (release build).

mod api;
mod common;
mod ingest;
mod worker;

use anyhow::Context;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize, default: usize| -> anyhow::Result<usize> {
        args.get(i)
            .map_or(Ok(default), |s| s.parse().context("numbers only"))
    };
    match args.first().map(String::as_str) {
        Some("ingest") => ingest::bench_ingest(number(1, 20_000)?, number(2, 32)?).await,
        Some("worker") => worker::bench_worker(number(1, 100_000)?, number(2, 50)?).await,
        Some("latency") => worker::bench_latency(number(1, 500)?, number(2, 20)?).await,
        Some("api") => {
            let apps = number(2, 100)?;
            api::bench_api(
                number(1, 1_000_000)?,
                apps,
                number(3, 5_000)?,
                number(4, apps)?,
            )
            .await
        }
        _ => anyhow::bail!(
            "usage: bench ingest [EVENTS] [CONCURRENCY] | bench worker [EVENTS] [APPS] | bench latency [RATE] [SECONDS] | bench api [CALLS] [APPS] [REQUESTS] [CHANGES_PER_S]"
        ),
    }
}
