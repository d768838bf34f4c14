//! What the benchmarks share: statistics, tenants, scratch databases, the realistic interleaved
//! call traffic, and the ingest-200-to-`done` latency probe.

mod probe;
pub mod report;
mod scratch;
mod traffic;

pub use probe::{DoneProbe, Observed};
pub use scratch::ScratchDatabase;
pub use traffic::{
    DIALPAD_ID_STEP, ID_FIELDS, LEG_ID_BASE, LEG_SLOTS, Lifecycles, MIX, TIME_FIELDS,
    TRAFFIC_START_MS, TrafficEvent, spread,
};

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
