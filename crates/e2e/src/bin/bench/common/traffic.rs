//! The realistic interleaved call traffic: the fixture lifecycles, re-keyed and moved in time.

use super::*;
use db::testing::fixtures::LIFECYCLES;

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
