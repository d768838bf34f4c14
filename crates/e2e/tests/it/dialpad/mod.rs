//! The Dialpad integration against a local Dialpad mock: onboarding by API (OAuth with PKCE,
//! webhook, subscriptions), Dialpad's failures, OAuth state rules, token refresh with
//! rotation, and secrets encrypted at rest.

mod connect;
mod failures;
mod secrets;
mod subscriptions;
mod webhooks;

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use diesel_async::RunQueryDsl;
use e2e::{INTERNAL_SECRET, TestApp, TestStack};
use reqwest::Url;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use wiremock::matchers::{body_string_contains, header, method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::OUTBOUND;
use connect::{connect_oauth, form_of, param, requests_to};
use webhooks::created_webhook;

const CLIENT_ID: &str = "cti-test-client";
const CLIENT_SECRET: &str = "cti-test-client-secret-4e1d";
const REDIRECT_URI: &str = "https://api.example.test/auth/dialpad/callback";
const PUBLIC_INGEST_URL: &str = "https://ingest.example.test";
const SERVER_API_KEY: &str = "server-wide-dialpad-key-77aa";

/// A stack whose api talks to a fresh Dialpad mock, with an OAuth app configured.
async fn stack_with_dialpad(server_api_key: bool) -> (TestStack, MockServer) {
    let dialpad = MockServer::start().await;
    let base_url = dialpad.uri();
    let stack = TestStack::spawn_with(|settings| {
        let dialpad = &mut settings.dialpad;
        dialpad.dialpad_base_url = Some(base_url);
        dialpad.dialpad_client_id = Some(CLIENT_ID.into());
        dialpad.dialpad_client_secret = Some(CLIENT_SECRET.into());
        dialpad.dialpad_redirect_uri = Some(REDIRECT_URI.into());
        dialpad.dialpad_scopes = "recordings_export message_content_export".into();
        dialpad.public_ingest_url = Some(format!("{PUBLIC_INGEST_URL}/"));
        dialpad.dialpad_timeout_ms = 1_000;
        if server_api_key {
            dialpad.dialpad_api_key = Some(SERVER_API_KEY.into());
        }
    })
    .await;
    (stack, dialpad)
}

/// A client that does not follow redirects, to read the 302s.
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn admin_post(stack: &TestStack, path: &str, body: Option<Value>) -> (u16, Value) {
    stack.admin(reqwest::Method::POST, path, body).await
}

async fn admin_get(stack: &TestStack, path: &str) -> (u16, Value) {
    stack.admin(reqwest::Method::GET, path, None).await
}

async fn admin_delete(stack: &TestStack, path: &str) -> (u16, Value) {
    stack.admin(reqwest::Method::DELETE, path, None).await
}

/// Every row of a table as JSON text (bytea shows as `\x` hex).
async fn table_text(stack: &TestStack, table: &str) -> String {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        row: String,
    }
    let mut conn = stack.db.connect().await;
    let rows: Vec<Row> =
        diesel::sql_query(format!("SELECT row_to_json(t)::text AS row FROM {table} t"))
            .load(&mut conn)
            .await
            .expect("table is readable");
    rows.into_iter()
        .map(|r| r.row)
        .collect::<Vec<_>>()
        .join("\n")
}

fn assert_not_stored(stored: &str, secret: &str, what: &str) {
    assert!(!stored.contains(secret), "{what} is stored in clear");
    assert!(
        !stored.contains(&hex::encode(secret.as_bytes())),
        "{what} is stored as raw bytes"
    );
}

#[tokio::test]
async fn an_app_is_onboarded_entirely_by_api() {
    let (stack, dialpad) = stack_with_dialpad(false).await;
    let app = stack.create_app("Acme").await;
    let other = stack.create_app("Other").await;

    // 1. Connect by OAuth with PKCE.
    let (authorize, verifier) = connect::connect_with_pkce(&stack, &dialpad, &app).await;

    // 2. Create the webhook.
    let hook_url = webhooks::create_webhook(&stack, &dialpad, &app).await;

    // 3. Subscriptions: call (every modelled state) and SMS, both on that webhook.
    subscriptions::subscribe_calls_and_sms(&stack, &dialpad, &app, &hook_url).await;

    // 4. Dialpad's events, signed with the app's secret, are accepted; another app's are not.
    let accepted = stack.post_event(&app, &e2e::fixture(OUTBOUND[0])).await;
    assert_eq!(accepted.status(), 200);
    let forged = stack
        .post_raw(
            Some(&app.app_id.to_string()),
            e2e::sign(&e2e::fixture(OUTBOUND[1]), &other.webhook_secret),
        )
        .await;
    assert_eq!(forged.status(), 401);

    // 5. The app shows its connection, webhook and subscriptions, and no token.
    let (status, shown) = admin_get(&stack, &format!("/internal/apps/{}", app.app_id)).await;
    assert_eq!(status, 200);
    let connection = &shown["dialpad"]["connection"];
    assert_eq!(connection["auth_type"], "oauth");
    assert_eq!(connection["status"], "active");
    assert_eq!(connection["environment"], "sandbox");
    assert_eq!(connection["dialpad_company_id"], "5100000000000001");
    assert_eq!(
        shown["dialpad"]["webhooks"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(
        shown["dialpad"]["subscriptions"].as_array().map(Vec::len),
        Some(2)
    );
    let shown = shown.to_string();
    for secret in ["at-first-1", "rt-first-1", app.webhook_secret.as_str()] {
        assert!(!shown.contains(secret));
    }

    // 6. Secrets are ciphertext at rest.
    let stored = [
        table_text(&stack, "apps").await,
        table_text(&stack, "dialpad_connections").await,
        table_text(&stack, "dialpad_webhooks").await,
        table_text(&stack, "oauth_states").await,
    ]
    .join("\n");
    assert!(stored.contains("\\\\x"), "sealed values are there");
    assert_not_stored(&stored, &app.webhook_secret, "the webhook secret");
    assert_not_stored(&stored, "at-first-1", "the access token");
    assert_not_stored(&stored, "rt-first-1", "the refresh token");
    assert_not_stored(&stored, &verifier, "the code verifier");
    assert_not_stored(&stored, param(&authorize, "state"), "the OAuth state");

    // 7. Teardown: a webhook in use cannot be deleted; subscriptions first, then the webhook.
    let (status, body) = admin_delete(
        &stack,
        &format!("/internal/webhooks/5212604609576960?app_id={}", app.app_id),
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (409, Some("conflict")));
    Mock::given(method("DELETE"))
        .and(path_regex(
            r"^/api/v2/(subscriptions/(call|sms)|webhooks)/\d+$",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .mount(&dialpad)
        .await;
    for id in ["6000000000000001", "6000000000000002"] {
        let (status, _) = admin_delete(
            &stack,
            &format!("/internal/subscriptions/{id}?app_id={}", app.app_id),
        )
        .await;
        assert_eq!(status, 200);
    }
    let (status, _) = admin_delete(
        &stack,
        &format!("/internal/webhooks/5212604609576960?app_id={}", app.app_id),
    )
    .await;
    assert_eq!(status, 200);
    let deleted: Vec<String> = dialpad
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.method.as_str() == "DELETE")
        .map(|r| r.url.path().to_owned())
        .collect();
    assert_eq!(
        deleted,
        [
            "/api/v2/subscriptions/call/6000000000000001",
            "/api/v2/subscriptions/sms/6000000000000002",
            "/api/v2/webhooks/5212604609576960",
        ]
    );
    let query = format!("?app_id={}", app.app_id);
    assert_eq!(
        admin_get(&stack, &format!("/internal/webhooks{query}"))
            .await
            .1["webhooks"],
        json!([])
    );
    assert_eq!(
        admin_get(&stack, &format!("/internal/subscriptions{query}"))
            .await
            .1["subscriptions"],
        json!([])
    );
    // Dialpad may still retry events of the deleted webhook: its secret still verifies.
    assert_eq!(
        stack
            .post_event(&app, &e2e::fixture(OUTBOUND[2]))
            .await
            .status(),
        200
    );
}
