//! The outage spool: verified events that could not be committed to Postgres are kept on local
//! disk, and moved into `webhook_events` once the database answers again.
//!
//! Why: Dialpad retries a call event only 3 times within ~14 s (`docs/dialpad.md` §6.3), so a
//! restart or failover longer than that would otherwise lose calls while ingest answers 503.
//!
//! - **Durable before the answer.** An event is appended as one JSON line to the active segment
//!   file (`segment-{seq:020}.jsonl` in `INGEST_SPOOL_DIR`) and `fdatasync`ed before its
//!   request is answered `202` (`{"spooled": true}`). Appends waiting at the same moment share
//!   one write and one sync (as the database writer shares commits). A new segment's directory
//!   entry is synced too.
//! - **Bounded.** The segments together hold at most `INGEST_SPOOL_MAX_BYTES`; beyond, a
//!   request is answered `503` with `Retry-After` (nothing is accepted that is not kept).
//! - **In order.** Once anything is spooled, every new event is spooled behind it until the
//!   spool is empty, so events reach the queue in the order they were accepted.
//! - **Drained without loss or duplicates.** The drainer takes the oldest segment (sealing the
//!   active one first, so appends go to a new file), stores its events in batches of
//!   [`DRAIN_BATCH`] with the same idempotent insert as requests (the dedupe key), and deletes
//!   the file only after every batch is committed. A crash mid-drain leaves the file: its
//!   events are stored again on restart and found to be duplicates. An event the database
//!   refuses for good (not an outage) is written to `rejected.jsonl` beside the segments and
//!   logged, never dropped.
//! - **Restart-safe.** Segments left by an earlier process are found at start and drained. A
//!   torn last line (a crash during an append, never answered) is skipped. A lock file
//!   (`.lock`, `flock`) keeps two processes from sharing a directory.
//!
//! Its depth is `ingest_spool_events` / `ingest_spool_bytes` and `/readyz` (`degraded`).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus::{IntCounter, IntGauge};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::{Notify, mpsc, oneshot};
use uuid::Uuid;

use db::queue::{self, NewWebhookEvent};
use db::{DbError, Pool};

/// Events stored by one insert while draining.
pub(crate) const DRAIN_BATCH: usize = 256;
/// A segment is closed once it holds this many bytes; the next append opens another.
const SEGMENT_BYTES: u64 = 8 * 1024 * 1024;
/// Most appends written and synced together.
const APPEND_BATCH: usize = 256;
/// A spooled Dialpad event is 2-4 KB: the room `/readyz` wants left to call the spool usable.
const TYPICAL_EVENT_BYTES: u64 = 4 * 1024;
/// The longest wait between two drain attempts while the database is down.
const MAX_DRAIN_BACKOFF: Duration = Duration::from_secs(5);

/// One spooled event: what the request would have stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SpooledEvent {
    /// The route's tenant; `None` on the unscoped route without `UNSCOPED_WEBHOOK_APP_ID`.
    pub(crate) app_id: Option<Uuid>,
    pub(crate) request_id: Option<String>,
    /// When the request was accepted (stored as the event's `received_at`).
    pub(crate) received_at: DateTime<Utc>,
    /// The dedupe key the request computed (from the claims before any U+0000 was replaced).
    pub(crate) dedupe_key: String,
    /// The verified JWT's claims, as they are stored.
    pub(crate) payload: Map<String, Value>,
}

impl SpooledEvent {
    /// What a request that could not reach the database spools.
    pub(crate) fn of(row: &NewWebhookEvent) -> Self {
        SpooledEvent {
            app_id: row.app_id,
            request_id: row.request_id.clone(),
            received_at: Utc::now(),
            dedupe_key: row.dedupe_key.clone(),
            payload: match &row.payload {
                Value::Object(claims) => claims.clone(),
                _ => Map::new(), // Unreachable: a verified event is an object.
            },
        }
    }

    fn into_row(self) -> NewWebhookEvent {
        let mut row = NewWebhookEvent::from_verified(self.app_id, self.payload);
        row.dedupe_key = self.dedupe_key;
        row.request_id = self.request_id;
        row.received_at = Some(self.received_at);
        row
    }
}

/// Why an event was not spooled.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SpoolError {
    #[error("the spool is full")]
    Full,
    #[error("the spool cannot be written: {0}")]
    Io(String),
}

/// The spool's gauges and counters (registered in the ingest registry).
#[derive(Debug, Clone)]
pub(crate) struct SpoolMetrics {
    /// `ingest_spool_events`: events in the spool now.
    pub(crate) events: IntGauge,
    /// `ingest_spool_bytes`: bytes of the segment files now.
    pub(crate) bytes: IntGauge,
    /// `ingest_spool_max_bytes`: `INGEST_SPOOL_MAX_BYTES`; 0 without a spool.
    pub(crate) max_bytes: IntGauge,
    /// `ingest_spool_drained_total`: events moved into the queue (duplicates included).
    pub(crate) drained: IntCounter,
    /// `ingest_spool_rejected_total`: events the database refused for good, kept in
    /// `rejected.jsonl`.
    pub(crate) rejected: IntCounter,
}

impl SpoolMetrics {
    /// Registers them (also without a spool: they stay 0, so dashboards and alerts find
    /// them on every ingest).
    pub(crate) fn register(metrics: &bootstrap::metrics::Metrics) -> Self {
        let gauge = |name: &str, help: &str| {
            let gauge = IntGauge::new(name, help).expect("valid metric");
            metrics.register(gauge.clone());
            gauge
        };
        let counter = |name: &str, help: &str| {
            let counter = IntCounter::new(name, help).expect("valid metric");
            metrics.register(counter.clone());
            counter
        };
        SpoolMetrics {
            events: gauge(
                "ingest_spool_events",
                "Verified events waiting in the outage spool for the database",
            ),
            bytes: gauge(
                "ingest_spool_bytes",
                "Bytes of the outage spool's segment files",
            ),
            max_bytes: gauge(
                "ingest_spool_max_bytes",
                "The outage spool's bound (INGEST_SPOOL_MAX_BYTES); 0 without a spool",
            ),
            drained: counter(
                "ingest_spool_drained_total",
                "Spooled events moved into webhook_events (duplicates included)",
            ),
            rejected: counter(
                "ingest_spool_rejected_total",
                "Spooled events the database refused for good, kept in rejected.jsonl",
            ),
        }
    }
}

/// A segment's size.
#[derive(Debug, Clone, Copy, Default)]
struct Size {
    bytes: u64,
    events: u64,
}

/// The segment files and the one being appended to.
#[derive(Debug)]
struct Segments {
    dir: PathBuf,
    /// The open segment, if any: appends go there.
    active: Option<(u64, File)>,
    next_seq: u64,
    sizes: BTreeMap<u64, Size>,
    metrics: SpoolMetrics,
}

impl Segments {
    fn path(&self, seq: u64) -> PathBuf {
        segment_path(&self.dir, seq)
    }

    fn total(&self) -> Size {
        self.sizes.values().fold(Size::default(), |sum, size| Size {
            bytes: sum.bytes + size.bytes,
            events: sum.events + size.events,
        })
    }

    fn publish(&self) {
        let total = self.total();
        self.metrics
            .events
            .set(i64::try_from(total.events).unwrap_or(i64::MAX));
        self.metrics
            .bytes
            .set(i64::try_from(total.bytes).unwrap_or(i64::MAX));
    }

    /// Writes `lines` (each ending in `\n`) to the active segment and syncs it.
    fn append(&mut self, lines: &[Vec<u8>]) -> std::io::Result<()> {
        if self.active.is_none() {
            let seq = self.next_seq;
            let file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(self.path(seq))?;
            sync_dir(&self.dir)?;
            self.next_seq += 1;
            self.sizes.insert(seq, Size::default());
            self.active = Some((seq, file));
        }
        let Some((seq, file)) = self.active.as_mut() else {
            return Err(std::io::Error::other("no open segment"));
        };
        let seq = *seq;
        file.write_all(&lines.concat())?;
        file.sync_data()?;
        let size = self.sizes.entry(seq).or_default();
        size.bytes += lines.iter().map(|l| l.len() as u64).sum::<u64>();
        size.events += lines.len() as u64;
        if size.bytes >= SEGMENT_BYTES {
            self.active = None;
        }
        self.publish();
        Ok(())
    }
}

struct Append {
    line: Vec<u8>,
    reply: oneshot::Sender<Result<(), SpoolError>>,
}

/// The spool of one ingest process (see the module documentation).
#[derive(Debug, Clone)]
pub(crate) struct Spool {
    dir: PathBuf,
    /// `ingest_spool_events`, kept by the segments under their lock; read without it.
    events: IntGauge,
    segments: Arc<Mutex<Segments>>,
    appends: mpsc::Sender<Append>,
    wake: Arc<Notify>,
    max_bytes: u64,
    /// Held for the process' life: the directory's `flock`.
    _lock: Arc<File>,
}

impl std::fmt::Debug for Append {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Append").finish_non_exhaustive()
    }
}

/// The spool's depth, for `/readyz`.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Depth {
    pub(crate) events: u64,
    pub(crate) bytes: u64,
    pub(crate) max_bytes: u64,
}

impl Spool {
    /// Opens (creating it if needed) the spool directory, takes its lock, finds the segments an
    /// earlier process left, and starts the appender task.
    ///
    /// # Errors
    /// When the directory cannot be created or read, or another process holds its lock.
    pub(crate) fn open(dir: &Path, max_bytes: u64, metrics: SpoolMetrics) -> anyhow::Result<Self> {
        use anyhow::Context;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("INGEST_SPOOL_DIR {}: cannot create it", dir.display()))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(".lock"))
            .with_context(|| format!("INGEST_SPOOL_DIR {}: cannot write in it", dir.display()))?;
        lock.try_lock().map_err(|_| {
            anyhow::anyhow!(
                "INGEST_SPOOL_DIR {} is in use by another ingest process; give each its own",
                dir.display()
            )
        })?;
        let mut sizes = BTreeMap::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let Some(seq) = entry.file_name().to_str().and_then(segment_seq) else {
                continue;
            };
            let content = std::fs::read(entry.path())?;
            let events = content
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .count();
            sizes.insert(
                seq,
                Size {
                    bytes: content.len() as u64,
                    events: events as u64,
                },
            );
        }
        metrics
            .max_bytes
            .set(i64::try_from(max_bytes).unwrap_or(i64::MAX));
        let metrics_events = metrics.events.clone();
        let segments = Segments {
            dir: dir.to_owned(),
            active: None,
            next_seq: sizes.keys().next_back().map_or(0, |last| last + 1),
            sizes,
            metrics,
        };
        segments.publish();
        let left = segments.total();
        if left.events > 0 {
            tracing::warn!(
                spool.events = left.events,
                spool.bytes = left.bytes,
                "The outage spool holds events from an earlier run; they are drained when the database answers."
            );
        }
        let segments = Arc::new(Mutex::new(segments));
        let (appends, queue) = mpsc::channel(APPEND_BATCH * 4);
        let wake = Arc::new(Notify::new());
        tokio::spawn(write_appends(
            Arc::clone(&segments),
            queue,
            Arc::clone(&wake),
            max_bytes,
        ));
        Ok(Spool {
            dir: dir.to_owned(),
            events: metrics_events,
            segments,
            appends,
            wake,
            max_bytes,
            _lock: Arc::new(lock),
        })
    }

    /// The spool's directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> MutexGuard<'_, Segments> {
        self.segments.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether anything is waiting: new events must then be spooled behind it.
    pub(crate) fn is_holding(&self) -> bool {
        // The gauge, not the segments' lock: this runs for every webhook, and the lock is held
        // through each append's sync.
        self.events.get() > 0
    }

    pub(crate) fn depth(&self) -> Depth {
        let total = self.lock().total();
        Depth {
            events: total.events,
            bytes: total.bytes,
            max_bytes: self.max_bytes,
        }
    }

    /// Whether one more event of about a webhook's size still fits.
    pub(crate) fn has_room(&self) -> bool {
        self.depth().bytes + TYPICAL_EVENT_BYTES <= self.max_bytes
    }

    /// Appends the event; returns once it is synced to disk.
    ///
    /// # Errors
    /// [`SpoolError::Full`] past `INGEST_SPOOL_MAX_BYTES`; [`SpoolError::Io`] when the disk
    /// fails (the request is then answered 503).
    pub(crate) async fn append(&self, event: &SpooledEvent) -> Result<(), SpoolError> {
        let mut line = serde_json::to_vec(event).map_err(|e| SpoolError::Io(e.to_string()))?;
        line.push(b'\n');
        let (reply, outcome) = oneshot::channel();
        let stopped = || SpoolError::Io("the spool writer has stopped".into());
        self.appends
            .send(Append { line, reply })
            .await
            .map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }

    /// Moves spooled events into the queue whenever there are any, oldest first; runs until
    /// dropped. `schema_checked`: whether start-up could check the schema (it could not while
    /// the database was down); if not, it is checked before the first drain.
    pub(crate) async fn drain_forever(
        self,
        pool: Pool,
        database_url: secrecy::SecretString,
        mut schema_checked: bool,
    ) {
        use secrecy::ExposeSecret;
        let mut backoff = Duration::from_millis(100);
        loop {
            let notified = self.wake.notified();
            if !self.is_holding() {
                // Woken by an append; the timeout covers a wake that raced this check.
                drop(tokio::time::timeout(Duration::from_secs(1), notified).await);
                continue;
            }
            let attempt = async {
                if !schema_checked {
                    db::migrations::ensure_schema_current(database_url.expose_secret())
                        .await
                        .map_err(|e| DrainError::Schema(e.to_string()))?;
                    schema_checked = true;
                }
                self.drain_oldest(&pool).await
            };
            match attempt.await {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(error) => {
                    tracing::warn!(error = %error, retry_in_ms = backoff.as_millis() as u64, "Spool drain paused.");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_DRAIN_BACKOFF);
                }
            }
        }
    }

    /// Stores the oldest segment's events, then deletes it.
    async fn drain_oldest(&self, pool: &Pool) -> Result<(), DrainError> {
        let (seq, path) = {
            let mut segments = self.lock();
            let Some(&seq) = segments.sizes.keys().next() else {
                return Ok(());
            };
            // Seal the segment being appended to: appends go to a new one from now on.
            if segments
                .active
                .as_ref()
                .is_some_and(|(active, _)| *active == seq)
            {
                segments.active = None;
            }
            (seq, segments.path(seq))
        };
        let read_path = path.clone();
        let events = tokio::task::spawn_blocking(move || read_segment(&read_path))
            .await
            .map_err(|e| DrainError::Io(e.to_string()))?
            .map_err(|e| DrainError::Io(e.to_string()))?;
        let metrics = self.lock().metrics.clone();
        for batch in events.chunks(DRAIN_BATCH) {
            let rows: Vec<NewWebhookEvent> =
                batch.iter().cloned().map(SpooledEvent::into_row).collect();
            let mut conn = pool.get().await.map_err(DbError::from)?;
            match queue::enqueue_many(&mut conn, &rows).await {
                Ok(_) => {}
                Err(error) if error.is_unavailable() => return Err(error.into()),
                // One bad row must not hold back the others, nor be lost.
                Err(_) => {
                    for (event, row) in batch.iter().zip(rows) {
                        match queue::enqueue_many(&mut conn, std::slice::from_ref(&row)).await {
                            Ok(_) => {}
                            Err(error) if error.is_unavailable() => return Err(error.into()),
                            // Refused for good only if the database itself is fine; an error
                            // of a connection going down is retried with the segment.
                            Err(error) => {
                                db::ping(pool).await?;
                                self.reject(event, &error.to_string())?;
                                metrics.rejected.inc();
                            }
                        }
                    }
                }
            }
            queue::wake_workers(&mut conn).await;
            metrics.drained.inc_by(batch.len() as u64);
        }
        let mut segments = self.lock();
        std::fs::remove_file(&path).map_err(|e| DrainError::Io(e.to_string()))?;
        sync_dir(&segments.dir).map_err(|e| DrainError::Io(e.to_string()))?;
        segments.sizes.remove(&seq);
        segments.publish();
        tracing::info!(
            spool.segment = seq,
            spool.drained = events.len(),
            spool.events_left = segments.total().events,
            "Spool segment drained into the queue."
        );
        Ok(())
    }

    /// Keeps an event the database refused for good in `rejected.jsonl`, with the reason.
    fn reject(&self, event: &SpooledEvent, reason: &str) -> Result<(), DrainError> {
        tracing::error!(
            request.id = event.request_id.as_deref().unwrap_or(""),
            error = reason,
            "A spooled event was refused by the database; kept in rejected.jsonl."
        );
        let mut line =
            serde_json::to_vec(&serde_json::json!({ "reason": reason, "spooled": event }))
                .map_err(|e| DrainError::Io(e.to_string()))?;
        line.push(b'\n');
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("rejected.jsonl"))
            .map_err(|e| DrainError::Io(e.to_string()))?;
        file.write_all(&line)
            .and_then(|()| file.sync_data())
            .map_err(|e| DrainError::Io(e.to_string()))
    }
}

#[derive(Debug, thiserror::Error)]
enum DrainError {
    #[error("database: {0}")]
    Db(#[from] DbError),
    #[error("schema: {0}")]
    Schema(String),
    #[error("spool file: {0}")]
    Io(String),
}

/// The appender task: takes every append waiting, writes and syncs them once, answers each.
async fn write_appends(
    segments: Arc<Mutex<Segments>>,
    mut queue: mpsc::Receiver<Append>,
    wake: Arc<Notify>,
    max_bytes: u64,
) {
    loop {
        let mut appends = Vec::with_capacity(APPEND_BATCH);
        if queue.recv_many(&mut appends, APPEND_BATCH).await == 0 {
            return; // Every sender is gone.
        }
        let segments = Arc::clone(&segments);
        let written = tokio::task::spawn_blocking(move || {
            let mut segments = segments.lock().unwrap_or_else(|e| e.into_inner());
            let mut room = max_bytes.saturating_sub(segments.total().bytes);
            let (fits, full): (Vec<Append>, Vec<Append>) = appends.into_iter().partition(|a| {
                let fits = a.line.len() as u64 <= room;
                if fits {
                    room -= a.line.len() as u64;
                }
                fits
            });
            let lines: Vec<Vec<u8>> = fits.iter().map(|a| a.line.clone()).collect();
            let outcome = if lines.is_empty() {
                Ok(())
            } else {
                segments.append(&lines)
            };
            (fits, full, outcome)
        })
        .await;
        let Ok((fits, full, outcome)) = written else {
            continue; // The blocking task panicked: its replies are dropped, answered 503.
        };
        for append in full {
            drop(append.reply.send(Err(SpoolError::Full)));
        }
        match outcome {
            Ok(()) => {
                for append in fits {
                    drop(append.reply.send(Ok(())));
                }
                wake.notify_one();
            }
            Err(error) => {
                tracing::error!(error = %error, "The outage spool cannot be written.");
                for append in fits {
                    drop(append.reply.send(Err(SpoolError::Io(error.to_string()))));
                }
            }
        }
    }
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("segment-{seq:020}.jsonl"))
}

fn segment_seq(file_name: &str) -> Option<u64> {
    file_name
        .strip_prefix("segment-")?
        .strip_suffix(".jsonl")?
        .parse()
        .ok()
}

/// A segment's events, in order. A last line without its newline was torn by a crash during
/// its append (and never answered): skipped. A line that does not parse elsewhere is a damaged
/// file: logged and skipped, the rest is kept.
fn read_segment(path: &Path) -> std::io::Result<Vec<SpooledEvent>> {
    let content = std::fs::read(path)?;
    let complete = match content.iter().rposition(|b| *b == b'\n') {
        Some(end) => &content[..=end],
        None => &[][..],
    };
    if complete.len() < content.len() {
        tracing::warn!(path = %path.display(), "Skipping a torn last line (a crash during its append; it was never answered).");
    }
    Ok(complete
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .filter_map(|line| match serde_json::from_slice(line) {
            Ok(event) => Some(event),
            Err(error) => {
                tracing::error!(path = %path.display(), error = %error, "Skipping a damaged spool line.");
                None
            }
        })
        .collect())
}

/// Makes a directory's entries (a created or deleted file) durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_sort_by_sequence_and_only_segments_are_read() {
        let dir = Path::new("/spool");
        let path = segment_path(dir, 42);
        let name = path.file_name().and_then(|n| n.to_str()).expect("name");
        assert_eq!(name, "segment-00000000000000000042.jsonl");
        assert_eq!(segment_seq(name), Some(42));
        assert_eq!(segment_seq("rejected.jsonl"), None);
        assert_eq!(segment_seq(".lock"), None);
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_the_rest_kept() {
        let dir = std::env::temp_dir().join(format!("spool-unit-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let event = SpooledEvent {
            app_id: None,
            request_id: Some("r1".into()),
            received_at: Utc::now(),
            dedupe_key: "k".into(),
            payload: Map::new(),
        };
        let mut content = serde_json::to_vec(&event).expect("json");
        content.push(b'\n');
        content.extend_from_slice(br#"{"app_id":null,"req"#);
        let path = dir.join("segment-00000000000000000000.jsonl");
        std::fs::write(&path, content).expect("write");
        let events = read_segment(&path).expect("reads");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].request_id.as_deref(), Some("r1"));
        std::fs::remove_dir_all(dir).expect("cleanup");
    }
}
