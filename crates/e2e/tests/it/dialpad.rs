//! The Dialpad integration against a local Dialpad mock: onboarding by API (OAuth with PKCE,
//! webhook, subscriptions), Dialpad's failures, OAuth state rules, token refresh with
//! rotation, and secrets encrypted at rest.

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

/// `GET /auth/dialpad/connect` with the app's key; returns the authorize URL's query.
async fn start_connect(stack: &TestStack, app: &TestApp) -> Vec<(String, String)> {
    let response = no_redirects()
        .get(format!(
            "{}/auth/dialpad/connect?app_id={}",
            stack.api_url, app.app_id
        ))
        .header("x-app-api-key", &app.api_key)
        .send()
        .await
        .expect("api answers");
    authorize_query(&response)
}

/// The query of the Dialpad authorize URL a connect answer redirects to.
fn authorize_query(response: &reqwest::Response) -> Vec<(String, String)> {
    assert_eq!(response.status(), 302, "connect redirects");
    let location = response.headers()["location"].to_str().expect("ascii");
    let url = Url::parse(location).expect("absolute URL");
    assert_eq!(url.path(), "/oauth2/authorize");
    url.query_pairs().into_owned().collect()
}

fn param<'a>(query: &'a [(String, String)], name: &str) -> &'a str {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("{name} is in the query"))
}

async fn callback(stack: &TestStack, query: &str) -> reqwest::Response {
    no_redirects()
        .get(format!("{}/auth/dialpad/callback?{query}", stack.api_url))
        .send()
        .await
        .expect("api answers")
}

/// Mounts Dialpad's token endpoint for the code exchange and its company endpoint.
async fn mount_code_exchange(dialpad: &MockServer, access_token: &str, refresh_token: &str) {
    Mock::given(method("POST"))
        .and(path("/oauth2/token"))
        .and(body_string_contains("grant_type=authorization_code"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": access_token,
            "refresh_token": refresh_token,
            "expires_in": 3600,
            "token_type": "Bearer",
        })))
        .mount(dialpad)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/company"))
        .and(header("authorization", format!("Bearer {access_token}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "5100000000000001", "name": "Acme", "domain": "acme.test"
        })))
        .mount(dialpad)
        .await;
}

/// Connects the app by OAuth end to end; returns the authorize query.
async fn connect_oauth(
    stack: &TestStack,
    dialpad: &MockServer,
    app: &TestApp,
    access_token: &str,
    refresh_token: &str,
) -> Vec<(String, String)> {
    mount_code_exchange(dialpad, access_token, refresh_token).await;
    let authorize = start_connect(stack, app).await;
    let state = param(&authorize, "state");
    let (status, body) =
        json_of(callback(stack, &format!("code=auth-code-1&state={state}")).await).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Dialpad connected: ")
                && m.ends_with(" to company 5100000000000001")),
        "{body}"
    );
    assert_eq!(body["app_id"], app.app_id.to_string());
    assert_eq!(body["dialpad_company_id"], "5100000000000001");
    assert_eq!(body["environment"], "sandbox");
    authorize
}

/// The form fields of a form-encoded request body.
fn form_of(request: &Request) -> Vec<(String, String)> {
    Url::parse(&format!(
        "http://form/?{}",
        String::from_utf8_lossy(&request.body)
    ))
    .expect("form body")
    .query_pairs()
    .into_owned()
    .collect()
}

async fn requests_to(dialpad: &MockServer, http_method: &str, url_path: &str) -> Vec<Request> {
    dialpad
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.method.as_str() == http_method && r.url.path() == url_path)
        .collect()
}

/// Answers `POST /api/v2/webhooks` as Dialpad does, with a new id each time and the secret
/// echoed.
struct CreatedWebhook(AtomicI64);

impl Respond for CreatedWebhook {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let id = self.0.fetch_add(1, Ordering::SeqCst);
        ResponseTemplate::new(200).set_body_json(json!({
            "id": id.to_string(),
            "hook_url": body["hook_url"],
            "signature": { "algo": "HS256", "secret": body["secret"], "type": "jwt" },
        }))
    }
}

fn created_webhook() -> CreatedWebhook {
    CreatedWebhook(AtomicI64::new(5_212_604_609_576_960))
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
    let authorize = connect_oauth(&stack, &dialpad, &app, "at-first-1", "rt-first-1").await;
    assert_eq!(param(&authorize, "response_type"), "code");
    assert_eq!(param(&authorize, "client_id"), CLIENT_ID);
    assert_eq!(param(&authorize, "redirect_uri"), REDIRECT_URI);
    assert_eq!(
        param(&authorize, "scope"),
        "recordings_export message_content_export"
    );
    assert_eq!(param(&authorize, "code_challenge_method"), "S256");
    let exchange = requests_to(&dialpad, "POST", "/oauth2/token").await;
    assert_eq!(exchange.len(), 1);
    let form = form_of(&exchange[0]);
    let verifier = param(&form, "code_verifier");
    assert_eq!(
        URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())),
        param(&authorize, "code_challenge"),
        "the verifier sent at token exchange hashes to the challenge sent at authorize"
    );
    assert!((43..=128).contains(&verifier.len()));
    assert_eq!(param(&form, "code"), "auth-code-1");
    assert_eq!(param(&form, "client_id"), CLIENT_ID);
    assert_eq!(param(&form, "client_secret"), CLIENT_SECRET);
    assert_eq!(param(&form, "redirect_uri"), REDIRECT_URI);

    // 2. Create the webhook: Dialpad gets exactly the request it documents.
    Mock::given(method("POST"))
        .and(path("/api/v2/webhooks"))
        .respond_with(created_webhook())
        .mount(&dialpad)
        .await;
    let (status, created) = admin_post(
        &stack,
        &format!("/internal/webhooks/create?app_id={}", app.app_id),
        None,
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let hook_url = format!("{PUBLIC_INGEST_URL}/webhooks/dialpad/{}", app.app_id);
    assert_eq!(created["success"], true);
    assert_eq!(created["webhook_id"], "5212604609576960");
    assert_eq!(created["hook_url"], hook_url.as_str());
    assert!(created["message"].is_string());
    assert!(
        created["next_step"]
            .as_str()
            .is_some_and(|s| s.contains("/internal/subscriptions"))
    );
    assert!(
        !created.to_string().contains(&app.webhook_secret),
        "no secret in the answer"
    );
    let sent = &requests_to(&dialpad, "POST", "/api/v2/webhooks").await[0];
    assert_eq!(sent.headers["authorization"], "Bearer at-first-1");
    assert_eq!(sent.headers["content-type"], "application/json");
    assert_eq!(sent.headers["accept"], "application/json");
    let sent_body: Value = serde_json::from_slice(&sent.body).expect("JSON body");
    assert_eq!(
        sent_body,
        json!({ "hook_url": hook_url, "secret": app.webhook_secret })
    );

    // 3. Subscriptions: call (every modelled state) and SMS, both on that webhook.
    for (kind, id) in [("call", "6000000000000001"), ("sms", "6000000000000002")] {
        Mock::given(method("POST"))
            .and(path(format!("/api/v2/subscriptions/{kind}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "id": id, "enabled": true,
                "webhook": { "id": "5212604609576960", "hook_url": hook_url,
                             "signature": { "algo": "HS256", "secret": app.webhook_secret, "type": "jwt" } },
            })))
            .mount(&dialpad)
            .await;
    }
    let (status, subscribed) = admin_post(
        &stack,
        &format!("/internal/subscriptions?app_id={}", app.app_id),
        None,
    )
    .await;
    assert_eq!(status, 201, "{subscribed}");
    assert_eq!(subscribed["webhook_id"], "5212604609576960");
    let kinds: Vec<&str> = subscribed["subscriptions"]
        .as_array()
        .expect("list")
        .iter()
        .map(|s| s["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(kinds, ["call", "sms"]);
    let call_body: Value = serde_json::from_slice(
        &requests_to(&dialpad, "POST", "/api/v2/subscriptions/call").await[0].body,
    )
    .expect("JSON");
    assert_eq!(
        call_body,
        json!({
            "endpoint_id": 5_212_604_609_576_960_i64,
            "call_states": domain::call::SUBSCRIBED_CALL_STATES,
            "enabled": true,
        })
    );
    let sms_body: Value = serde_json::from_slice(
        &requests_to(&dialpad, "POST", "/api/v2/subscriptions/sms").await[0].body,
    )
    .expect("JSON");
    assert_eq!(
        sms_body,
        json!({ "endpoint_id": 5_212_604_609_576_960_i64, "direction": "all", "enabled": true,
                "include_internal": false, "status": true })
    );

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
    assert_not_stored(&stored, verifier, "the code verifier");
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

#[tokio::test]
async fn dialpad_failures_become_502_without_leaking_secrets() {
    let (stack, dialpad) = stack_with_dialpad(true).await;
    let app = stack.create_app("Acme").await;
    let create = format!("/internal/webhooks/create?app_id={}", app.app_id);

    for status in [401_u16, 404, 500] {
        dialpad.reset().await;
        Mock::given(method("POST"))
            .and(path("/api/v2/webhooks"))
            .respond_with(ResponseTemplate::new(status).set_body_json(json!({
                "error": { "code": status, "message": format!("bad credential {SERVER_API_KEY}") }
            })))
            .mount(&dialpad)
            .await;
        let (answered, body) = admin_post(&stack, &create, None).await;
        assert_eq!(answered, 502, "Dialpad {status}");
        assert_eq!(body["error"], "dialpad_error");
        let message = body["message"].as_str().expect("message");
        assert!(
            message.contains(&status.to_string()) && message.contains("create the webhook"),
            "{message}"
        );
        assert!(
            message.contains("[redacted]"),
            "Dialpad's text is kept, scrubbed: {message}"
        );
        for secret in [SERVER_API_KEY, app.webhook_secret.as_str()] {
            assert!(!body.to_string().contains(secret));
        }
        let sent = &requests_to(&dialpad, "POST", "/api/v2/webhooks").await[0];
        assert_eq!(
            sent.headers["authorization"],
            format!("Bearer {SERVER_API_KEY}").as_str()
        );
    }

    dialpad.reset().await;
    Mock::given(method("POST"))
        .and(path("/api/v2/webhooks"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "id": "1", "hook_url": "https://x" }))
                // Longer than DIALPAD_TIMEOUT_MS (1 s here).
                .set_delay(Duration::from_secs(3)),
        )
        .mount(&dialpad)
        .await;
    let (answered, body) = admin_post(&stack, &create, None).await;
    assert_eq!(
        (answered, body["error"].as_str()),
        (502, Some("dialpad_unreachable"))
    );
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("did not answer in time")),
        "{body}"
    );

    assert_eq!(
        table_text(&stack, "dialpad_webhooks").await,
        "",
        "nothing is recorded when Dialpad fails"
    );
}

#[tokio::test]
async fn onboarding_endpoints_validate_their_input() {
    let (stack, _dialpad) = stack_with_dialpad(false).await;
    let app = stack.create_app("Acme").await;
    let expect = |(status, body): (u16, Value), want: (u16, &str), what: &str| {
        assert_eq!(
            (status, body["error"].as_str()),
            (want.0, Some(want.1)),
            "{what}: {body}"
        );
        body
    };
    let body = expect(
        admin_post(&stack, "/internal/webhooks/create", None).await,
        (400, "invalid_parameter"),
        "no app_id",
    );
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("app_id"))
    );
    expect(
        admin_post(&stack, "/internal/webhooks/create?app_id=nope", None).await,
        (400, "invalid_parameter"),
        "bad app_id",
    );
    expect(
        admin_post(
            &stack,
            &format!("/internal/webhooks/create?app_id={}", uuid::Uuid::new_v4()),
            None,
        )
        .await,
        (404, "not_found"),
        "unknown app",
    );
    let create = format!("/internal/webhooks/create?app_id={}", app.app_id);
    expect(
        admin_post(&stack, &create, None).await,
        (400, "dialpad_not_connected"),
        "no credential",
    );
    expect(
        admin_post(&stack, &create, Some(json!({ "webhook_url": "ftp://x" }))).await,
        (400, "invalid_request"),
        "bad URL",
    );
    expect(
        admin_post(&stack, &create, Some(json!({ "webhook_secret": "short" }))).await,
        (400, "invalid_request"),
        "short secret",
    );
    expect(
        admin_post(&stack, &create, Some(json!({ "unknown": 1 }))).await,
        (400, "invalid_json"),
        "unknown field",
    );
    let unauthorized = stack
        .http
        .post(format!("{}{create}", stack.api_url))
        .send()
        .await
        .expect("answers");
    assert_eq!(unauthorized.status(), 401);
    expect(
        admin_post(
            &stack,
            &format!("/internal/subscriptions?app_id={}", app.app_id),
            None,
        )
        .await,
        (400, "invalid_request"),
        "no webhook yet",
    );
    expect(
        admin_post(
            &stack,
            &format!("/internal/subscriptions?app_id={}", app.app_id),
            Some(json!({ "call_states": ["ringing", "unhold"] })),
        )
        .await,
        (400, "invalid_request"),
        "unknown call state",
    );
}

#[tokio::test]
async fn oauth_states_are_single_use_and_expire() {
    let (stack, dialpad) = stack_with_dialpad(false).await;
    let app = stack.create_app("Acme").await;
    let other = stack.create_app("Other").await;
    mount_code_exchange(&dialpad, "at-1", "rt-1").await;
    let connect = |auth: Option<(&'static str, String)>| {
        let mut request = no_redirects().get(format!(
            "{}/auth/dialpad/connect?app_id={}",
            stack.api_url, app.app_id
        ));
        if let Some((name, value)) = auth {
            request = request.header(name, value);
        }
        async move { request.send().await.expect("answers").status().as_u16() }
    };
    assert_eq!(connect(None).await, 401, "connect needs credentials");
    assert_eq!(
        connect(Some(("x-app-api-key", other.api_key.clone()))).await,
        404,
        "another app's key cannot connect this app"
    );
    assert_eq!(
        connect(Some(("authorization", format!("Bearer {INTERNAL_SECRET}")))).await,
        302,
        "the admin can"
    );

    let rejected = |response: (u16, Value), reason: &str| {
        assert_eq!(response.0, 400, "{reason}");
        assert_eq!(response.1["error"], "invalid_state", "{reason}");
        assert!(
            response.1["message"]
                .as_str()
                .is_some_and(|m| m.contains(reason)),
            "{}",
            response.1
        );
    };
    rejected(
        json_of(callback(&stack, "code=c&state=never-issued").await).await,
        "unknown",
    );

    // Used once, refused the second time.
    let state = param(&start_connect(&stack, &app).await, "state").to_owned();
    assert_eq!(
        callback(&stack, &format!("code=c&state={state}"))
            .await
            .status(),
        200
    );
    rejected(
        json_of(callback(&stack, &format!("code=c&state={state}")).await).await,
        "already used",
    );

    // Expired after 10 minutes.
    let state = param(&start_connect(&stack, &app).await, "state").to_owned();
    stack.run_sql("UPDATE oauth_states SET expires_at = now() - interval '1 second' WHERE used_at IS NULL",
    )
    .await;
    rejected(
        json_of(callback(&stack, &format!("code=c&state={state}")).await).await,
        "expired",
    );

    // The user says no: the state is spent too.
    let state = param(&start_connect(&stack, &app).await, "state").to_owned();
    let (status, body) =
        json_of(callback(&stack, &format!("error=access_denied&state={state}")).await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("access_denied"))
    );
    rejected(
        json_of(callback(&stack, &format!("code=c&state={state}")).await).await,
        "already used",
    );

    let (status, body) = json_of(callback(&stack, "code=c").await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_parameter"))
    );
    assert_eq!(
        requests_to(&dialpad, "POST", "/oauth2/token").await.len(),
        1,
        "only the one valid state reached Dialpad"
    );
}

#[tokio::test]
async fn a_successful_connection_can_redirect_the_browser() {
    let dialpad = MockServer::start().await;
    let base_url = dialpad.uri();
    let stack = TestStack::spawn_with(|settings| {
        settings.dialpad.dialpad_base_url = Some(base_url);
        settings.dialpad.dialpad_client_id = Some(CLIENT_ID.into());
        settings.dialpad.dialpad_client_secret = Some(CLIENT_SECRET.into());
        settings.dialpad.dialpad_redirect_uri = Some(REDIRECT_URI.into());
        settings.dialpad.oauth_success_redirect_url =
            Some("https://crm.example.test/settings?tab=dialpad".into());
    })
    .await;
    mount_code_exchange(&dialpad, "at-1", "rt-1").await;
    let app = stack.create_app("Acme").await;
    let authorize = start_connect(&stack, &app).await;
    assert!(
        authorize.iter().all(|(k, _)| k != "scope"),
        "no scope when none is configured"
    );
    let response = callback(
        &stack,
        &format!("code=c&state={}", param(&authorize, "state")),
    )
    .await;
    assert_eq!(response.status(), 302);
    assert_eq!(
        response.headers()["location"],
        format!(
            "https://crm.example.test/settings?tab=dialpad&app_id={}&status=connected",
            app.app_id
        )
        .as_str()
    );
}

#[tokio::test]
async fn concurrent_callers_share_one_refresh_and_the_rotated_token_is_kept() {
    let (stack, dialpad) = stack_with_dialpad(false).await;
    let app = stack.create_app("Acme").await;
    connect_oauth(&stack, &dialpad, &app, "at-old", "rt-old").await;
    // Less than 5 minutes left: the next call refreshes first.
    stack
        .run_sql("UPDATE dialpad_connections SET token_expires_at = now() + interval '1 minute'")
        .await;

    // Dialpad rotates: rt-old works once, slowly, then is invalid.
    Mock::given(method("POST"))
        .and(path("/oauth2/token"))
        .and(body_string_contains("grant_type=refresh_token"))
        .and(body_string_contains("refresh_token=rt-old"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "access_token": "at-new", "refresh_token": "rt-new", "expires_in": 3600 }))
                .set_delay(Duration::from_millis(300)),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&dialpad)
        .await;
    Mock::given(method("POST"))
        .and(path("/oauth2/token"))
        .and(body_string_contains("grant_type=refresh_token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({ "error": "invalid_grant" })))
        .with_priority(2)
        .mount(&dialpad)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v2/webhooks"))
        .and(header("authorization", "Bearer at-new"))
        .respond_with(created_webhook())
        .mount(&dialpad)
        .await;

    let create_path = format!("/internal/webhooks/create?app_id={}", app.app_id);
    let create = |n: u32| {
        admin_post(
            &stack,
            &create_path,
            Some(json!({ "webhook_url": format!("https://hooks.example.test/{n}") })),
        )
    };
    let (first, second) = tokio::join!(create(1), create(2));
    assert_eq!(first.0, 201, "{}", first.1);
    assert_eq!(second.0, 201, "{}", second.1);
    let refreshes: Vec<_> = requests_to(&dialpad, "POST", "/oauth2/token")
        .await
        .into_iter()
        .filter(|r| param(&form_of(r), "grant_type") == "refresh_token")
        .collect();
    assert_eq!(refreshes.len(), 1, "one refresh for both callers");
    assert_eq!(
        param(&form_of(&refreshes[0]), "client_secret"),
        CLIENT_SECRET
    );

    // The rotated refresh token is what we hold now (sealed).
    let mut conn = stack.db.connect().await;
    let connection = db::dialpad::Connection::find(&mut conn, app.app_id)
        .await
        .expect("query")
        .expect("connected");
    let keyring = e2e::keyring();
    assert_eq!(
        connection
            .access_token(&keyring)
            .expect("opens")
            .expose_secret(),
        "at-new"
    );
    assert_eq!(
        connection
            .refresh_token(&keyring)
            .expect("opens")
            .expect("some")
            .expose_secret(),
        "rt-new"
    );
    assert!(
        connection.token_expires_at.expect("set")
            > chrono::Utc::now() + chrono::TimeDelta::minutes(50)
    );
    assert_not_stored(
        &table_text(&stack, "dialpad_connections").await,
        "rt-new",
        "the new refresh token",
    );

    // A refresh Dialpad refuses marks the connection, visible on the app.
    stack
        .run_sql("UPDATE dialpad_connections SET token_expires_at = now()")
        .await;
    let (status, body) = create(3).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("dialpad_reauth_required"))
    );
    let (_, shown) = admin_get(&stack, &format!("/internal/apps/{}", app.app_id)).await;
    let connection = &shown["dialpad"]["connection"];
    assert_eq!(connection["status"], "reauth_required");
    let reason = connection["last_error"].as_str().expect("reason");
    assert!(
        reason.contains("400") && !reason.contains("rt-new"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_given_webhook_secret_replaces_the_apps_secret_at_once() {
    let (stack, dialpad) = stack_with_dialpad(true).await;
    let app = stack.create_app("Acme").await;
    // Ingest has cached the generated secret.
    assert_eq!(
        stack
            .post_event(&app, &e2e::fixture(OUTBOUND[0]))
            .await
            .status(),
        200
    );
    Mock::given(method("POST"))
        .and(path("/api/v2/webhooks"))
        .respond_with(created_webhook())
        .mount(&dialpad)
        .await;
    let new_secret = "a-replacement-secret-0123456789abcdef";
    let (status, body) = admin_post(
        &stack,
        &format!("/internal/webhooks/create?app_id={}", app.app_id),
        Some(json!({ "webhook_secret": new_secret })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let sent: Value =
        serde_json::from_slice(&requests_to(&dialpad, "POST", "/api/v2/webhooks").await[0].body)
            .expect("JSON");
    assert_eq!(sent["secret"], new_secret);
    let rotated = TestApp {
        webhook_secret: new_secret.into(),
        ..app.clone()
    };
    assert_eq!(
        stack
            .post_event(&rotated, &e2e::fixture(OUTBOUND[1]))
            .await
            .status(),
        200,
        "the new secret works at once, despite the cache"
    );
    assert_eq!(
        stack
            .post_event(&app, &e2e::fixture(OUTBOUND[2]))
            .await
            .status(),
        401,
        "the replaced secret (never registered at Dialpad) no longer does"
    );
}

#[tokio::test]
async fn an_app_connects_with_its_own_api_key() {
    let (stack, dialpad) = stack_with_dialpad(true).await;
    let app = stack.create_app("Acme").await;
    let own_key = "app-own-dialpad-key-9f9f";
    Mock::given(method("GET"))
        .and(path("/api/v2/company"))
        .and(header("authorization", format!("Bearer {own_key}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "id": "5100000000000009" })))
        .mount(&dialpad)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/company"))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(json!({ "error": { "code": 401, "message": "Unauthorized" } })),
        )
        .mount(&dialpad)
        .await;
    let connect = format!("/internal/connections?app_id={}", app.app_id);
    let (status, body) =
        admin_post(&stack, &connect, Some(json!({ "api_key": "wrong-key" }))).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    assert!(!body.to_string().contains("wrong-key"));
    let (status, body) = admin_post(&stack, &connect, Some(json!({ "api_key": own_key }))).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["auth_type"], "api_key");
    assert_eq!(body["dialpad_company_id"], "5100000000000009");

    // The app's own key is used, not the server's.
    Mock::given(method("POST"))
        .and(path("/api/v2/webhooks"))
        .and(header("authorization", format!("Bearer {own_key}")))
        .respond_with(created_webhook())
        .mount(&dialpad)
        .await;
    let (status, body) = admin_post(
        &stack,
        &format!("/internal/webhooks/create?app_id={}", app.app_id),
        None,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_not_stored(
        &table_text(&stack, "dialpad_connections").await,
        own_key,
        "the app's API key",
    );
}

#[tokio::test]
async fn plaintext_secrets_are_sealed_at_start_and_keys_rotate() {
    let stack = TestStack::spawn().await;
    let legacy_secret = "legacy-plaintext-secret-0123456789";
    let app_id = uuid::Uuid::new_v4();
    stack.run_sql(&format!(
            "INSERT INTO apps (id, name, legacy_webhook_secret) VALUES ('{app_id}', 'legacy', '{legacy_secret}')"
        ),
    )
    .await;
    // An api starting seals it.
    let _api = api::build(e2e::api_settings(stack.db.url()))
        .await
        .expect("api starts");
    let stored = table_text(&stack, "apps").await;
    assert_not_stored(&stored, legacy_secret, "the legacy secret");
    let accepted = stack
        .post_raw(
            Some(&app_id.to_string()),
            e2e::sign(&e2e::fixture(OUTBOUND[0]), legacy_secret),
        )
        .await;
    assert_eq!(accepted.status(), 200);

    // Rotation: a new key, the old one kept as previous, still opens what the old one sealed.
    let mut settings = e2e::ingest_settings(stack.db.url());
    settings.encryption.encryption_key =
        Some("bmV3LWVuY3J5cHRpb24ta2V5LTMyLWJ5dGVzLTAwMDA=".into());
    settings.encryption.encryption_previous_keys = Some(e2e::ENCRYPTION_KEY.into());
    let rotated = ingest::build(settings).await.expect("ingest starts");
    let url = format!(
        "http://127.0.0.1:{}/webhooks/dialpad/{app_id}",
        rotated.port()
    );
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(rotated.run_until_stopped(stop.clone().cancelled_owned()));
    let response = stack
        .http
        .post(url)
        .body(e2e::sign(&e2e::fixture(OUTBOUND[1]), legacy_secret))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 200);
    stop.cancel();
}

/// `reseal` (`api reseal`, `ingest reseal`) rewrites every secret under the current key, so the
/// former key can be removed: afterwards, with the new key alone, the app's webhooks verify
/// and its own Dialpad key is still used. A value no key opens is skipped and counted without
/// stopping the others, and a second run finds nothing left to do.
#[tokio::test]
async fn reseal_lets_the_former_key_go_and_every_secret_still_opens() {
    const NEW_KEY: &str = "bmV3LWVuY3J5cHRpb24ta2V5LTMyLWJ5dGVzLTAwMDA=";
    let (stack, dialpad) = stack_with_dialpad(false).await;
    let app = stack.create_app("Acme").await;
    let own_key = "app-own-dialpad-key-9f9f";
    Mock::given(method("GET"))
        .and(path("/api/v2/company"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "id": "5100000000000009" })))
        .mount(&dialpad)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v2/webhooks"))
        .and(header("authorization", format!("Bearer {own_key}")))
        .respond_with(created_webhook())
        .mount(&dialpad)
        .await;
    let connect = format!("/internal/connections?app_id={}", app.app_id);
    assert_eq!(
        admin_post(&stack, &connect, Some(json!({ "api_key": own_key })))
            .await
            .0,
        201
    );
    let create = format!("/internal/webhooks/create?app_id={}", app.app_id);
    assert_eq!(admin_post(&stack, &create, None).await.0, 201);
    // A second app whose sealed secret was damaged: no key opens it.
    let broken = stack.create_app("Broken").await;
    stack
        .run_sql(&format!(
            "UPDATE apps SET webhook_secret_ciphertext = (SELECT webhook_secret_ciphertext \
             FROM apps WHERE id = '{}') WHERE id = '{}'",
            app.app_id, broken.app_id
        ))
        .await;

    let database = bootstrap::settings::DatabaseSettings::for_url(stack.db.url());
    let mut encryption = bootstrap::settings::EncryptionSettings::with_key(NEW_KEY);
    encryption.encryption_previous_keys = Some(e2e::ENCRYPTION_KEY.into());
    let first = bootstrap::cli::reseal(&database, &encryption)
        .await
        .expect("reseals");
    // Acme's secret, its connection's key and its webhook's secret; Broken's is counted.
    assert_eq!((first.resealed, first.unreadable), (3, 1));
    assert!(
        bootstrap::cli::reseal_command(&database, &encryption)
            .await
            .is_err(),
        "the command fails while a value cannot be opened"
    );
    let second = bootstrap::cli::reseal(&database, &encryption)
        .await
        .expect("reseals");
    assert_eq!((second.resealed, second.unreadable), (0, 1), "nothing left");

    // The former key removed: every secret still opens.
    let mut settings = e2e::ingest_settings(stack.db.url());
    settings.encryption = bootstrap::settings::EncryptionSettings::with_key(NEW_KEY);
    let port = stack.spawn_ingest(settings).await;
    let url = format!("http://127.0.0.1:{port}/webhooks/dialpad/{}", app.app_id);
    let response = stack
        .http
        .post(url)
        .body(e2e::sign(&e2e::fixture(OUTBOUND[0]), &app.webhook_secret))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 200, "the app's secret opens");
    let mut api_settings = e2e::api_settings(stack.db.url());
    api_settings.encryption = bootstrap::settings::EncryptionSettings::with_key(NEW_KEY);
    api_settings.dialpad.dialpad_base_url = Some(dialpad.uri());
    api_settings.dialpad.public_ingest_url = Some(PUBLIC_INGEST_URL.into());
    let api = api::build(api_settings).await.expect("api starts");
    let api_url = format!("http://127.0.0.1:{}", api.port());
    tokio::spawn(api.run_until_stopped(std::future::pending()));
    let response = stack
        .http
        .post(format!("{api_url}{create}"))
        .bearer_auth(INTERNAL_SECRET)
        .send()
        .await
        .expect("answers");
    assert_eq!(
        response.status(),
        201,
        "the app's Dialpad key opens: {}",
        response.text().await.unwrap_or_default()
    );
}

/// A one-time connect link lets a person connect an app from a browser, without its key: it
/// works once (a second opening is refused), and the callback names the app and the company.
/// A later authorisation by another Dialpad company is refused (the connection is unchanged)
/// unless the operator reconnects with `replace=true`.
#[tokio::test]
async fn a_connect_link_works_once_and_binds_the_app_to_its_company() {
    let (stack, dialpad) = stack_with_dialpad(false).await;
    let app = stack.create_app("Harbor Dental").await;
    mount_code_exchange(&dialpad, "access-token-1", "refresh-token-1").await;

    let link_path = format!("/internal/apps/{}/connect-link", app.app_id);
    let (status, created) = json_of(
        stack
            .http
            .post(format!("{}{link_path}", stack.api_url))
            .header("x-app-api-key", &app.api_key)
            .send()
            .await
            .expect("answers"),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let link = Url::parse(created["url"].as_str().expect("url")).expect("absolute URL");
    assert_eq!(link.path(), "/auth/dialpad/connect");
    let open = |link: &Url| {
        let url = format!(
            "{}{}?{}",
            stack.api_url,
            link.path(),
            link.query().unwrap_or("")
        );
        async move { no_redirects().get(url).send().await.expect("answers") }
    };
    // Opened in a browser: no key, no bearer.
    let authorize = authorize_query(&open(&link).await);
    let (status, again) = json_of(open(&link).await).await;
    assert_eq!(
        (status, again["error"].as_str()),
        (400, Some("invalid_parameter"))
    );
    assert!(
        again["message"]
            .as_str()
            .is_some_and(|m| m.contains("already used"))
    );

    let state = param(&authorize, "state");
    let (status, connected) =
        json_of(callback(&stack, &format!("code=auth-code-1&state={state}")).await).await;
    assert_eq!(status, 200, "{connected}");
    assert_eq!(connected["app_name"], "Harbor Dental");
    assert_eq!(connected["dialpad_company_id"], "5100000000000001");

    // Another company authorises a new connection: refused, the connection unchanged.
    Mock::given(method("POST"))
        .and(path("/oauth2/token"))
        .and(body_string_contains("code=auth-code-2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "access-token-2", "refresh_token": "refresh-token-2",
            "expires_in": 3600, "token_type": "Bearer",
        })))
        .with_priority(1)
        .mount(&dialpad)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/company"))
        .and(header("authorization", "Bearer access-token-2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "id": "5200000000000002" })))
        .mount(&dialpad)
        .await;
    let authorize = start_connect(&stack, &app).await;
    let state = param(&authorize, "state");
    let (status, refused) =
        json_of(callback(&stack, &format!("code=auth-code-2&state={state}")).await).await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (409, Some("conflict")),
        "{refused}"
    );
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains("replace=true"))
    );
    let company = |stack: &TestStack| {
        let url = format!("{}/internal/apps/{}", stack.api_url, app.app_id);
        let request = stack.http.get(url).bearer_auth(INTERNAL_SECRET);
        async move {
            let (_, body) = json_of(request.send().await.expect("answers")).await;
            body["dialpad"]["connection"]["dialpad_company_id"].clone()
        }
    };
    assert_eq!(company(&stack).await, "5100000000000001");

    // The operator confirms with replace=true (on a new link): the app switches company.
    let (_, created) = json_of(
        stack
            .http
            .post(format!("{}{link_path}?replace=true", stack.api_url))
            .bearer_auth(INTERNAL_SECRET)
            .send()
            .await
            .expect("answers"),
    )
    .await;
    assert_eq!(created["replace"], true);
    let link = Url::parse(created["url"].as_str().expect("url")).expect("absolute URL");
    let authorize = authorize_query(&open(&link).await);
    let state = param(&authorize, "state");
    let (status, switched) =
        json_of(callback(&stack, &format!("code=auth-code-2&state={state}")).await).await;
    assert_eq!(status, 200, "{switched}");
    assert_eq!(switched["dialpad_company_id"], "5200000000000002");
    assert_eq!(company(&stack).await, "5200000000000002");
}
