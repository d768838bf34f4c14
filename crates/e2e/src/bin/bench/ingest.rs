//! `bench ingest`: webhooks/s and latency of an in-process ingest server.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use serde_json::{Value, json};

use e2e::{TestDatabase, UNSCOPED_SECRET, fixture, sign};

use crate::common::{RUNS, median, new_app, percentile};

const LIFECYCLE: [&str; 5] = [
    "call_outbound_01_calling.json",
    "call_outbound_02_connected.json",
    "call_outbound_03_hangup.json",
    "call_outbound_04_recording.json",
    "call_outbound_05_recap_summary.json",
];

/// `events` distinct call events: the outbound lifecycle re-keyed per call.
fn call_events(events: usize) -> Vec<Value> {
    let lifecycle: Vec<Value> = LIFECYCLE.iter().map(|name| fixture(name)).collect();
    (0..events)
        .map(|i| {
            let mut event = lifecycle[i % lifecycle.len()].clone();
            let call = i64::try_from(i / lifecycle.len()).unwrap_or_default();
            let call_id = event["call_id"].as_i64().unwrap_or_default() + call * 8192;
            event["call_id"] = json!(call_id);
            event
        })
        .collect()
}

pub async fn bench_ingest(events: usize, concurrency: usize) -> anyhow::Result<()> {
    let bodies: Arc<Vec<String>> = Arc::new(
        call_events(events)
            .iter()
            .map(|e| sign(e, UNSCOPED_SECRET))
            .collect(),
    );
    let (mut rates, mut p50s, mut p99s) = (Vec::new(), Vec::new(), Vec::new());
    for run in 1..=RUNS {
        let db = TestDatabase::migrated().await;
        let app_id = new_app(&mut db.connect().await, "bench", UNSCOPED_SECRET).await?;
        let mut settings = e2e::ingest_settings(db.url());
        settings.database.database_pool_size = 16;
        let server = ingest::build(settings).await?;
        let url = Arc::new(format!(
            "http://127.0.0.1:{}/webhooks/dialpad/{app_id}",
            server.port()
        ));
        let stop = tokio_util::sync::CancellationToken::new();
        tokio::spawn(server.run_until_stopped(stop.clone().cancelled_owned()));

        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(concurrency)
            .build()?;
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let clients: Vec<_> = (0..concurrency)
            .map(|_| {
                let (http, url, next, bodies) = (
                    http.clone(),
                    Arc::clone(&url),
                    Arc::clone(&next),
                    Arc::clone(&bodies),
                );
                tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(body) = bodies.get(i) else {
                            return Ok::<_, anyhow::Error>(latencies);
                        };
                        let sent = Instant::now();
                        let response = http.post(url.as_str()).body(body.clone()).send().await?;
                        anyhow::ensure!(
                            response.status() == 200,
                            "ingest answered {}",
                            response.status()
                        );
                        latencies.push(sent.elapsed());
                    }
                })
            })
            .collect();
        let mut latencies = Vec::with_capacity(events);
        for client in clients {
            latencies.extend(client.await??);
        }
        let elapsed = started.elapsed();
        stop.cancel();
        latencies.sort();
        let rate = events as f64 / elapsed.as_secs_f64();
        let (p50, p99) = (percentile(&latencies, 0.50), percentile(&latencies, 0.99));
        println!(
            "ingest run {run}: {events} webhooks, {concurrency} clients: {rate:.0}/s, p50 {p50:.2?}, p99 {p99:.2?}"
        );
        rates.push(rate);
        p50s.push(p50.as_secs_f64() * 1e3);
        p99s.push(p99.as_secs_f64() * 1e3);
    }
    println!(
        "ingest median of {RUNS}: {:.0} webhooks/s, p50 {:.2} ms, p99 {:.2} ms",
        median(rates),
        median(p50s),
        median(p99s)
    );
    Ok(())
}
