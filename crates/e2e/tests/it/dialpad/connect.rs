//! Onboarding step 1, connecting an app to Dialpad: OAuth with PKCE, its state rules, the browser
//! redirect, an app's own API key, one-time connect links.

use super::*;

/// `GET /auth/dialpad/connect` with the app's key; returns the authorize URL's query.
pub(super) async fn start_connect(stack: &TestStack, app: &TestApp) -> Vec<(String, String)> {
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
pub(super) fn authorize_query(response: &reqwest::Response) -> Vec<(String, String)> {
    assert_eq!(response.status(), 302, "connect redirects");
    let location = response.headers()["location"].to_str().expect("ascii");
    let url = Url::parse(location).expect("absolute URL");
    assert_eq!(url.path(), "/oauth2/authorize");
    url.query_pairs().into_owned().collect()
}

pub(super) fn param<'a>(query: &'a [(String, String)], name: &str) -> &'a str {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("{name} is in the query"))
}

pub(super) async fn callback(stack: &TestStack, query: &str) -> reqwest::Response {
    no_redirects()
        .get(format!("{}/auth/dialpad/callback?{query}", stack.api_url))
        .send()
        .await
        .expect("api answers")
}

/// Mounts Dialpad's token endpoint for the code exchange and its company endpoint.
pub(super) async fn mount_code_exchange(
    dialpad: &MockServer,
    access_token: &str,
    refresh_token: &str,
) {
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
pub(super) async fn connect_oauth(
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
pub(super) fn form_of(request: &Request) -> Vec<(String, String)> {
    Url::parse(&format!(
        "http://form/?{}",
        String::from_utf8_lossy(&request.body)
    ))
    .expect("form body")
    .query_pairs()
    .into_owned()
    .collect()
}

pub(super) async fn requests_to(
    dialpad: &MockServer,
    http_method: &str,
    url_path: &str,
) -> Vec<Request> {
    dialpad
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.method.as_str() == http_method && r.url.path() == url_path)
        .collect()
}

/// Onboarding step 1: connects the app by OAuth with PKCE and checks what Dialpad was sent;
/// returns the authorize query and the code verifier.
pub(super) async fn connect_with_pkce(
    stack: &TestStack,
    dialpad: &MockServer,
    app: &TestApp,
) -> (Vec<(String, String)>, String) {
    let authorize = connect_oauth(stack, dialpad, app, "at-first-1", "rt-first-1").await;
    assert_eq!(param(&authorize, "response_type"), "code");
    assert_eq!(param(&authorize, "client_id"), CLIENT_ID);
    assert_eq!(param(&authorize, "redirect_uri"), REDIRECT_URI);
    assert_eq!(
        param(&authorize, "scope"),
        "recordings_export message_content_export"
    );
    assert_eq!(param(&authorize, "code_challenge_method"), "S256");
    let exchange = requests_to(dialpad, "POST", "/oauth2/token").await;
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
    (authorize, verifier.to_owned())
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
