//! `bench push`: push deliveries/s; ingest-to-receiver and ingest-to-SSE latency at a steady
//! webhook rate; a fast receiver's latency beside a receiver that hangs on every request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::web::{Bytes, Data, Path};
use actix_web::{App as HttpApp, HttpResponse, HttpServer};
use anyhow::Context;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use db::push::{NewSubscription, PushSubscription, StreamToken};
use domain::push::PushEvent;
use e2e::TestDatabase;

use crate::common::{Lifecycles, RUNS, median, new_app, percentile, thousands};
use crate::worker::start_ingest;

/// Tenants of the throughput run: the large one gets 90% of the deliveries.
const TENANTS: usize = 10;
/// How long the hanging receiver holds every request (the delivery timeout is 5 s).
const HANG: Duration = Duration::from_secs(5);
/// Calls of the latency runs are numbered from here (any number: each run is a fresh database).
const FIRST_CALL: u64 = 1;
const SECRET: &str = "bench-push-webhook-secret";

/// What the fast receiver got: when, and the body.
type Arrivals = Arc<Mutex<Vec<(Instant, Bytes)>>>;

/// The local receivers: `POST /fast/{n}` is recorded and answered 204 at once,
/// `POST /hang/{n}` is answered 204 after [`HANG`].
struct Receivers {
    base: String,
    arrivals: Arrivals,
    server: actix_web::dev::ServerHandle,
}

impl Receivers {
    async fn start() -> anyhow::Result<Receivers> {
        let arrivals: Arrivals = Arc::default();
        let recorded = Data::new(Arc::clone(&arrivals));
        let server = HttpServer::new(move || {
            HttpApp::new()
                .app_data(recorded.clone())
                .route(
                    "/fast/{n}",
                    actix_web::web::post().to(
                        |arrivals: Data<Arrivals>, _: Path<String>, body: Bytes| async move {
                            let at = Instant::now();
                            if let Ok(mut arrivals) = arrivals.lock() {
                                arrivals.push((at, body));
                            }
                            HttpResponse::NoContent().finish()
                        },
                    ),
                )
                .route(
                    "/hang/{n}",
                    actix_web::web::post().to(|_: Path<String>| async {
                        tokio::time::sleep(HANG).await;
                        HttpResponse::NoContent().finish()
                    }),
                )
        })
        .workers(2)
        .max_connections(100_000)
        .bind(("127.0.0.1", 0))?;
        let port = server.addrs()[0].port();
        let server = server.disable_signals().run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(Receivers {
            base: format!("http://127.0.0.1:{port}"),
            arrivals,
            server: handle,
        })
    }

    fn take(&self) -> Vec<(Instant, Bytes)> {
        self.arrivals
            .lock()
            .map(|mut a| std::mem::take(&mut *a))
            .unwrap_or_default()
    }
}

async fn subscribe(
    conn: &mut AsyncPgConnection,
    app_id: Uuid,
    url: &str,
) -> anyhow::Result<PushSubscription> {
    let events = vec!["*".to_owned()];
    let secret = domain::push::secret_from_bytes(&[7; 32]);
    PushSubscription::create(
        conn,
        &e2e::keyring(),
        app_id,
        &NewSubscription {
            webhook_url: url,
            events: &events,
            description: None,
        },
        &secret,
        100,
    )
    .await?
    .context("subscription limit")
}

fn worker_settings(url: &str) -> worker::Settings {
    let mut settings = worker::Settings::new(url);
    settings.encryption.encryption_key = Some(e2e::ENCRYPTION_KEY.into());
    settings.push.allow_private_webhook_urls = true;
    settings
}

/// Part 1: `deliveries` pending deliveries (90% to the large tenant's subscription, the rest
/// over 9 small tenants', each body a real ~1.5 KB `call.completed`) sent by one worker's
/// delivery loop (default settings) to the local receiver; deliveries/s.
pub async fn bench_deliveries(deliveries: usize) -> anyhow::Result<Vec<f64>> {
    let receivers = Receivers::start().await?;
    let mut rates = Vec::new();
    for run in 1..=RUNS {
        let db = TestDatabase::migrated().await;
        let mut conn = db.connect().await;
        let mut apps = Vec::new();
        for n in 0..TENANTS {
            let app = new_app(&mut conn, &format!("tenant {n}"), SECRET).await?;
            subscribe(&mut conn, app, &format!("{}/fast/{n}", receivers.base)).await?;
            apps.push(app);
        }
        let body = db::push::sample_body(PushEvent::CallCompleted, Uuid::nil(), chrono::Utc::now());
        diesel::sql_query(
            "INSERT INTO push_events (id, app_id, event_type, body, position) \
             SELECT gen_random_uuid(), \
               CASE WHEN g % 10 < 9 THEN $1[1] ELSE $1[2 + g % 9] END, 'call.completed', $2, g \
             FROM generate_series(1, $3) AS g",
        )
        .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(&apps)
        .bind::<diesel::sql_types::Jsonb, _>(&body)
        .bind::<diesel::sql_types::BigInt, _>(i64::try_from(deliveries)?)
        .execute(&mut conn)
        .await?;
        diesel::sql_query(
            "INSERT INTO push_deliveries (event_id, subscription_id, app_id) \
             SELECT e.id, s.id, e.app_id FROM push_events e JOIN push_subscriptions s USING (app_id)",
        )
        .execute(&mut conn)
        .await?;
        diesel::sql_query("VACUUM ANALYZE push_deliveries")
            .execute(&mut conn)
            .await?;
        receivers.take();

        let worker = worker::Worker::build(worker_settings(db.url())).await?;
        let stop = CancellationToken::new();
        let started = Instant::now();
        let loop_task = {
            let stop = stop.clone();
            tokio::spawn(async move { worker.run_deliveries(stop).await })
        };
        while pending(&mut conn, "%").await? > 0 {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(600),
                "not delivered in 10 min"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let elapsed = started.elapsed();
        stop.cancel();
        loop_task.await??;
        let received = receivers.take().len();
        let rate = deliveries as f64 / elapsed.as_secs_f64();
        println!(
            "push deliveries run {run}: {} in {elapsed:.2?} ({rate:.0}/s), receiver got {}",
            thousands(deliveries),
            thousands(received)
        );
        rates.push(rate);
    }
    receivers.server.stop(false).await;
    let shape = format!(
        "{} pending deliveries, 90% to one tenant's subscription, 10% over 9 others, one worker (PUSH_CONCURRENCY 32, PUSH_PER_SUBSCRIPTION 4), receiver on loopback answering 204",
        thousands(deliveries)
    );
    let rate = median(rates.clone());
    println!("push deliveries median of {RUNS}, {shape}: {rate:.0} deliveries/s");
    crate::common::report::record("push deliveries/s", shape, rate, "/s");
    Ok(rates)
}

/// Pending deliveries to subscriptions whose URL is `LIKE url_pattern` (`%`: all).
async fn pending(conn: &mut AsyncPgConnection, url_pattern: &str) -> anyhow::Result<i64> {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let count: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM push_deliveries d JOIN push_subscriptions s \
           ON s.id = d.subscription_id WHERE d.status = 'pending' AND s.webhook_url LIKE $1",
    )
    .bind::<diesel::sql_types::Text, _>(url_pattern)
    .get_result(conn)
    .await?;
    Ok(count.n)
}

/// Latencies of one run, sorted.
struct RunLatencies {
    delivery: Vec<Duration>,
    sse: Vec<Duration>,
}

/// Part 2 (`hang` false) and 3 (`hang` true): one tenant, subscribed at the fast receiver (and,
/// with `hang`, with a second subscription at the hanging one), and one SSE client (through
/// an in-process api) receive the events of `rate` signed webhooks/s of interleaved calls for
/// `seconds`, sent over HTTP to ingest and processed by a worker woken by `LISTEN`. Each
/// delivery and SSE event is matched to the webhook it announces by its call's
/// `last_event_at` (that webhook's `event_timestamp`); latency runs from ingest's 200 to its
/// arrival.
async fn latency_run(rate: usize, seconds: usize, hang: bool) -> anyhow::Result<RunLatencies> {
    let receivers = Receivers::start().await?;
    let db = TestDatabase::migrated().await;
    let mut conn = db.connect().await;
    let app = new_app(&mut conn, "call centre", SECRET).await?;
    subscribe(&mut conn, app, &format!("{}/fast/0", receivers.base)).await?;
    if hang {
        subscribe(&mut conn, app, &format!("{}/hang/0", receivers.base)).await?;
    }
    let (token, _) = StreamToken::issue(&mut conn, app).await?;

    let stop = CancellationToken::new();
    let ingest_url = format!("{}/{app}", start_ingest(db.url(), &stop).await?);
    let api = api::build(e2e::api_settings(db.url())).await?;
    let api_url = format!("http://127.0.0.1:{}", api.port());
    tokio::spawn(api.run_until_stopped(stop.clone().cancelled_owned()));
    let worker = worker::Worker::build(worker_settings(db.url())).await?;
    let worker_task = tokio::spawn(worker.run_until_stopped(stop.clone()));
    let sse = SseRecorder::start(&api_url, secrecy::ExposeSecret::expose_secret(&token)).await?;

    let lifecycles = Lifecycles::load()?;
    let traffic = lifecycles.traffic(FIRST_CALL, rate * seconds, |_| app);
    let mut timestamps: HashMap<i64, usize> = HashMap::new();
    for event in &traffic {
        *timestamps.entry(event.at_ms).or_default() += 1;
    }
    let bodies: Vec<(i64, String)> = traffic
        .iter()
        .map(|event| (event.at_ms, e2e::sign(&lifecycles.event(event), SECRET)))
        .collect();
    let acked = send_paced(&ingest_url, &bodies, rate as f64).await?;
    // Settle: every fast delivery made (the hanging ones take 5 s each, and are not measured).
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && pending(&mut conn, "%/fast/%").await? > 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sse_arrivals = sse.finish();
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), worker_task).await;
    receivers.server.stop(false).await;

    let latency = |arrivals: Vec<(Instant, Value)>| -> Vec<Duration> {
        let mut latencies: Vec<Duration> = arrivals
            .iter()
            .filter_map(|(at, body)| {
                let last = body["data"]["last_event_at"].as_str()?;
                let ms = chrono::DateTime::parse_from_rfc3339(last)
                    .ok()?
                    .timestamp_millis();
                // An event time two webhooks share cannot be matched: not counted.
                if timestamps.get(&ms) != Some(&1) {
                    return None;
                }
                Some(at.saturating_duration_since(*acked.get(&ms)?))
            })
            .collect();
        latencies.sort();
        latencies
    };
    let deliveries = receivers
        .take()
        .into_iter()
        .filter_map(|(at, body)| Some((at, serde_json::from_slice(&body).ok()?)))
        .collect();
    Ok(RunLatencies {
        delivery: latency(deliveries),
        sse: latency(sse_arrivals),
    })
}

/// Posts `bodies` at a steady `rate` per second (each on schedule, whatever the earlier ones
/// are doing); when ingest answered 200 to each, by its `event_timestamp`.
async fn send_paced(
    url: &str,
    bodies: &[(i64, String)],
    rate: f64,
) -> anyhow::Result<HashMap<i64, Instant>> {
    let http = reqwest::Client::new();
    let acked: Arc<Mutex<HashMap<i64, Instant>>> = Arc::default();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let mut senders = Vec::with_capacity(bodies.len());
    for (at_ms, body) in bodies {
        ticker.tick().await;
        let (request, acked, at_ms) = (
            http.post(url).body(body.clone()),
            Arc::clone(&acked),
            *at_ms,
        );
        senders.push(tokio::spawn(async move {
            let response = request.send().await?;
            anyhow::ensure!(
                response.status() == 200,
                "ingest answered {}",
                response.status()
            );
            if let Ok(mut acked) = acked.lock() {
                acked.insert(at_ms, Instant::now());
            }
            Ok(())
        }));
    }
    for sender in senders {
        sender.await??;
    }
    let acked = acked.lock().map(|a| a.clone()).unwrap_or_default();
    Ok(acked)
}

/// An SSE client recording when each event arrived.
struct SseRecorder {
    arrivals: Arc<Mutex<Vec<(Instant, Value)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl SseRecorder {
    async fn start(api_url: &str, token: &str) -> anyhow::Result<SseRecorder> {
        let mut response = reqwest::Client::new()
            .get(format!("{api_url}/api/events/stream?token={token}"))
            .send()
            .await?;
        anyhow::ensure!(
            response.status() == 200,
            "the stream answered {}",
            response.status()
        );
        let arrivals: Arc<Mutex<Vec<(Instant, Value)>>> = Arc::default();
        let recorded = Arc::clone(&arrivals);
        let task = tokio::spawn(async move {
            let mut buffer = String::new();
            while let Ok(Some(chunk)) = response.chunk().await {
                let at = Instant::now();
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buffer.find("\n\n") {
                    let frame: String = buffer.drain(..end + 2).collect();
                    let data = frame.lines().find_map(|line| line.strip_prefix("data: "));
                    if let Some(body) = data.and_then(|d| serde_json::from_str(d).ok())
                        && let Ok(mut arrivals) = recorded.lock()
                    {
                        arrivals.push((at, body));
                    }
                }
            }
        });
        Ok(SseRecorder { arrivals, task })
    }

    fn finish(self) -> Vec<(Instant, Value)> {
        self.task.abort();
        self.arrivals.lock().map(|a| a.clone()).unwrap_or_default()
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1_000.0
}

/// Parts 2 and 3. See the binary's docs.
pub async fn bench_push_latency(rate: usize, seconds: usize) -> anyhow::Result<()> {
    let shape = format!(
        "{} webhooks at {rate}/s of interleaved calls, one tenant",
        thousands(rate * seconds)
    );
    let mut figures: HashMap<&str, Vec<f64>> = HashMap::new();
    for run in 1..=RUNS {
        for hang in [false, true] {
            let latencies = latency_run(rate, seconds, hang).await?;
            anyhow::ensure!(!latencies.delivery.is_empty(), "no delivery was matched");
            let (p50, p99) = (
                percentile(&latencies.delivery, 0.5),
                percentile(&latencies.delivery, 0.99),
            );
            let label = if hang {
                "beside a hanging receiver"
            } else {
                "alone"
            };
            print!(
                "push latency run {run}, fast receiver {label}: ingest 200 -> receiver p50 {p50:.2?}, p99 {p99:.2?} ({} deliveries)",
                latencies.delivery.len()
            );
            let key = if hang { "hang" } else { "alone" };
            figures.entry(key).or_default().push(ms(p99));
            figures
                .entry(if hang { "hang50" } else { "alone50" })
                .or_default()
                .push(ms(p50));
            if !hang {
                anyhow::ensure!(!latencies.sse.is_empty(), "no SSE event was matched");
                let (s50, s99) = (
                    percentile(&latencies.sse, 0.5),
                    percentile(&latencies.sse, 0.99),
                );
                print!(
                    "; ingest 200 -> SSE client p50 {s50:.2?}, p99 {s99:.2?} ({} events)",
                    latencies.sse.len()
                );
                figures.entry("sse").or_default().push(ms(s99));
                figures.entry("sse50").or_default().push(ms(s50));
            }
            println!();
        }
    }
    let m = |key: &str| median(figures.get(key).cloned().unwrap_or_default());
    crate::common::report::record(
        "push ingest 200 -> receiver p99",
        shape.clone(),
        m("alone"),
        "ms",
    );
    crate::common::report::record("push ingest 200 -> SSE p99", shape.clone(), m("sse"), "ms");
    println!(
        "push latency median of {RUNS}, {shape}: ingest 200 -> receiver p50 {:.2} ms, p99 {:.2} ms; ingest 200 -> SSE client p50 {:.2} ms, p99 {:.2} ms; beside a receiver hanging 5 s on every request: p50 {:.2} ms, p99 {:.2} ms ({:.2}x alone)",
        m("alone50"),
        m("alone"),
        m("sse50"),
        m("sse"),
        m("hang50"),
        m("hang"),
        m("hang") / m("alone")
    );
    Ok(())
}
