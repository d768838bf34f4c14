//! The api: tenant isolation, authentication, admin endpoint validation, list parameters.

use e2e::{INTERNAL_SECRET, TestStack};
use serde_json::{Value, json};

use crate::OUTBOUND;

#[tokio::test]
async fn a_tenant_never_sees_another_tenants_calls() {
    let stack = TestStack::spawn().await;
    let a = stack.create_app("A").await;
    let b = stack.create_app("B").await;
    stack.post_fixtures(&a, &OUTBOUND).await;
    // B's secret cannot write into A's route.
    let forged = stack
        .post_raw(
            Some(&a.app_id.to_string()),
            e2e::sign(&e2e::fixture(OUTBOUND[0]), &b.webhook_secret),
        )
        .await;
    assert_eq!(forged.status(), 401);
    stack.run_worker().await;

    let (_, seen_by_a) = stack.get_calls(&a.api_key, "").await;
    assert_eq!(seen_by_a["total"], 1);
    let (status, seen_by_b) = stack.get_calls(&b.api_key, "").await;
    assert_eq!(status, 200);
    assert_eq!(seen_by_b["total"], 0);
    assert_eq!(seen_by_b["calls"], json!([]));
}

#[tokio::test]
async fn api_keys_are_checked() {
    let stack = TestStack::spawn().await;
    let app = stack.create_app("keys").await;
    let key_id = app.api_key.split('_').nth(1).expect("key id");
    let wrong_secret = format!("raw_{key_id}_WrongSecretWrongSecretWrongSecret1234");
    let url = format!("{}/api/calls", stack.api_url);

    let missing = stack.http.get(&url).send().await.expect("answers");
    assert_eq!(missing.status(), 401);
    let body: Value = missing.json().await.expect("JSON");
    assert_eq!(body["error"], "missing_api_key");

    for bad in ["nonsense", "raw_unknown_key", wrong_secret.as_str()] {
        let (status, body) = stack.get_calls(bad, "").await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_api_key")),
            "{bad}"
        );
        assert!(!body.to_string().contains(bad), "the key is not echoed");
    }
    // The right key works, twice (the second time from the verified-key cache).
    for _ in 0..2 {
        assert_eq!(stack.get_calls(&app.api_key, "").await.0, 200);
    }
}

#[tokio::test]
async fn admin_endpoints_need_the_bearer_secret_and_valid_bodies() {
    let stack = TestStack::spawn().await;
    let url = format!("{}/internal/apps", stack.api_url);
    let post = |auth: Option<&'static str>, body: String| {
        let mut request = stack
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(body);
        if let Some(secret) = auth {
            request = request.bearer_auth(secret);
        }
        async move {
            let response = request.send().await.expect("answers");
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.expect("JSON"))
        }
    };
    let valid = json!({ "name": "x" }).to_string();
    assert_eq!(post(None, valid.clone()).await.1["error"], "unauthorized");
    assert_eq!(post(Some("wrong"), valid.clone()).await.0, 401);

    let (status, body) = post(Some(INTERNAL_SECRET), json!({ "name": "  " }).to_string()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("name"))
    );
    let (status, body) = post(
        Some(INTERNAL_SECRET),
        json!({ "name": "x", "webhook_secret": "short" }).to_string(),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("webhook_secret"))
    );
    let (status, body) = post(Some(INTERNAL_SECRET), "{not json".into()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_json"))
    );

    // A given webhook secret is used as the app's inbound secret.
    let secret = "a-chosen-webhook-secret-0123456789";
    let (status, body) = post(
        Some(INTERNAL_SECRET),
        json!({ "name": "Acme", "webhook_secret": secret }).to_string(),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(body["name"], "Acme");
    assert_eq!(body["webhook_secret"], secret);
    let app_id = body["app_id"].as_str().expect("app_id");
    assert_eq!(body["webhook_path"], format!("/webhooks/dialpad/{app_id}"));
    assert!(
        body["api_key"]
            .as_str()
            .is_some_and(|k| k.starts_with("raw_"))
    );
    let accepted = stack
        .post_raw(Some(app_id), e2e::sign(&e2e::fixture(OUTBOUND[0]), secret))
        .await;
    assert_eq!(accepted.status(), 200);

    let unknown = stack
        .http
        .get(format!("{}/nope", stack.api_url))
        .send()
        .await
        .expect("answers");
    assert_eq!(unknown.status(), 404);
    assert_eq!(
        unknown.json::<Value>().await.expect("JSON")["error"],
        "not_found"
    );
}

#[tokio::test]
async fn list_parameters_are_validated_and_page() {
    let stack = TestStack::spawn().await;
    let app = stack.create_app("paging").await;
    stack
        .post_fixtures(
            &app,
            &[
                OUTBOUND[2],
                "call_inbound_vm_04_hangup.json",
                "call_edge_01_null_contact.json",
            ],
        )
        .await;
    stack.run_worker().await;

    for (query, parameter) in [
        ("?limit=0", "limit"),
        ("?limit=201", "limit"),
        ("?limit=abc", "limit"),
        ("?offset=-1", "offset"),
    ] {
        let (status, body) = stack.get_calls(&app.api_key, query).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_parameter")),
            "{query}"
        );
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(parameter)),
            "{query}: {body}"
        );
    }

    let mut seen = Vec::new();
    for offset in 0..3 {
        let (_, page) = stack
            .get_calls(&app.api_key, &format!("?limit=1&offset={offset}"))
            .await;
        assert_eq!(
            (page["total"].as_i64(), page["limit"].as_i64()),
            (Some(3), Some(1))
        );
        seen.push(
            page["calls"][0]["started_at"]
                .as_str()
                .expect("started_at")
                .to_owned(),
        );
    }
    let mut newest_first = seen.clone();
    newest_first.sort_by(|a, b| b.cmp(a));
    assert_eq!(seen, newest_first);
    let (_, past_the_end) = stack.get_calls(&app.api_key, "?offset=3").await;
    assert_eq!(past_the_end["calls"], json!([]));

    // The null-contact edge call: no contact, no crash, no placeholder.
    let (_, all) = stack.get_calls(&app.api_key, "").await;
    let edge = all["calls"]
        .as_array()
        .expect("calls")
        .iter()
        .find(|c| c["call_id"] == "8693962402512896")
        .expect("edge call");
    assert_eq!(edge["contact"], Value::Null);
    assert_eq!(edge["status"], "missed");
}

#[tokio::test]
async fn clients_and_keys_over_their_limit_get_429_with_retry_after() {
    let stack = TestStack::spawn_with(|settings| {
        settings.rate_limit_per_ip_per_min = 8;
        settings.rate_limit_per_key_per_min = 3;
        settings.rate_limit_admin_per_min = 4;
    })
    .await;
    // Two apps created through /internal: 2 of the admin budget of 4.
    let a = stack.create_app("A").await;
    let b = stack.create_app("B").await;
    let get = |key: &str| {
        let request = stack
            .http
            .get(format!("{}/api/calls", stack.api_url))
            .header("x-app-api-key", key);
        async move { request.send().await.expect("answers") }
    };
    // Per key: the fourth request with A's key is refused; B's key still works.
    for _ in 0..3 {
        assert_eq!(get(&a.api_key).await.status(), 200);
    }
    let limited = get(&a.api_key).await;
    assert_eq!(limited.status(), 429);
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: Value = limited.json().await.expect("JSON");
    assert_eq!(body["error"], "rate_limited");
    assert_eq!(get(&b.api_key).await.status(), 200);
    // Per address: 8 tenant requests a minute in all, 5 made above (the address is counted
    // before the key). Keyless requests (401) count too; the ninth is refused.
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let request = stack.http.get(format!("{}/api/calls", stack.api_url));
        statuses.push(request.send().await.expect("answers").status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 429]);
    // The admin routes have their own, stricter budget: 2 left of 4.
    let admin = |n: u32| {
        let request = stack
            .http
            .post(format!("{}/internal/apps", stack.api_url))
            .bearer_auth(INTERNAL_SECRET)
            .json(&json!({ "name": format!("app {n}") }));
        async move { request.send().await.expect("answers").status().as_u16() }
    };
    assert_eq!(
        [admin(1).await, admin(2).await, admin(3).await],
        [201, 201, 429]
    );
    // Health checks are never limited.
    let health = stack
        .http
        .get(format!("{}/healthz", stack.api_url))
        .send()
        .await
        .expect("answers");
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn cors_allows_only_the_configured_origins() {
    let stack = TestStack::spawn_with(|settings| {
        settings.cors_allowed_origins =
            "https://crm.example.test, https://desk.example.test".into();
    })
    .await;
    let app = stack.create_app("A").await;
    let preflight = |origin: &'static str| {
        let request = stack
            .http
            .request(
                reqwest::Method::OPTIONS,
                format!("{}/api/calls", stack.api_url),
            )
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "x-app-api-key");
        async move { request.send().await.expect("answers") }
    };
    let allowed = preflight("https://crm.example.test").await;
    assert!(allowed.status().is_success(), "{}", allowed.status());
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://crm.example.test"
    );
    let headers = allowed.headers()["access-control-allow-headers"]
        .to_str()
        .expect("ascii")
        .to_ascii_lowercase();
    assert!(headers.contains("x-app-api-key"), "{headers}");
    let refused = preflight("https://evil.example.test").await;
    assert!(
        !refused
            .headers()
            .contains_key("access-control-allow-origin")
    );

    let response = stack
        .http
        .get(format!("{}/api/calls", stack.api_url))
        .header("origin", "https://desk.example.test")
        .header("x-app-api-key", &app.api_key)
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://desk.example.test"
    );
    // Scripts may read when to retry and whether an answer came from the response cache.
    let exposed = response.headers()["access-control-expose-headers"]
        .to_str()
        .expect("ASCII")
        .to_ascii_lowercase();
    assert!(
        exposed.contains("retry-after") && exposed.contains("x-cache"),
        "{exposed}"
    );
}
