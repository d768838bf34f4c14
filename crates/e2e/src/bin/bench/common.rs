//! What the benchmarks share: statistics, tenants, scratch databases, the realistic interleaved
//! call traffic, and the ingest-200-to-`done` latency probe.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use db::apps::App;
use e2e::fixture;

/// Runs per measurement; figures are their medians.
pub const RUNS: usize = 3;

/// Creates a tenant with webhook secret `secret` (and an unusable API key).
pub async fn new_app(
    conn: &mut AsyncPgConnection,
    name: &str,
    secret: &str,
) -> anyhow::Result<Uuid> {
    let key_id = Uuid::new_v4().simple().to_string();
    let app = App::create_with_key(
        conn,
        &e2e::keyring(),
        name,
        secret,
        &key_id,
        "x",
        &db::audit::Actor("bench".into()),
    )
    .await?;
    Ok(app.id)
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Names of every database the benchmarks create themselves ([`ScratchDatabase`]):
/// `cti_bench_{pid}_…`, so that concurrent runs keep apart and a dead run's leftovers are known.
const SCRATCH_PREFIX: &str = "cti_bench_";

async fn admin() -> anyhow::Result<AsyncPgConnection> {
    let url = db::testing::server_url();
    AsyncPgConnection::establish(&url)
        .await
        .with_context(|| format!("cannot connect to the benchmark Postgres at {url}"))
}

/// A database created by name on the test server (`TEST_DATABASE_URL`), dropped with the
/// value. Unlike `TestDatabase` it can be created from any template, e.g. a seeded one.
#[derive(Debug)]
pub struct ScratchDatabase {
    name: String,
    url: String,
}

impl ScratchDatabase {
    /// `CREATE DATABASE cti_bench_{pid}_{suffix} {options}`.
    pub async fn create(suffix: &str, options: &str) -> anyhow::Result<ScratchDatabase> {
        let name = format!("{SCRATCH_PREFIX}{}_{suffix}", std::process::id());
        diesel::sql_query(format!("CREATE DATABASE {name} {options}"))
            .execute(&mut admin().await?)
            .await
            .with_context(|| format!("cannot create database {name}"))?;
        let server = db::testing::server_url();
        let base = server.rsplit_once('/').map_or(server.as_str(), |(b, _)| b);
        Ok(ScratchDatabase {
            url: format!("{base}/{name}"),
            name,
        })
    }

    /// A copy of this database (`CREATE DATABASE … TEMPLATE`, copying its files: faster than
    /// the WAL-logged default for gigabytes). Nobody may be connected to this one meanwhile.
    pub async fn clone_as(&self, suffix: &str) -> anyhow::Result<ScratchDatabase> {
        Self::create(
            suffix,
            &format!("TEMPLATE {} STRATEGY FILE_COPY", self.name),
        )
        .await
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub async fn connect(&self) -> anyhow::Result<AsyncPgConnection> {
        AsyncPgConnection::establish(&self.url)
            .await
            .with_context(|| format!("cannot connect to {}", self.name))
    }

    /// Its size on disk, bytes.
    pub async fn size(&self) -> anyhow::Result<u64> {
        #[derive(diesel::QueryableByName)]
        struct Size {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            bytes: i64,
        }
        let size: Size = diesel::sql_query("SELECT pg_database_size($1) AS bytes")
            .bind::<diesel::sql_types::Text, _>(&self.name)
            .get_result(&mut admin().await?)
            .await?;
        Ok(u64::try_from(size.bytes)?)
    }

    /// Drops the scratch databases of processes that no longer run: what aborted runs left.
    pub async fn sweep() -> anyhow::Result<Vec<String>> {
        #[derive(diesel::QueryableByName)]
        struct Name {
            #[diesel(sql_type = diesel::sql_types::Text)]
            datname: String,
        }
        let mut conn = admin().await?;
        let names: Vec<Name> =
            diesel::sql_query("SELECT datname FROM pg_database WHERE starts_with(datname, $1)")
                .bind::<diesel::sql_types::Text, _>(SCRATCH_PREFIX)
                .load(&mut conn)
                .await?;
        let mut dropped = Vec::with_capacity(names.len());
        for Name { datname } in names {
            let owner = datname[SCRATCH_PREFIX.len()..]
                .split_once('_')
                .and_then(|(pid, _)| pid.parse::<u32>().ok());
            let Some(owner) = owner else { continue };
            if std::path::Path::new(&format!("/proc/{owner}")).exists() {
                continue;
            }
            diesel::sql_query(format!("DROP DATABASE IF EXISTS {datname} WITH (FORCE)"))
                .execute(&mut conn)
                .await?;
            dropped.push(datname);
        }
        Ok(dropped)
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop may run inside the runtime, which cannot block on async work: use a thread.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin().await.ok()?)
                    .await
                    .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("warning: database {} was not dropped", self.name);
        }
    }
}

/// The call lifecycles of `testdata/dialpad`, each a call's events in the order Dialpad sends
/// them: outbound (5 events, 1 leg), inbound to voicemail (6 events, 1 leg), inbound through a
/// call centre (5 events, 2 legs), inbound to a department, transferred (6 events, 3 legs).
const LIFECYCLES: [&[&str]; 4] = [
    &[
        "call_outbound_01_calling.json",
        "call_outbound_02_connected.json",
        "call_outbound_03_hangup.json",
        "call_outbound_04_recording.json",
        "call_outbound_05_recap_summary.json",
    ],
    &[
        "call_inbound_vm_01_ringing.json",
        "call_inbound_vm_02_missed.json",
        "call_inbound_vm_03_voicemail.json",
        "call_inbound_vm_04_hangup.json",
        "call_inbound_vm_05_voicemail_uploaded.json",
        "call_inbound_vm_06_transcription.json",
    ],
    &[
        "call_inbound_cc_01_queued.json",
        "call_inbound_cc_02_ringing.json",
        "call_inbound_cc_03_connected.json",
        "call_inbound_cc_04_hangup_agent_leg.json",
        "call_inbound_cc_05_hangup_callcenter_leg.json",
    ],
    &[
        "call_transfer_01_department_ringing.json",
        "call_transfer_02_agent_a_connected.json",
        "call_transfer_03_agent_b_connected.json",
        "call_transfer_04_agent_a_hangup.json",
        "call_transfer_05_agent_b_hangup.json",
        "call_transfer_06_department_hangup.json",
    ],
];

/// The lifecycle call number `n` follows is `MIX[n % 10]`: 40% outbound, 20% voicemail, 30%
/// call centre, 10% transferred; 1.5 legs and 5.3 events per call.
pub const MIX: [usize; 10] = [0, 0, 0, 0, 1, 1, 2, 2, 2, 3];

/// The payload fields holding leg ids: re-keyed per call.
pub const ID_FIELDS: [&str; 4] = [
    "call_id",
    "master_call_id",
    "entry_point_call_id",
    "operator_call_id",
];

/// The payload fields holding times (epoch ms): shifted per call.
pub const TIME_FIELDS: [&str; 7] = [
    "date_started",
    "date_rang",
    "date_first_rang",
    "date_queued",
    "date_connected",
    "date_ended",
    "event_timestamp",
];

/// Generated leg ids are `LEG_ID_BASE + (call * LEG_SLOTS + slot) * 8192`: Dialpad-like (in
/// [2^52, 2^53), multiples of 2^13), distinct per call and leg, and below every fixture's id
/// while `call` < 7.9e9.
pub const LEG_ID_BASE: i64 = 1 << 52;
/// Room for each call's legs (the fixtures have 7).
pub const LEG_SLOTS: i64 = 8;
/// Dialpad ids are multiples of 2^13.
pub const DIALPAD_ID_STEP: i64 = 8192;

/// When generated traffic starts (2026-11-20T00:00Z, the day after the fixtures), epoch ms;
/// seeded history ends there.
pub const TRAFFIC_START_MS: i64 = 1_795_132_800_000;

/// A new call starts every 20 ms on average (50 calls/s): about 265 events/s, so a batch of 500
/// consecutive events spans about 2 s and touches about 490 legs.
const CALL_GAP_MS: i64 = 20;

/// One lifecycle's events, and when its call starts (its earliest `date_started`), epoch ms.
#[derive(Debug)]
struct Lifecycle {
    events: Vec<Value>,
    started_ms: i64,
}

/// The fixture lifecycles, and how a call of them is re-keyed and moved in time.
#[derive(Debug)]
pub struct Lifecycles {
    lifecycles: Vec<Lifecycle>,
    /// Every fixture leg id, lifecycle by lifecycle in order of appearance: a leg's slot is its
    /// position here.
    legs: Vec<i64>,
    /// The lifecycle of each leg in `legs`.
    leg_lifecycles: Vec<usize>,
}

/// An event of generated traffic, materialised on demand ([`Lifecycles::event`]).
#[derive(Debug, Clone, Copy)]
pub struct TrafficEvent {
    /// Its `event_timestamp`, epoch ms.
    pub at_ms: i64,
    pub app_id: Uuid,
    call: u64,
    /// Its position in the call's lifecycle.
    index: usize,
    /// How far the call is moved from its fixture's time, ms.
    shift_ms: i64,
}

/// A deterministic hash of `n` (`SplitMix64`'s finaliser): jitter and tenant choice that are
/// independent of [`MIX`].
pub fn spread(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Lifecycles {
    pub fn load() -> anyhow::Result<Lifecycles> {
        let mut lifecycles = Vec::with_capacity(LIFECYCLES.len());
        let (mut legs, mut leg_lifecycles) = (Vec::new(), Vec::new());
        for (n, names) in LIFECYCLES.iter().enumerate() {
            let events: Vec<Value> = names.iter().map(|name| fixture(name)).collect();
            for event in &events {
                let leg = event["call_id"].as_i64().context("fixture call_id")?;
                if !legs.contains(&leg) {
                    legs.push(leg);
                    leg_lifecycles.push(n);
                }
            }
            let started_ms = events
                .iter()
                .filter_map(|event| event["date_started"].as_i64())
                .min()
                .context("fixture date_started")?;
            lifecycles.push(Lifecycle { events, started_ms });
        }
        anyhow::ensure!(legs.len() <= LEG_SLOTS as usize, "more legs than slots");
        Ok(Lifecycles {
            lifecycles,
            legs,
            leg_lifecycles,
        })
    }

    fn of_call(&self, call: u64) -> &Lifecycle {
        &self.lifecycles[MIX[(call % 10) as usize]]
    }

    /// Every fixture event, lifecycle by lifecycle.
    pub fn fixture_events(&self) -> impl Iterator<Item = &Value> {
        self.lifecycles.iter().flat_map(|l| &l.events)
    }

    /// The fixture leg ids, by slot.
    pub fn fixture_legs(&self) -> &[i64] {
        &self.legs
    }

    /// The lifecycle of each fixture leg, by slot.
    pub fn fixture_leg_lifecycles(&self) -> &[usize] {
        &self.leg_lifecycles
    }

    /// When each lifecycle's call starts in its fixtures, epoch ms.
    pub fn fixture_starts(&self) -> Vec<i64> {
        self.lifecycles.iter().map(|l| l.started_ms).collect()
    }

    /// The id that fixture leg `fixture_leg` takes in call number `call`.
    fn leg_id(&self, call: u64, fixture_leg: i64) -> Option<i64> {
        let slot = self.legs.iter().position(|leg| *leg == fixture_leg)?;
        let call = i64::try_from(call).ok()?;
        Some(LEG_ID_BASE + (call * LEG_SLOTS + i64::try_from(slot).ok()?) * DIALPAD_ID_STEP)
    }

    /// The event's leg: `(app_id, call_id)`.
    pub fn leg_of(&self, event: &TrafficEvent) -> (Uuid, Option<i64>) {
        let fixture = &self.of_call(event.call).events[event.index];
        let leg = fixture["call_id"]
            .as_i64()
            .and_then(|leg| self.leg_id(event.call, leg));
        (event.app_id, leg)
    }

    /// The event as Dialpad would send it: its fixture with every leg id re-keyed for its call
    /// and every time moved to its call's start.
    pub fn event(&self, event: &TrafficEvent) -> Value {
        let mut payload = self.of_call(event.call).events[event.index].clone();
        for field in ID_FIELDS {
            if let Some(leg) = payload[field].as_i64() {
                payload[field] = json!(self.leg_id(event.call, leg));
            }
        }
        for field in TIME_FIELDS {
            if let Some(at) = payload[field].as_i64() {
                payload[field] = json!(at + event.shift_ms);
            }
        }
        payload
    }

    /// `events` events of concurrent calls numbered from `first_call`, each call's events
    /// spread over minutes as in its fixtures, a call starting every [`CALL_GAP_MS`] (jittered)
    /// from [`TRAFFIC_START_MS`]; all ordered by event time, so consecutive events
    /// belong to different calls. Call `n` belongs to tenant `tenant_of(n)`. The traffic is cut
    /// at the time of its last event: later calls have only their first events in it.
    pub fn traffic(
        &self,
        first_call: u64,
        events: usize,
        tenant_of: impl Fn(u64) -> Uuid,
    ) -> Vec<TrafficEvent> {
        let mut traffic = Vec::with_capacity(events + events / 4);
        let start_of = |call: u64| {
            let n = i64::try_from(call - first_call).unwrap_or(i64::MAX / CALL_GAP_MS - 1);
            TRAFFIC_START_MS + n * CALL_GAP_MS
        };
        let mut call = first_call;
        loop {
            // Enough calls for the events asked, then check that no later call has an event
            // before the cut.
            let more = (events.saturating_sub(traffic.len()) / 5).max(1_000);
            for _ in 0..more {
                let lifecycle = self.of_call(call);
                let jitter = i64::try_from(spread(call) % CALL_GAP_MS as u64).unwrap_or(0);
                let shift_ms = start_of(call) + jitter - lifecycle.started_ms;
                let app_id = tenant_of(call);
                for (index, event) in lifecycle.events.iter().enumerate() {
                    let at_ms = event["event_timestamp"].as_i64().unwrap_or_default() + shift_ms;
                    traffic.push(TrafficEvent {
                        at_ms,
                        app_id,
                        call,
                        index,
                        shift_ms,
                    });
                }
                call += 1;
            }
            traffic.sort_by_key(|e| (e.at_ms, e.call, e.index));
            if traffic.len() >= events
                && traffic
                    .get(events.wrapping_sub(1))
                    .is_none_or(|last| last.at_ms < start_of(call))
            {
                traffic.truncate(events);
                return traffic;
            }
        }
    }
}

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
