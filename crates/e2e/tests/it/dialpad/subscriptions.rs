//! Onboarding step 3, Dialpad subscriptions: calls and SMS on the app's webhook.

use super::*;

/// Onboarding step 3: subscribes to calls (every modelled state) and SMS, both on that webhook.
pub(super) async fn subscribe_calls_and_sms(
    stack: &TestStack,
    dialpad: &MockServer,
    app: &TestApp,
    hook_url: &str,
) {
    for (kind, id) in [("call", "6000000000000001"), ("sms", "6000000000000002")] {
        Mock::given(method("POST"))
            .and(path(format!("/api/v2/subscriptions/{kind}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "id": id, "enabled": true,
                "webhook": { "id": "5212604609576960", "hook_url": hook_url,
                             "signature": { "algo": "HS256", "secret": app.webhook_secret, "type": "jwt" } },
            })))
            .mount(dialpad)
            .await;
    }
    let (status, subscribed) = admin_post(
        stack,
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
        &requests_to(dialpad, "POST", "/api/v2/subscriptions/call").await[0].body,
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
        &requests_to(dialpad, "POST", "/api/v2/subscriptions/sms").await[0].body,
    )
    .expect("JSON");
    assert_eq!(
        sms_body,
        json!({ "endpoint_id": 5_212_604_609_576_960_i64, "direction": "all", "enabled": true,
                "include_internal": false, "status": true })
    );
}
