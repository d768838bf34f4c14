//! The ingest-200-to-`done` latency probe.

use super::*;

/// Measures how long each acknowledged event takes from ingest's 200 to the moment another
/// connection sees it `done` (its domain rows are committed in the same transaction), polling
/// every millisecond.
#[derive(Debug)]
pub struct DoneProbe {
    /// Event id → when ingest answered 200.
    acked: Arc<Mutex<HashMap<i64, Instant>>>,
    latencies: Arc<Mutex<Vec<Duration>>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// What a [`DoneProbe`] saw.
#[derive(Debug)]
pub struct Observed {
    /// Latencies of the events seen `done`, sorted.
    pub latencies: Vec<Duration>,
    /// How long each event never seen `done` had waited when the probe stopped.
    pub unfinished: Vec<Duration>,
}

impl DoneProbe {
    pub async fn start(url: &str) -> anyhow::Result<DoneProbe> {
        let acked: Arc<Mutex<HashMap<i64, Instant>>> = Arc::default();
        let latencies: Arc<Mutex<Vec<Duration>>> = Arc::default();
        let stop = CancellationToken::new();
        let mut conn = AsyncPgConnection::establish(url).await?;
        let task = {
            let (acked, latencies, stop) =
                (Arc::clone(&acked), Arc::clone(&latencies), stop.clone());
            tokio::spawn(async move {
                use db::schema::webhook_events::dsl as e;
                use diesel::{ExpressionMethods, QueryDsl};
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
                Ok(())
            })
        };
        Ok(DoneProbe {
            acked,
            latencies,
            stop,
            task,
        })
    }

    /// How many acknowledged events have been seen `done`.
    pub fn seen(&self) -> usize {
        self.latencies.lock().map(|l| l.len()).unwrap_or_default()
    }

    /// Waits up to `patience` for `count` events to be seen `done`; whether they were.
    pub async fn wait_for(&self, count: usize, patience: Duration) -> bool {
        let deadline = Instant::now() + patience;
        while self.seen() < count {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    pub async fn finish(self) -> anyhow::Result<Observed> {
        self.stop.cancel();
        self.task.await??;
        let now = Instant::now();
        let mut latencies = self.latencies.lock().map(|l| l.clone()).unwrap_or_default();
        latencies.sort();
        let unfinished = self
            .acked
            .lock()
            .map(|a| a.values().map(|at| now.duration_since(*at)).collect())
            .unwrap_or_default();
        Ok(Observed {
            latencies,
            unfinished,
        })
    }

    /// Posts `bodies` to `url` at a steady `rate` per second (each request starts on schedule,
    /// whatever the earlier ones are doing) until all are sent or `stop` is cancelled; probes
    /// each acknowledged event. Returns how many were acknowledged.
    pub async fn send_paced(
        &self,
        url: &str,
        bodies: &[String],
        rate: f64,
        stop: &CancellationToken,
    ) -> anyhow::Result<usize> {
        let http = reqwest::Client::new();
        let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        let mut senders = Vec::with_capacity(bodies.len());
        for body in bodies {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = ticker.tick() => {}
            }
            let (request, acked) = (http.post(url).body(body.clone()), Arc::clone(&self.acked));
            senders.push(tokio::spawn(async move {
                let response = request.send().await?;
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
        let sent = senders.len();
        for sender in senders {
            sender.await??;
        }
        Ok(sent)
    }
}
