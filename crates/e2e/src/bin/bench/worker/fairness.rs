//! `bench fairness`: a quiet tenant's latency while another tenant's backlog drains.

use super::*;

/// Part 3: a quiet tenant's latency while another tenant's backlog drains. See the binary's
/// docs.
pub async fn bench_fairness(
    templates: &mut Templates,
    backlog: usize,
    quiet_rate: usize,
    max_seconds: usize,
    history: usize,
) -> anyhow::Result<()> {
    let lifecycles = Arc::clone(&templates.lifecycles);
    let window = Duration::from_secs(max_seconds as u64);
    let shape = format!(
        "history {} calls, noisy backlog {} events (the large tenant's), quiet tenant {quiet_rate} webhooks/s",
        thousands(history),
        thousands(backlog)
    );
    let (mut p50s, mut p99s, mut rates) = (Vec::new(), Vec::new(), Vec::new());
    for run in 1..=RUNS {
        let (db, tenants) = templates.copy(history).await?;
        let noisy = lifecycles.traffic(TRAFFIC_FIRST_CALL, backlog, |_| tenants.large);
        let mut conn = db.connect().await?;
        let ids = queue(&mut conn, &lifecycles, &noisy).await?;
        let quiet_bodies: Vec<String> = lifecycles
            .traffic(QUIET_FIRST_CALL, quiet_rate * max_seconds, |_| {
                tenants.quiet()
            })
            .iter()
            .map(|event| sign(&lifecycles.event(event), SMALL_SECRET))
            .collect();

        let stop = CancellationToken::new();
        let url = format!(
            "{}/{}",
            start_ingest(db.url(), &stop).await?,
            tenants.quiet()
        );
        let probe = DoneProbe::start(db.url()).await?;
        let worker = worker::Worker::build(worker::Settings::new(db.url())).await?;
        let started = Instant::now();
        let worker = tokio::spawn(worker.run_until_stopped(stop.clone()));
        let stop_sending = CancellationToken::new();
        let (sent, drained) = tokio::join!(
            probe.send_paced(&url, &quiet_bodies, quiet_rate as f64, &stop_sending),
            async {
                let drained = wait_drained(&mut conn, &ids, started + window).await;
                stop_sending.cancel();
                drained
            }
        );
        let (sent, drained) = (sent?, drained?);
        let elapsed = started.elapsed();
        let done = processed(&mut conn, &ids).await?;
        probe.wait_for(sent, PATIENCE).await;
        let observed = probe.finish().await?;
        stop_worker(&stop, worker).await?;
        let rate = done as f64 / elapsed.as_secs_f64();
        let (p50, p99, _, unfinished) = summarize(&observed);
        println!(
            "fairness run {run}: noisy backlog {} in {elapsed:.1?} ({} events, {rate:.0}/s); quiet tenant: {sent} webhooks, ingest 200 -> done p50 {p50:.2?}, p99 {p99:.2?}{}",
            if drained { "drained" } else { "NOT drained" },
            thousands(done),
            unfinished_note(unfinished)
        );
        p50s.push(ms(p50));
        p99s.push(ms(p99));
        rates.push(rate);
    }
    let quiet_p99 = median(p99s.clone());
    crate::common::report::record(
        "quiet tenant p99 during another's backlog",
        shape.clone(),
        quiet_p99,
        "ms",
    );
    println!(
        "fairness median of {RUNS}, {shape}: quiet p50 {:.2} ms, p99 {:.2} ms; noisy drain {:.0} events/s",
        median(p50s),
        median(p99s),
        median(rates)
    );
    Ok(())
}
