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
    let defaults = worker::Settings::new("");
    let (batch, concurrency) = (
        defaults.worker_batch_size as usize,
        defaults.worker_concurrency,
    );
    let mut medians = Vec::with_capacity(histories.len());
    for &history in histories {
        let shape = format!(
            "history {} calls (large tenant) + {SMALL_TENANTS} x {}",
            thousands(history),
            thousands(SMALL_HISTORY)
        );
        let (mut rates, mut sql_rates, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
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
            let rate = drain_by_worker(&db, &lifecycles, &traffic, max_drain, &shape, run).await?;
            drop(db);
            // The ceiling: the same backlog on a fresh copy, drained by SQL alone.
            let (db, _) = templates.copy(history).await?;
            let mut conn = db.connect().await?;
            let ids = queue(&mut conn, &lifecycles, &traffic).await?;
            let started = Instant::now();
            let drained = sql_drain::drain_by_sql(&mut conn, batch as i64).await?;
            let sql_rate = drained as f64 / started.elapsed().as_secs_f64();
            anyhow::ensure!(
                processed(&mut conn, &ids).await? == events && drained == events,
                "the SQL-only drain left events pending"
            );
            println!(
                "worker run {run}, {shape}: SQL-only drain of the same backlog {sql_rate:.0} events/s: worker {:.2}x",
                rate / sql_rate
            );
            rates.push(rate);
            sql_rates.push(sql_rate);
            ratios.push(rate / sql_rate);
        }
        let (rate, sql_rate, ratio) = (median(rates), median(sql_rates), median(ratios));
        println!(
            "worker median of {RUNS}, {shape}: {rate:.0} events/s; SQL-only drain {sql_rate:.0} events/s ({ratio:.2}x)"
        );
        crate::common::report::record_with_ceiling(
            format!("worker drain events/s, history {}", thousands(history)),
            format!("{shape}; one worker, batch {batch}, {concurrency} batches in flight"),
            rate,
            "/s",
            Some(crate::common::report::Ceiling {
                name: "SQL-only drain events/s".into(),
                value: sql_rate,
                ratio,
            }),
        );
        medians.push((history, rate));
    }
    println!(
        "worker drain rate vs history (median of {RUNS}; one worker, batch {batch}, {concurrency} batches in flight; {} interleaved events, 90% the large tenant's):",
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

/// Queues `traffic` on `db` and drains it with one worker (default settings: batch 500, two
/// batches in flight), batch by batch (a drain is cut after `max_drain`); returns events/s.
async fn drain_by_worker(
    db: &ScratchDatabase,
    lifecycles: &Lifecycles,
    traffic: &[TrafficEvent],
    max_drain: Duration,
    shape: &str,
    run: usize,
) -> anyhow::Result<f64> {
    let mut conn = db.connect().await?;
    let queued = Instant::now();
    let ids = queue(&mut conn, lifecycles, traffic).await?;
    let queued = queued.elapsed();

    let settings = worker::Settings::new(db.url());
    let loops = settings.worker_concurrency as usize;
    let worker = worker::Worker::build(settings).await?;
    let started = Instant::now();
    let deadline = started + max_drain;
    // `Worker::drain`, batch by batch, in `WORKER_CONCURRENCY` loops as a running worker's
    // lane, so that a slow drain can be stopped (a batch cut short rolls back).
    let tasks: Vec<_> = (0..loops)
        .map(|_| {
            let worker = worker.clone();
            tokio::spawn(async move {
                let (mut done, mut batches) = (0, Vec::new());
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
                anyhow::Ok((done, batches))
            })
        })
        .collect();
    let (mut done, mut batches) = (0, Vec::new());
    for task in tasks {
        let (loop_done, loop_batches) = task.await??;
        done += loop_done;
        batches.extend(loop_batches);
    }
    let elapsed = started.elapsed();
    let drained = processed(&mut conn, &ids).await?;
    anyhow::ensure!(drained == done, "{done} done, {drained} processed");
    let rate = done as f64 / elapsed.as_secs_f64();
    batches.sort();
    let cap = if done < traffic.len() {
        format!(
            " CAPPED at {max_drain:.0?}: {} of {} done",
            thousands(done),
            thousands(traffic.len())
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
    Ok(rate)
}
