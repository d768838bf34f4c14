//! `bench api`: requests/s and latency of an in-process api over a seeded database, with its
//! response cache off and on.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use uuid::Uuid;

use db::apps::App;
use e2e::TestDatabase;

use crate::common::{RUNS, median, percentile};

/// A seeded tenant of `bench api`.
struct Tenant {
    app_id: Uuid,
    key: String,
    /// A keyset cursor 5,000 calls into its list (or half of it).
    cursor: String,
}

/// Seeds `calls` phone calls over `apps` new tenants.
async fn seed_calls(db: &TestDatabase, calls: usize, apps: usize) -> anyhow::Result<Vec<Tenant>> {
    use base64::Engine;
    use diesel_async::RunQueryDsl;
    let mut conn = db.connect().await;
    let mut tenants = Vec::with_capacity(apps);
    for n in 0..apps {
        let key_id = format!("bench{n:011}");
        let key = format!("raw_{key_id}_{}", "s".repeat(40));
        let hash = bcrypt::hash(&key, 4)?;
        let app = App::create_with_key(
            &mut conn,
            &e2e::keyring(),
            &format!("bench {n}"),
            "bench-webhook-secret-0123456789",
            &key_id,
            &hash,
            &db::audit::Actor("bench".into()),
        )
        .await?;
        tenants.push((app.id, key));
    }
    // One statement: the apps take turns (g % apps); within an app (g / apps) half the calls are
    // inbound, 1% still live, 1 in 7 missed; a call every 30 s from 2026-01-01.
    diesel::sql_query(format!(
        "INSERT INTO logical_calls (app_id, logical_call_id, status, direction, from_number, \
             to_number, started_at, answered_at, ended_at, talk_time_ms, hold_time_ms, duration_ms, \
             total_duration_ms, leg_count, contact, target, last_event_at) \
         SELECT a.id, 4503599627370496 + g * 8192, \
             CASE WHEN (g / {apps}) % 100 = 0 THEN 'connected' WHEN (g / {apps}) % 7 = 0 THEN 'missed' \
                 ELSE 'completed' END, \
             CASE WHEN (g / {apps}) % 2 = 0 THEN 'inbound' ELSE 'outbound' END, \
             '+1415555' || lpad((g % 10000)::text, 4, '0'), '+1617555' || lpad((g % 9973)::text, 4, '0'), \
             t, t + interval '9 seconds', CASE WHEN (g / {apps}) % 100 = 0 THEN NULL ELSE t + interval '4 minutes' END, \
             231000, 0, 231000, 240000, 1 + (g % 3), \
             jsonb_build_object('name', 'Caller ' || g, 'phone', '+1415555' || lpad((g % 10000)::text, 4, '0')), \
             jsonb_build_object('id', '6460210548400128', 'type', 'user', 'name', 'Priya Raman'), t \
         FROM generate_series(1::bigint, {calls}) AS g \
         CROSS JOIN LATERAL (SELECT timestamptz '2026-01-01' + g * interval '30 seconds' AS t) AS time \
         JOIN (SELECT id, (row_number() OVER (ORDER BY created_at, id) - 1) AS n FROM apps) AS a \
             ON a.n = g % {apps}"
    ))
    .execute(&mut conn)
    .await?;
    // As autovacuum would have by then: statistics, and a visibility map for index-only scans.
    // Then a checkpoint, so that writing out the seed does not land in the measurements.
    for statement in ["VACUUM ANALYZE logical_calls", "CHECKPOINT"] {
        diesel::sql_query(statement).execute(&mut conn).await?;
    }
    #[derive(diesel::QueryableByName)]
    struct Deep {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>)]
        started_at: Option<chrono::DateTime<chrono::Utc>>,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        logical_call_id: i64,
    }
    let depth = i64::try_from((calls / apps / 2).min(5_000)).unwrap_or(0);
    let mut out = Vec::with_capacity(apps);
    for (app_id, key) in tenants {
        let deep: Deep = diesel::sql_query(
            "SELECT started_at, logical_call_id FROM logical_calls WHERE app_id = $1 \
             ORDER BY started_at DESC NULLS LAST, logical_call_id DESC OFFSET $2 LIMIT 1",
        )
        .bind::<diesel::sql_types::Uuid, _>(app_id)
        .bind::<diesel::sql_types::BigInt, _>(depth)
        .get_result(&mut conn)
        .await?;
        let at = deep
            .started_at
            .map_or("-".to_owned(), |t| t.timestamp_millis().to_string());
        let cursor = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("{at}.{}", deep.logical_call_id));
        out.push(Tenant {
            app_id,
            key,
            cursor,
        });
    }
    Ok(out)
}

/// Concurrent clients of `bench api`.
const CLIENTS: usize = 32;

/// What [`Load::measure`] found: medians of requests/s, p50 and p99 (ms), and the share of
/// answers served from the response cache.
struct Measured {
    rate: f64,
    p50: f64,
    p99: f64,
    hit_share: f64,
}

/// `bench api`'s load: requests from [`CLIENTS`] clients, each with a random tenant's key.
struct Load {
    http: reqwest::Client,
    tenants: Arc<Vec<Tenant>>,
}

impl Load {
    /// [`RUNS`] runs of `requests` requests to `path` (given the tenant's deep cursor) against
    /// `base`; medians of requests/s, p50
    /// and p99 in ms. Unpaced, each client sends its next request when the last is answered;
    /// paced at `pace` requests/s, request `n` is due at `n / pace` s and its latency counts
    /// from then (so a slow answer delaying the next one is not hidden).
    async fn measure(
        &self,
        base: &str,
        path: fn(&str) -> String,
        requests: usize,
        pace: Option<f64>,
    ) -> anyhow::Result<Measured> {
        let (mut rates, mut p50s, mut p99s) = (Vec::new(), Vec::new(), Vec::new());
        let hits = Arc::new(AtomicUsize::new(0));
        for _ in 0..RUNS {
            let next = Arc::new(AtomicUsize::new(0));
            let started = tokio::time::Instant::now();
            let clients: Vec<_> = (0..CLIENTS)
                .map(|_| {
                    let (http, base, next, hits, tenants) = (
                        self.http.clone(),
                        base.to_owned(),
                        Arc::clone(&next),
                        Arc::clone(&hits),
                        Arc::clone(&self.tenants),
                    );
                    tokio::spawn(async move {
                        let mut latencies = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            if i >= requests {
                                return Ok::<_, anyhow::Error>(latencies);
                            }
                            let due = match pace {
                                Some(pace) => {
                                    let due = started + Duration::from_secs_f64(i as f64 / pace);
                                    tokio::time::sleep_until(due).await;
                                    due
                                }
                                None => tokio::time::Instant::now(),
                            };
                            let tenant = &tenants[(i * 7919) % tenants.len()];
                            let response = http
                                .get(format!("{base}{}", path(&tenant.cursor)))
                                .header("x-app-api-key", &tenant.key)
                                .send()
                                .await?;
                            anyhow::ensure!(
                                response.status() == 200,
                                "api answered {}",
                                response.status()
                            );
                            if response
                                .headers()
                                .get("x-cache")
                                .is_some_and(|v| v == "hit")
                            {
                                hits.fetch_add(1, Ordering::Relaxed);
                            }
                            response.bytes().await?;
                            latencies.push(due.elapsed());
                        }
                    })
                })
                .collect();
            let mut latencies = Vec::with_capacity(requests);
            for client in clients {
                latencies.extend(client.await??);
            }
            let elapsed = started.elapsed();
            latencies.sort();
            rates.push(requests as f64 / elapsed.as_secs_f64());
            p50s.push(percentile(&latencies, 0.50).as_secs_f64() * 1e3);
            p99s.push(percentile(&latencies, 0.99).as_secs_f64() * 1e3);
        }
        Ok(Measured {
            rate: median(rates),
            p50: median(p50s),
            p99: median(p99s),
            hit_share: hits.load(Ordering::Relaxed) as f64 / (requests * RUNS) as f64,
        })
    }
}

/// Changes tenants' data at `per_second` commits/s until `stop`, each tenant in turn (an
/// update of its newest call, as the worker's would be): every commit makes that tenant's
/// cached answers stale.
async fn change_tenants(
    db: &TestDatabase,
    app_ids: Vec<Uuid>,
    per_second: u32,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    use diesel_async::RunQueryDsl;
    let mut conn = db.connect().await;
    let mut interval = tokio::time::interval(Duration::from_secs(1) / per_second);
    for app_id in app_ids.iter().cycle() {
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            _ = interval.tick() => {}
        }
        diesel::sql_query(
            "UPDATE logical_calls SET last_event_at = now() WHERE app_id = $1 AND logical_call_id = \
             (SELECT max(logical_call_id) FROM logical_calls WHERE app_id = $1)",
        )
        .bind::<diesel::sql_types::Uuid, _>(app_id)
        .execute(&mut conn)
        .await?;
    }
    Ok(())
}

/// An in-process api on `db` with the response cache of `response_cache_mb`; its base URL.
async fn start_api(
    db: &TestDatabase,
    response_cache_mb: u64,
    stop: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<String> {
    let mut settings = e2e::api_settings(db.url());
    // A connection per concurrent client: waiting for a pooled connection tripled p99 at 16
    // (4 and 8 were worse still).
    settings.database.database_pool_size = u32::try_from(CLIENTS)?;
    // As deployed (the test settings count every total and cache no answer).
    settings.total_cache_ttl_ms = api::settings::DEFAULT_TOTAL_CACHE_TTL_MS;
    settings.response_cache_mb = response_cache_mb;
    // Measure queueing as latency rather than failing requests with 503.
    settings.database.database_connect_timeout_ms = 30_000;
    let server = api::build(settings).await?;
    let base = format!("http://127.0.0.1:{}", server.port());
    tokio::spawn(server.run_until_stopped(stop.clone().cancelled_owned()));
    Ok(base)
}

pub async fn bench_api(
    calls: usize,
    apps: usize,
    requests: usize,
    changes_per_second: usize,
) -> anyhow::Result<()> {
    let db = Arc::new(TestDatabase::migrated().await);
    let seeding = Instant::now();
    let tenants = Arc::new(seed_calls(&db, calls, apps).await?);
    println!(
        "api: seeded {calls} calls over {apps} apps in {:.1?}",
        seeding.elapsed()
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let uncached = start_api(&db, 0, &stop).await?;
    let cached = start_api(&db, api::settings::DEFAULT_RESPONSE_CACHE_MB, &stop).await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()?;
    // Warm-up: each key verified once (bcrypt) by each server, as on a running server.
    for base in [&uncached, &cached] {
        for tenant in tenants.iter() {
            http.get(format!("{base}/api/calls?limit=1"))
                .header("x-app-api-key", &tenant.key)
                .send()
                .await?;
        }
    }
    // Tenants' data keeps changing throughout, so cached answers keep going stale.
    let per_second = u32::try_from(changes_per_second.max(1))?;
    let changes = tokio::spawn({
        let (db, stop) = (Arc::clone(&db), stop.clone());
        let app_ids = tenants.iter().map(|tenant| tenant.app_id).collect();
        async move { change_tenants(&db, app_ids, per_second, stop).await }
    });
    println!(
        "api: {per_second} tenant data changes/s throughout (each tenant's every {:.0} ms)",
        1e3 * apps as f64 / f64::from(per_second)
    );

    type Scenario = (&'static str, fn(&str) -> String);
    let scenarios: [Scenario; 4] = [
        ("first page", |_| "/api/calls".to_owned()),
        ("filtered page", |_| {
            "/api/calls?direction=inbound&status=completed".to_owned()
        }),
        ("deep keyset page", |cursor| {
            format!("/api/calls?cursor={cursor}")
        }),
        ("active calls", |_| "/api/calls/active".to_owned()),
    ];
    let load = Load { http, tenants };
    for (name, path) in scenarios {
        let Measured { rate, p50, p99, .. } = load.measure(&uncached, path, requests, None).await?;
        println!(
            "api {name}, cache off: median of {RUNS}: {rate:.0} requests/s, p50 {p50:.2} ms, p99 {p99:.2} ms ({CLIENTS} clients)"
        );
        crate::common::report::record(
            format!("api {name} requests/s (cache off)"),
            format!(
                "{calls} calls over {apps} tenants, {CLIENTS} clients, data changing throughout"
            ),
            rate,
            "/s",
        );
    }
    // The same first page below saturation: latency is what one request costs, not the queue.
    let pace = 1_000.0;
    let Measured { p50, p99, .. } = load
        .measure(&uncached, scenarios[0].1, requests, Some(pace))
        .await?;
    println!(
        "api first page, cache off, at a steady {pace:.0} requests/s: median of {RUNS}: p50 {p50:.2} ms, p99 {p99:.2} ms"
    );
    // Cached answers: runs long enough (4x the requests) for every tenant's to go stale often.
    for (name, path) in scenarios {
        let Measured {
            rate,
            p50,
            p99,
            hit_share,
        } = load.measure(&cached, path, requests * 4, None).await?;
        println!(
            "api {name}, cache on: median of {RUNS}: {rate:.0} requests/s, p50 {p50:.2} ms, p99 {p99:.2} ms ({CLIENTS} clients; {:.1}% hits)",
            hit_share * 100.0
        );
    }
    stop.cancel();
    changes.await??;
    Ok(())
}
