//! `bench ingest`: webhooks/s and latency of an in-process ingest server.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use db::testing::fixtures::OUTBOUND;
use e2e::{TestDatabase, UNSCOPED_SECRET, fixture, sign};

use crate::common::{RUNS, median, new_app, percentile};

/// `events` distinct call events: the outbound lifecycle re-keyed per call.
fn call_events(events: usize) -> Vec<Value> {
    let lifecycle: Vec<Value> = OUTBOUND.iter().map(|name| fixture(name)).collect();
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
    let (rate, p99) = (median(rates), median(p99s.clone()));
    println!(
        "ingest median of {RUNS}: {rate:.0} webhooks/s, p50 {:.2} ms, p99 {p99:.2} ms",
        median(p50s),
    );
    let shape = format!(
        "{events} distinct call events, {concurrency} in-process keep-alive clients (reqwest), no worker"
    );
    crate::common::report::record(
        "ingest webhooks/s (in-process client)",
        shape.clone(),
        rate,
        "/s",
    );
    crate::common::report::record("ingest p99 (in-process client)", shape, p99, "ms");
    Ok(())
}

/// What one open-loop stream of webhooks got back.
#[derive(Debug, Default)]
struct Answers {
    latencies: Vec<Duration>,
    /// Status → count.
    statuses: std::collections::BTreeMap<u16, usize>,
}

/// Sends `bodies` at `rate` a second (open loop: each at its due time, whatever the answers
/// before it), each to `url_of(i)` from `X-Forwarded-For` address `address_of(i)`.
async fn send_at_rate(
    http: reqwest::Client,
    bodies: Arc<Vec<String>>,
    rate: usize,
    url_of: impl Fn(usize) -> String,
    address_of: impl Fn(usize) -> String,
) -> Answers {
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let start = tokio::time::Instant::now();
    let mut requests = Vec::with_capacity(bodies.len());
    for (i, body) in bodies.iter().enumerate() {
        tokio::time::sleep_until(start + period * u32::try_from(i).unwrap_or(u32::MAX)).await;
        let request = http
            .post(url_of(i))
            .header("x-forwarded-for", address_of(i))
            .body(body.clone());
        requests.push(tokio::spawn(async move {
            let sent = Instant::now();
            let status = request.send().await.map_or(0, |r| r.status().as_u16());
            (sent.elapsed(), status)
        }));
    }
    let mut answers = Answers::default();
    for request in requests {
        if let Ok((latency, status)) = request.await {
            answers.latencies.push(latency);
            *answers.statuses.entry(status).or_default() += 1;
        }
    }
    answers.latencies.sort();
    answers
}

/// `bench forged`: ingest under attack. `VALID_RATE` (500) correctly signed webhooks a second
/// for `SECONDS` (20), first alone, then alongside `FORGED_RATE` (2,000) forged requests a second
/// from 64 addresses (behind one trusted proxy hop): half signed with a wrong secret for the
/// same app, half for random app ids. Reports the valid webhooks' p50/p99 in both phases,
/// their ratio, and every status they got (none may be a 503), and the forged answers.
pub async fn bench_forged(
    valid_rate: usize,
    forged_rate: usize,
    seconds: usize,
) -> anyhow::Result<()> {
    let mut ratios = Vec::new();
    for run in 1..=RUNS {
        let db = TestDatabase::migrated().await;
        let app_id = new_app(&mut db.connect().await, "bench", UNSCOPED_SECRET).await?;
        let mut settings = e2e::ingest_settings(db.url());
        settings.database.database_pool_size = 16;
        settings.trusted_proxy_hops = 1;
        let server = ingest::build(settings).await?;
        let base = format!("http://127.0.0.1:{}/webhooks/dialpad", server.port());
        let stop = tokio_util::sync::CancellationToken::new();
        tokio::spawn(server.run_until_stopped(stop.clone().cancelled_owned()));
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()?;

        let count = valid_rate * seconds;
        let events = call_events(count * 2);
        let signed = |range: std::ops::Range<usize>| -> Arc<Vec<String>> {
            Arc::new(
                events[range]
                    .iter()
                    .map(|e| sign(e, UNSCOPED_SECRET))
                    .collect(),
            )
        };
        let app_url = format!("{base}/{app_id}");
        let valid = |bodies| {
            let app_url = app_url.clone();
            send_at_rate(
                http.clone(),
                bodies,
                valid_rate,
                move |_| app_url.clone(),
                |_| "198.51.100.1".to_owned(),
            )
        };
        let quiet = valid(signed(0..count)).await;

        let forged_count = forged_rate * seconds;
        let forged_bodies: Arc<Vec<String>> = Arc::new(
            call_events(forged_count)
                .iter()
                .map(|e| sign(e, "an-attacker-guessing-the-secret"))
                .collect(),
        );
        let random_ids: Vec<String> = (0..forged_count)
            .map(|_| uuid::Uuid::new_v4().to_string())
            .collect();
        let forged_url = {
            let (app_url, base) = (app_url.clone(), base.clone());
            move |i: usize| {
                if i.is_multiple_of(2) {
                    app_url.clone()
                } else {
                    format!("{base}/{}", random_ids[i])
                }
            }
        };
        let (attacked, forged) = tokio::join!(
            valid(signed(count..2 * count)),
            send_at_rate(http.clone(), forged_bodies, forged_rate, forged_url, |i| {
                format!("203.0.113.{}", i % 64)
            })
        );
        stop.cancel();

        let p = |answers: &Answers, q| percentile(&answers.latencies, q).as_secs_f64() * 1e3;
        let ratio = p(&attacked, 0.99) / p(&quiet, 0.99);
        println!(
            "forged run {run}: valid {valid_rate}/s alone: p50 {:.2} ms, p99 {:.2} ms, statuses {:?}; \
             with {forged_rate} forged/s: p50 {:.2} ms, p99 {:.2} ms (x{ratio:.2}), statuses {:?}; \
             forged answered {:?}",
            p(&quiet, 0.50),
            p(&quiet, 0.99),
            quiet.statuses,
            p(&attacked, 0.50),
            p(&attacked, 0.99),
            attacked.statuses,
            forged.statuses,
        );
        ratios.push(ratio);
    }
    println!(
        "forged median of {RUNS}: valid p99 under {forged_rate} forged/s is x{:.2} the quiet p99",
        median(ratios)
    );
    Ok(())
}
