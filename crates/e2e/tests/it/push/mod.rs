//! Push to client apps: a tenant subscribes over HTTP, the worker announces what a Dialpad
//! event changed, and a local receiver gets it signed both ways, again with the same id after
//! failures; 410 deactivates, `PATCH active: true` revives; a replay announces nothing twice.

mod delivery;
mod leases;
mod snippets;
mod ssrf;
mod streams;
mod subscriptions;
mod test_send;

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use e2e::{TestApp, TestStack};
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::OUTBOUND;

/// A local receiver answering every `POST` with `response`.
async fn receiver_answering(response: ResponseTemplate) -> MockServer {
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(response)
        .mount(&receiver)
        .await;
    receiver
}

/// Subscribes `app` to `events` at the receiver's `/hook`; the subscription's JSON.
async fn subscribe(
    stack: &TestStack,
    app: &TestApp,
    receiver: &MockServer,
    events: Value,
) -> Value {
    let (status, created) = stack
        .tenant(
            &app.api_key,
            Method::POST,
            "/api/webhooks/subscriptions",
            Some(json!({ "webhook_url": format!("{}/hook", receiver.uri()), "events": events })),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    created
}

/// The receiver's requests, once it has at least `count` of them (waits up to 10 s).
async fn received(receiver: &MockServer, count: usize) -> Vec<Request> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let requests = receiver.received_requests().await.unwrap_or_default();
        if requests.len() >= count || Instant::now() > deadline {
            return requests;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What a tenant `GET` of `path` answers once `ready` holds of it (waits up to 10 s: the worker records an
/// attempt after the receiver has answered).
async fn get_when(
    stack: &TestStack,
    app: &TestApp,
    path: &str,
    ready: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, subscription) = stack.tenant(&app.api_key, Method::GET, path, None).await;
        assert_eq!(status, 200, "{subscription}");
        if ready(&subscription) || Instant::now() > deadline {
            return subscription;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// A header of a delivery, as text.
fn header(request: &Request, name: &str) -> String {
    request.headers[name]
        .to_str()
        .expect("ascii header")
        .to_owned()
}

/// Whether one of the delivery's Standard Webhooks signatures verifies with `secret`.
fn standard_verifies(request: &Request, secret: &str) -> bool {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").expect("whsec_ secret"))
        .expect("base64 secret");
    let mut signed = format!(
        "{}.{}.",
        header(request, "webhook-id"),
        header(request, "webhook-timestamp")
    )
    .into_bytes();
    signed.extend_from_slice(&request.body);
    let expected = format!("v1,{}", STANDARD.encode(hmac(&key, &signed)));
    header(request, "webhook-signature")
        .split(' ')
        .any(|s| s == expected)
}

/// Checks both signatures of a delivery the way a receiver would, from the secret alone.
fn assert_signed(request: &Request, secret: &str) {
    let legacy = format!(
        "sha256={}",
        hex::encode(hmac(secret.as_bytes(), &request.body))
    );
    assert_eq!(header(request, "x-webhook-signature"), legacy);
    let timestamp = header(request, "webhook-timestamp");
    let age = chrono::Utc::now().timestamp() - timestamp.parse::<i64>().expect("seconds");
    assert!((0..60).contains(&age), "fresh timestamp");
    assert!(
        standard_verifies(request, secret),
        "a v1 signature verifies"
    );
    // A tampered body no longer verifies.
    let mut tampered = request.clone();
    tampered.body.push(b' ');
    assert!(
        !standard_verifies(&tampered, secret),
        "a tampered body fails"
    );
}

fn body_of(request: &Request) -> Value {
    serde_json::from_slice(&request.body).expect("JSON body")
}
