//! `bench worker`: drain rate against history size.

use super::*;

/// Part 1: drain rate against each history size. See the binary's docs.
pub async fn bench_worker(
    templates: &mut Templates,
    events: usize,
    histories: &[usize],
    max_drain: Duration,
) -> anyhow::Result<()> {
    let lifecycles = Arc::clone(&templates.lifecycles);
    let batch = worker::Settings::new("").worker_batch_size as usize;
    let mut medians = Vec::with_capacity(histories.len());
    for &history in histories {
        let shape = format!(
            "history {} calls (large tenant) + {SMALL_TENANTS} x {}",
            thousands(history),
            thousands(SMALL_HISTORY)
        );
        let mut rates = Vec::with_capacity(RUNS);
        for run in 1..=RUNS {
            let (db, tenants) = templates.copy(history).await?;
            let traffic = lifecycles.traffic(TRAFFIC_FIRST_CALL, events, |call| {
                tenants.mostly_large(call)
            });
            if run == 1 {
                let (first, mean) = legs_per_batch(&lifecycles, &traffic, batch);
                let large = traffic.iter().filter(|e| e.app_id == tenants.large).count();
                println!(
                    "worker, {shape}: backlog of {} interleaved events ({:.0}% the large tenant's): the first batch of {batch} touches {first} legs (mean {mean:.0})",
                    thousands(events),
                    100.0 * large as f64 / events.max(1) as f64,
                );
            }
            let mut conn = db.connect().await?;
            let queued = Instant::now();
            let ids = queue(&mut conn, &lifecycles, &traffic).await?;
            let queued = queued.elapsed();

            let worker = worker::Worker::build(worker::Settings::new(db.url())).await?;
            let started = Instant::now();
            let deadline = started + max_drain;
            let mut done = 0;
            let mut batches = Vec::new();
            // `Worker::drain`, batch by batch, so that a slow drain can be stopped (a batch cut
            // short rolls back).
            loop {
                let at = Instant::now();
                let Ok(report) =
                    tokio::time::timeout_at(deadline.into(), worker.process_batch()).await
                else {
                    break;
                };
                let report = report?;
                if report.claimed == 0 {
                    break;
                }
                batches.push(at.elapsed());
                done += report.done;
            }
            let elapsed = started.elapsed();
            let drained = processed(&mut conn, &ids).await?;
            anyhow::ensure!(drained == done, "{done} done, {drained} processed");
            let rate = done as f64 / elapsed.as_secs_f64();
            batches.sort();
            let cap = if done < events {
                format!(
                    " CAPPED at {max_drain:.0?}: {} of {} done",
                    thousands(done),
                    thousands(events)
                )
            } else {
                String::new()
            };
            let batch_times = match batches.last() {
                Some(max) => format!(
                    "{} batches, p50 {:.0?}, max {max:.0?}",
                    batches.len(),
                    percentile(&batches, 0.5)
                ),
                None => "no batch finished".to_owned(),
            };
            println!(
                "worker run {run}, {shape}: queued in {queued:.1?}, drained in {elapsed:.1?}{cap}: {rate:.0} events/s ({batch_times})"
            );
            rates.push(rate);
        }
        let rate = median(rates);
        println!("worker median of {RUNS}, {shape}: {rate:.0} events/s");
        crate::common::report::record(
            format!("worker drain events/s, history {}", thousands(history)),
            format!("{shape}; one worker, batch {batch}"),
            rate,
            "/s",
        );
        medians.push((history, rate));
    }
    println!(
        "worker drain rate vs history (median of {RUNS}; one worker, batch {batch}; {} interleaved events, 90% the large tenant's):",
        thousands(events)
    );
    for (history, rate) in medians {
        println!(
            "  large tenant with {:>9} calls of history: {rate:>7.0} events/s",
            thousands(history)
        );
    }
    Ok(())
}
