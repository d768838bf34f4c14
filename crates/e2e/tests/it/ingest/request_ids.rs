//! Request ids: every answer carries `x-request-id` (the caller's when usable, else a new
//! one), and the stored event keeps the id of the request that stored it.

use reqwest::Method;

use super::*;

async fn post_with_id(
    stack: &TestStack,
    app: &e2e::TestApp,
    event: &Value,
    id: Option<&str>,
) -> (u16, String, Value) {
    let mut request = stack
        .http
        .post(format!(
            "{}/webhooks/dialpad/{}",
            stack.ingest_url, app.app_id
        ))
        .body(sign(event, &app.webhook_secret));
    if let Some(id) = id {
        request = request.header("x-request-id", id);
    }
    let response = request.send().await.expect("ingest answers");
    let status = response.status().as_u16();
    let answered = response.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    (status, answered, response.json().await.expect("JSON"))
}

async fn stored_request_id(stack: &TestStack, id: &Value) -> Value {
    let (status, event) = stack
        .admin(Method::GET, &format!("/internal/events/{id}"), None)
        .await;
    assert_eq!(status, 200, "{event}");
    event["request_id"].clone()
}

#[tokio::test]
async fn an_event_keeps_the_request_id_ingest_answered_it_with() {
    let stack = TestStack::spawn().await;
    let app = stack.create_app("traced").await;
    let event = fixture("call_outbound_01_calling.json");

    let (status, answered, body) = post_with_id(&stack, &app, &event, Some("edge-42.a_b:c")).await;
    assert_eq!((status, answered.as_str()), (200, "edge-42.a_b:c"));
    assert_eq!(
        stored_request_id(&stack, &body["id"]).await,
        "edge-42.a_b:c"
    );

    // A redelivery gets its own id; the event keeps the one that stored it.
    let (status, answered, again) = post_with_id(&stack, &app, &event, Some("edge-43")).await;
    assert_eq!(
        (status, answered.as_str(), &again["duplicate"]),
        (200, "edge-43", &json!(true))
    );
    assert_eq!(
        stored_request_id(&stack, &again["id"]).await,
        "edge-42.a_b:c"
    );

    // No id, or one that is not short and plain: a new one.
    let next = fixture("call_outbound_02_connected.json");
    for given in [None, Some("has space"), Some(&*"x".repeat(65))] {
        let (status, answered, body) = post_with_id(&stack, &app, &next, given).await;
        assert_eq!(status, 200);
        assert_eq!(answered.len(), 32, "a new id: {answered}");
        assert!(answered.bytes().all(|b| b.is_ascii_hexdigit()));
        if given.is_none() {
            assert_eq!(
                stored_request_id(&stack, &body["id"]).await,
                answered.as_str()
            );
        }
    }

    // Refusals carry one too.
    let forged = stack
        .http
        .post(format!(
            "{}/webhooks/dialpad/{}",
            stack.ingest_url, app.app_id
        ))
        .header("x-request-id", "probe-1")
        .body(sign(&event, "not-the-secret"))
        .send()
        .await
        .expect("ingest answers");
    assert_eq!(forged.status(), 401);
    assert_eq!(forged.headers()["x-request-id"], "probe-1");
}
