//! The end-to-end suite: real servers, a real Postgres database per test, real signatures.

mod admin;
mod api;
mod dialpad;
mod domain_rows;
mod fuzz;
mod ingest;
mod lifecycle;
mod limits;
mod migrations;
mod openapi;
mod operations;
mod response_cache;
mod schema;
mod settings;
mod tenant_api;
mod tolerant_reader;
mod worker;
mod worker_scale;

/// The outbound call lifecycle fixtures, in Dialpad's order.
pub const OUTBOUND: [&str; 5] = [
    "call_outbound_01_calling.json",
    "call_outbound_02_connected.json",
    "call_outbound_03_hangup.json",
    "call_outbound_04_recording.json",
    "call_outbound_05_recap_summary.json",
];
