//! `bench latency`: end-to-end latency right after a backlog.

use super::*;

/// Part 2: end-to-end latency right after a backlog. See the binary's docs.
pub async fn bench_latency(
    templates: &mut Templates,
    backlog: usize,
    rate: usize,
    seconds: usize,
    history: usize,
    max_drain: Duration,
) -> anyhow::Result<()> {
    let lifecycles = Arc::clone(&templates.lifecycles);
    let live = rate * seconds;
    let shape = format!(
        "history {} calls, backlog {} events, then {} webhooks at {rate}/s (all the large tenant's, interleaved)",
        thousands(history),
        thousands(backlog),
        thousands(live)
    );
    let (mut p50s, mut p99s, mut maxes) = (Vec::new(), Vec::new(), Vec::new());
    for run in 1..=RUNS {
        let (db, tenants) = templates.copy(history).await?;
        // One stream: the live webhooks are what Dialpad sends next, later events of the
        // backlog's calls among them.
        let traffic = lifecycles.traffic(TRAFFIC_FIRST_CALL, backlog + live, |_| tenants.large);
        let mut conn = db.connect().await?;
        let ids = queue(&mut conn, &lifecycles, &traffic[..backlog]).await?;
        let bodies: Vec<String> = traffic[backlog..]
            .iter()
            .map(|event| sign(&lifecycles.event(event), LARGE_SECRET))
            .collect();

        let stop = CancellationToken::new();
        let url = format!("{}/{}", start_ingest(db.url(), &stop).await?, tenants.large);
        let worker = worker::Worker::build(worker::Settings::new(db.url())).await?;
        let started = Instant::now();
        let worker = tokio::spawn(worker.run_until_stopped(stop.clone()));
        let drained = wait_drained(&mut conn, &ids, started + max_drain).await?;
        let elapsed = started.elapsed();
        let done = processed(&mut conn, &ids).await?;
        let drain = format!(
            "backlog {} in {elapsed:.1?} ({:.0} events/s)",
            if drained { "drained" } else { "NOT drained" },
            done as f64 / elapsed.as_secs_f64()
        );

        let probe = DoneProbe::start(db.url()).await?;
        let sent = probe
            .send_paced(&url, &bodies, rate as f64, &CancellationToken::new())
            .await?;
        probe.wait_for(sent, PATIENCE).await;
        let observed = probe.finish().await?;
        stop_worker(&stop, worker).await?;
        let (p50, p99, max, unfinished) = summarize(&observed);
        println!(
            "latency run {run}: {drain}; then ingest 200 -> done p50 {p50:.2?}, p99 {p99:.2?}, max {max:.2?}{}",
            unfinished_note(unfinished)
        );
        p50s.push(ms(p50));
        p99s.push(ms(p99));
        maxes.push(ms(max));
    }
    let p99 = median(p99s);
    println!(
        "latency median of {RUNS}, {shape}: p50 {:.2} ms, p99 {p99:.2} ms, max {:.2} ms",
        median(p50s),
        median(maxes)
    );
    crate::common::report::record("end-to-end p99 after a backlog", shape, p99, "ms");
    Ok(())
}
