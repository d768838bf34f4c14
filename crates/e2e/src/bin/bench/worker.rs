//! `bench worker` and `bench latency`: the worker's drain rate and end-to-end latency.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;

use db::queue::NewWebhookEvent;
use e2e::{TestDatabase, UNSCOPED_SECRET, sign};

use crate::common::{LIFECYCLE, RUNS, call_events, median, new_app, percentile};

async fn fill_queue(db: &TestDatabase, events: usize, apps: usize) -> anyhow::Result<()> {
    let mut app_ids = Vec::with_capacity(apps);
    for _ in 0..apps {
        app_ids.push(new_app(db, "bench-secret").await?);
    }
    let payloads = call_events(events);
    use diesel_async::RunQueryDsl;
    let mut conn = db.connect().await;
    let rows: Vec<NewWebhookEvent> = payloads
        .into_iter()
        .enumerate()
        .map(|(i, payload)| {
            // All events of one call go to one app.
            let app_id = app_ids[(i / LIFECYCLE.len()) % apps];
            let Value::Object(event) = payload else {
                unreachable!("fixtures are objects")
            };
            NewWebhookEvent::from_verified(Some(app_id), event)
        })
        .collect();
    for chunk in rows.chunks(2_000) {
        diesel::insert_into(db::schema::webhook_events::table)
            .values(chunk)
            .execute(&mut conn)
            .await?;
    }
    Ok(())
}

pub async fn bench_worker(events: usize, apps: usize) -> anyhow::Result<()> {
    let mut rates = Vec::new();
    for run in 1..=RUNS {
        let db = TestDatabase::migrated().await;
        fill_queue(&db, events, apps).await?;
        let worker = worker::Worker::build(worker::Settings::new(db.url())).await?;
        let started = Instant::now();
        let report = worker.drain().await?;
        let elapsed = started.elapsed();
        anyhow::ensure!(report.done == events, "drained {report:?}");
        let rate = events as f64 / elapsed.as_secs_f64();
        println!(
            "worker run {run}: {events} events over {apps} apps drained in {elapsed:.2?}: {rate:.0} events/s"
        );
        rates.push(rate);
    }
    println!(
        "worker median of {RUNS}: {:.0} events/s (one worker, batch 500)",
        median(rates)
    );
    Ok(())
}

pub async fn bench_latency(rate: usize, seconds: usize) -> anyhow::Result<()> {
    use std::collections::HashMap;
    use std::sync::Mutex;

    let events = rate * seconds;
    let bodies: Arc<Vec<String>> = Arc::new(
        call_events(events)
            .iter()
            .map(|e| sign(e, UNSCOPED_SECRET))
            .collect(),
    );
    let (mut p50s, mut p99s) = (Vec::new(), Vec::new());
    for run in 1..=RUNS {
        let db = TestDatabase::migrated().await;
        let app_id = new_app(&db, UNSCOPED_SECRET).await?;
        let server = ingest::build(e2e::ingest_settings(db.url())).await?;
        let url = Arc::new(format!(
            "http://127.0.0.1:{}/webhooks/dialpad/{app_id}",
            server.port()
        ));
        let stop = tokio_util::sync::CancellationToken::new();
        tokio::spawn(server.run_until_stopped(stop.clone().cancelled_owned()));
        let worker = worker::Worker::build(worker::Settings::new(db.url())).await?;
        let worker = tokio::spawn(worker.run_until_stopped(stop.clone()));

        // Event id → when ingest answered 200.
        let acked: Arc<Mutex<HashMap<i64, Instant>>> = Arc::default();
        let latencies: Arc<Mutex<Vec<Duration>>> = Arc::default();
        let watcher = {
            let (acked, latencies, stop) =
                (Arc::clone(&acked), Arc::clone(&latencies), stop.clone());
            let mut conn = db.connect().await;
            tokio::spawn(async move {
                use db::schema::webhook_events::dsl as e;
                use diesel::prelude::*;
                use diesel_async::RunQueryDsl;
                while !stop.is_cancelled() {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    let waiting: Vec<i64> = acked
                        .lock()
                        .map(|a| a.keys().copied().collect())
                        .unwrap_or_default();
                    if waiting.is_empty() {
                        continue;
                    }
                    let visible: Vec<i64> = db::schema::webhook_events::table
                        .filter(e::id.eq_any(&waiting))
                        .filter(e::status.eq("done"))
                        .select(e::id)
                        .load(&mut conn)
                        .await?;
                    let seen = Instant::now();
                    if let (Ok(mut acked), Ok(mut latencies)) = (acked.lock(), latencies.lock()) {
                        for id in visible {
                            if let Some(at) = acked.remove(&id) {
                                latencies.push(seen.saturating_duration_since(at));
                            }
                        }
                    }
                }
                Ok::<_, anyhow::Error>(())
            })
        };

        let http = reqwest::Client::new();
        let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
        let mut senders = Vec::with_capacity(events);
        for i in 0..events {
            ticker.tick().await;
            let (http, url, bodies, acked) = (
                http.clone(),
                Arc::clone(&url),
                Arc::clone(&bodies),
                Arc::clone(&acked),
            );
            senders.push(tokio::spawn(async move {
                let response = http
                    .post(url.as_str())
                    .body(bodies[i].clone())
                    .send()
                    .await?;
                anyhow::ensure!(
                    response.status() == 200,
                    "ingest answered {}",
                    response.status()
                );
                let at = Instant::now();
                let body: Value = response.json().await?;
                let id = body["id"].as_i64().context("event id")?;
                if let Ok(mut acked) = acked.lock() {
                    acked.insert(id, at);
                }
                Ok(())
            }));
        }
        for sender in senders {
            sender.await??;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while latencies.lock().map(|l| l.len()).unwrap_or_default() < events {
            anyhow::ensure!(Instant::now() < deadline, "events not applied within 30 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.cancel();
        watcher.await??;
        worker.await??;
        let mut latencies = latencies.lock().map(|l| l.clone()).unwrap_or_default();
        latencies.sort();
        let (p50, p99) = (percentile(&latencies, 0.50), percentile(&latencies, 0.99));
        println!(
            "latency run {run}: {events} webhooks at {rate}/s: ingest 200 -> applied p50 {p50:.2?}, p99 {p99:.2?}, max {:.2?}",
            latencies.last().copied().unwrap_or_default()
        );
        p50s.push(p50.as_secs_f64() * 1e3);
        p99s.push(p99.as_secs_f64() * 1e3);
    }
    println!(
        "latency median of {RUNS}: p50 {:.2} ms, p99 {:.2} ms at {rate} webhooks/s",
        median(p50s),
        median(p99s)
    );
    Ok(())
}
