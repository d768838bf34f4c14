//! The unscoped route (`/webhooks/dialpad`, no tenant in the path).

use super::*;

#[tokio::test]
async fn unscoped_route_stores_events_as_unroutable() {
    let stack = TestStack::spawn().await;
    for jwt in [
        "call_outbound_01_calling.valid.jwt",
        "call_edge_02_ids_above_2pow53.valid.jwt",
    ] {
        let response = stack
            .post_raw(None, fixture_bytes(&format!("jwt/{jwt}")))
            .await;
        assert_eq!(response.status(), 200, "{jwt}");
    }
    // A redelivery on the unscoped route (no app) is recognised too.
    let again = stack
        .post_raw(
            None,
            fixture_bytes("jwt/call_outbound_01_calling.valid.jwt"),
        )
        .await;
    let again: Value = again.json().await.expect("JSON");
    assert_eq!(again["duplicate"], true);

    let report = stack.run_worker().await;
    assert_eq!(report.claimed, 0, "unroutable events are not claimed");
    assert_eq!(
        stack.events_by_status().await,
        vec![("unroutable".to_owned(), 2)]
    );
}

#[tokio::test]
async fn unscoped_route_events_belong_to_unscoped_webhook_app_id_when_it_is_set() {
    let stack = TestStack::spawn().await;
    let app = stack.create_app("single tenant").await;
    let mut settings = e2e::ingest_settings(stack.db.url());
    settings.unscoped_webhook_app_id = Some(app.app_id);
    let ingest = ingest::build(settings).await.expect("ingest starts");
    let url = format!("http://127.0.0.1:{}/webhooks/dialpad", ingest.port());
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(ingest.run_until_stopped(stop.clone().cancelled_owned()));

    // Still verified with DIALPAD_WEBHOOK_SECRET: the app's own secret does not open it.
    let event = fixture("call_outbound_03_hangup.json");
    let forged = stack
        .http
        .post(&url)
        .body(sign(&event, &app.webhook_secret))
        .send();
    assert_eq!(forged.await.expect("ingest answers").status(), 401);
    let signed = stack
        .http
        .post(&url)
        .body(sign(&event, UNSCOPED_SECRET))
        .send();
    assert_eq!(signed.await.expect("ingest answers").status(), 200);

    stack.run_worker().await;
    assert_eq!(stack.events_by_status().await, vec![("done".to_owned(), 1)]);
    let (_, calls) = stack.get_calls(&app.api_key, "").await;
    assert_eq!(calls["calls"][0]["call_id"], event["call_id"].to_string());
    stop.cancel();

    // An id that names no app stops ingest at start-up, with the variable's name.
    let mut settings = e2e::ingest_settings(stack.db.url());
    settings.unscoped_webhook_app_id = Some(uuid::Uuid::new_v4());
    let Err(error) = ingest::build(settings).await else {
        panic!("ingest started with an unknown UNSCOPED_WEBHOOK_APP_ID");
    };
    assert!(
        format!("{error:#}").contains("UNSCOPED_WEBHOOK_APP_ID"),
        "{error:#}"
    );
}
