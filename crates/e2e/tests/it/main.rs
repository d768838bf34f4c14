//! The end-to-end suite: real servers, a real Postgres database per test, real signatures.

mod admin;
mod api;
mod deploy;
mod dialpad;
mod domain_rows;
mod fuzz;
mod ingest;
mod lifecycle;
mod limits;
mod metrics;
mod migrations;
mod openapi;
mod operations;
mod push;
mod response_cache;
mod schema;
mod settings;
mod tenant_api;
mod tls;
mod tolerant_reader;
mod worker;
mod worker_scale;

pub use db::testing::fixtures::OUTBOUND;
