//! What the benchmarks share.

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use db::apps::App;
use e2e::{TestDatabase, fixture};

pub const RUNS: usize = 3;
pub const LIFECYCLE: [&str; 5] = [
    "call_outbound_01_calling.json",
    "call_outbound_02_connected.json",
    "call_outbound_03_hangup.json",
    "call_outbound_04_recording.json",
    "call_outbound_05_recap_summary.json",
];

/// `events` distinct call events: the outbound lifecycle re-keyed per call.
pub fn call_events(events: usize) -> Vec<Value> {
    let lifecycle: Vec<Value> = LIFECYCLE.iter().map(|name| fixture(name)).collect();
    (0..events)
        .map(|i| {
            let mut event = lifecycle[i % lifecycle.len()].clone();
            let call = i64::try_from(i / lifecycle.len()).unwrap_or_default();
            let call_id = event["call_id"].as_i64().unwrap_or_default() + call * 8192;
            event["call_id"] = json!(call_id);
            event
        })
        .collect()
}

pub async fn new_app(db: &TestDatabase, secret: &str) -> anyhow::Result<Uuid> {
    let mut conn = db.connect().await;
    let key_id = Uuid::new_v4().simple().to_string();
    let app = App::create_with_key(
        &mut conn,
        &e2e::keyring(),
        "bench",
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
