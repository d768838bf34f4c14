//! Ingest: what is accepted, what is refused, and that refused input is never stored.

mod refusals;
mod request_ids;
mod spool;
mod storage;
mod unscoped;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use e2e::{TestStack, UNSCOPED_SECRET, fixture, fixture_bytes, sign};
use serde_json::{Value, json};

async fn error_code(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("JSON error body");
    assert!(
        body["message"].is_string(),
        "error bodies carry a message: {body}"
    );
    (
        status,
        body["error"].as_str().expect("error code").to_owned(),
    )
}
