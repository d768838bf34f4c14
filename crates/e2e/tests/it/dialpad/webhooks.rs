//! Onboarding step 2, the Dialpad webhook: created as Dialpad documents it; a given secret
//! replaces the app's at once.

use super::*;

/// Answers `POST /api/v2/webhooks` as Dialpad does, with a new id each time and the secret
/// echoed.
pub(super) struct CreatedWebhook(AtomicI64);

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

pub(super) fn created_webhook() -> CreatedWebhook {
    CreatedWebhook(AtomicI64::new(5_212_604_609_576_960))
}

/// Onboarding step 2: creates the webhook; Dialpad gets exactly the request it documents.
/// Returns the hook URL.
pub(super) async fn create_webhook(
    stack: &TestStack,
    dialpad: &MockServer,
    app: &TestApp,
) -> String {
    Mock::given(method("POST"))
        .and(path("/api/v2/webhooks"))
        .respond_with(created_webhook())
        .mount(dialpad)
        .await;
    let (status, created) = admin_post(
        stack,
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
    let sent = &requests_to(dialpad, "POST", "/api/v2/webhooks").await[0];
    assert_eq!(sent.headers["authorization"], "Bearer at-first-1");
    assert_eq!(sent.headers["content-type"], "application/json");
    assert_eq!(sent.headers["accept"], "application/json");
    let sent_body: Value = serde_json::from_slice(&sent.body).expect("JSON body");
    assert_eq!(
        sent_body,
        json!({ "hook_url": hook_url, "secret": app.webhook_secret })
    );
    hook_url
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
