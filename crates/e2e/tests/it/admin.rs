//! Admin endpoints: the app and API-key lifecycle, its audit log, and revocation taking effect
//! at once on every api replica.

use std::time::{Duration, Instant};

use e2e::TestStack;
use serde_json::json;
use tokio_util::sync::CancellationToken;

async fn calls_status(stack: &TestStack, base: &str, key: &str) -> u16 {
    stack
        .http
        .get(format!("{base}/api/calls"))
        .header("x-app-api-key", key)
        .send()
        .await
        .expect("api answers")
        .status()
        .as_u16()
}

#[tokio::test]
async fn keys_rotate_and_revocation_is_immediate_on_every_replica() {
    let stack = TestStack::spawn().await;
    let app = stack.create_app("Acme").await;
    let api = stack.api_url.clone();
    // A second api replica on the same database.
    let replica = api::build(e2e::api_settings(stack.db.url()))
        .await
        .expect("replica starts");
    let replica_url = format!("http://127.0.0.1:{}", replica.port());
    let stop = CancellationToken::new();
    tokio::spawn(replica.run_until_stopped(stop.clone().cancelled_owned()));
    let id = app.app_id;

    // A second key; the first stays valid.
    let (status, second) = stack
        .admin(
            reqwest::Method::POST,
            &format!("/internal/apps/{id}/api-key"),
            None,
        )
        .await;
    assert_eq!(
        (status, second["revoked"].as_u64()),
        (201, Some(0)),
        "{second}"
    );
    let second_key = second["api_key"].as_str().expect("key").to_owned();
    for key in [&app.api_key, &second_key] {
        for base in [&api, &replica_url] {
            assert_eq!(
                calls_status(&stack, base, key).await,
                200,
                "both keys work on both replicas"
            );
        }
    }
    let (_, keys) = stack
        .admin(
            reqwest::Method::GET,
            &format!("/internal/apps/{id}/api-keys"),
            None,
        )
        .await;
    assert_eq!(keys["keys"].as_array().map(Vec::len), Some(2));
    let listed = keys.to_string();
    assert!(
        !listed.contains(&second_key) && !listed.contains("$2b$"),
        "no secret, no hash"
    );

    // Revoke the first key on one replica: the other refuses it at once.
    let first_id = app.api_key.split('_').nth(1).expect("key id");
    let (status, revoked) = stack
        .admin(
            reqwest::Method::DELETE,
            &format!("/internal/apps/{id}/api-keys/{first_id}"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert!(revoked["revoked_at"].is_string());
    let revoked_at = Instant::now();
    while calls_status(&stack, &replica_url, &app.api_key).await != 401 {
        assert!(
            revoked_at.elapsed() < Duration::from_secs(1),
            "the replica still accepts the revoked key after a second"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(calls_status(&stack, &replica_url, &second_key).await, 200);
    let (status, _) = stack
        .admin(
            reqwest::Method::DELETE,
            &format!("/internal/apps/{id}/api-keys/nosuchkey"),
            None,
        )
        .await;
    assert_eq!(status, 404);

    // Rotation: a third key revokes every other in the same step.
    let (status, third) = stack
        .admin(
            reqwest::Method::POST,
            &format!("/internal/apps/{id}/api-key"),
            Some(json!({ "revoke_existing": true })),
        )
        .await;
    assert_eq!((status, third["revoked"].as_u64()), (201, Some(1)));
    let third_key = third["api_key"].as_str().expect("key").to_owned();
    let rotated_at = Instant::now();
    while calls_status(&stack, &replica_url, &second_key).await != 401 {
        assert!(
            rotated_at.elapsed() < Duration::from_secs(1),
            "rotation takes effect within a second"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(calls_status(&stack, &replica_url, &third_key).await, 200);

    // Use is recorded (in the background).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, keys) = stack
            .admin(
                reqwest::Method::GET,
                &format!("/internal/apps/{id}/api-keys"),
                None,
            )
            .await;
        if keys["keys"][0]["last_used_at"].is_string() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "last_used_at never written: {keys}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
}

#[tokio::test]
async fn apps_are_listed_renamed_deactivated_and_audited() {
    let stack = TestStack::spawn().await;
    let app = stack.create_app("Acme").await;
    let other = stack.create_app("Other").await;
    let api = stack.api_url.clone();
    let id = app.app_id;

    let (_, list) = stack
        .admin(reqwest::Method::GET, "/internal/apps?limit=1", None)
        .await;
    assert_eq!(list["apps"][0]["name"], "Acme");
    let cursor = list["next_cursor"].as_str().expect("a second page");
    let (_, rest) = stack
        .admin(
            reqwest::Method::GET,
            &format!("/internal/apps?limit=1&cursor={cursor}"),
            None,
        )
        .await;
    assert_eq!(rest["apps"][0]["app_id"], other.app_id.to_string());
    // A forged cursor, well formed but before what Postgres holds, is a 400, not a 500.
    let (status, forged) = stack
        .admin(
            reqwest::Method::GET,
            &format!("/internal/apps?cursor=-250000000000000000_{id}"),
            None,
        )
        .await;
    assert_eq!(
        (status, forged["error"].as_str()),
        (400, Some("invalid_parameter"))
    );

    let (status, renamed) = stack
        .admin(
            reqwest::Method::PATCH,
            &format!("/internal/apps/{id}"),
            Some(json!({ "name": "Acme Dental" })),
        )
        .await;
    assert_eq!(
        (status, renamed["name"].as_str()),
        (200, Some("Acme Dental"))
    );
    let (status, body) = stack
        .admin(
            reqwest::Method::PATCH,
            &format!("/internal/apps/{id}"),
            Some(json!({ "name": " " })),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );

    // Deactivation stops the app's keys at once; reactivation brings them back.
    let (_, off) = stack
        .admin(
            reqwest::Method::PATCH,
            &format!("/internal/apps/{id}"),
            Some(json!({ "active": false })),
        )
        .await;
    assert_eq!(off["active"], false);
    assert_eq!(calls_status(&stack, &api, &app.api_key).await, 401);
    stack
        .admin(
            reqwest::Method::PATCH,
            &format!("/internal/apps/{id}"),
            Some(json!({ "active": true })),
        )
        .await;
    assert_eq!(calls_status(&stack, &api, &app.api_key).await, 200);
    stack
        .admin(
            reqwest::Method::POST,
            &format!("/internal/apps/{id}/api-key?revoke_existing=true"),
            None,
        )
        .await;

    let (status, audit) = stack
        .admin(
            reqwest::Method::GET,
            &format!("/internal/apps/{id}/audit"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["action"].as_str().expect("action"))
        .collect();
    assert_eq!(
        actions,
        [
            "api_key.issued",
            "api_key.revoked",
            "app.reactivated",
            "app.deactivated",
            "app.renamed",
            "app.created"
        ]
    );
    let entries = audit["entries"].as_array().expect("entries");
    assert_eq!(
        entries[4]["details"],
        json!({ "from": "Acme", "to": "Acme Dental" })
    );
    assert!(
        entries
            .iter()
            .all(|e| e["actor"].as_str().is_some_and(|a| a.starts_with("admin@")))
    );
    assert!(
        !audit.to_string().contains(&app.api_key),
        "no secret in the audit log"
    );
    let (_, other_audit) = stack
        .admin(
            reqwest::Method::GET,
            &format!("/internal/apps/{}/audit", other.app_id),
            None,
        )
        .await;
    assert_eq!(
        other_audit["entries"].as_array().map(Vec::len),
        Some(1),
        "per app"
    );

    let unknown = uuid::Uuid::new_v4();
    for (method, path) in [
        (reqwest::Method::PATCH, format!("/internal/apps/{unknown}")),
        (
            reqwest::Method::POST,
            format!("/internal/apps/{unknown}/api-key"),
        ),
        (
            reqwest::Method::GET,
            format!("/internal/apps/{unknown}/api-keys"),
        ),
        (
            reqwest::Method::GET,
            format!("/internal/apps/{unknown}/audit"),
        ),
        (reqwest::Method::GET, format!("/internal/apps/{unknown}")),
    ] {
        let body = (method == reqwest::Method::PATCH).then(|| json!({ "name": "x" }));
        let (status, response) = stack.admin(method.clone(), &path, body).await;
        assert_eq!(
            (status, response["error"].as_str()),
            (404, Some("not_found")),
            "{method} {path}"
        );
    }
}

/// A JSON body must be an object (serde alone would read a struct from an array), and a
/// documented path asked with another method is a 405 naming the allowed ones.
#[tokio::test]
async fn bodies_must_be_objects_and_other_methods_are_405_with_allow() {
    let stack = TestStack::spawn().await;
    let app = stack.create_app("Acme").await;
    let (status, body) = stack
        .admin(
            reqwest::Method::PATCH,
            &format!("/internal/apps/{}", app.app_id),
            Some(json!([null, null])),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_json"))
    );
    let (status, body) = stack
        .admin(
            reqwest::Method::POST,
            &format!("/internal/apps/{}/api-key", app.app_id),
            Some(json!([true])),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_json"))
    );

    for (method, path, allow) in [
        ("TRACE", "/internal/apps".to_owned(), "GET, POST"),
        (
            "PUT",
            format!("/internal/apps/{}", app.app_id),
            "GET, PATCH",
        ),
        ("OPTIONS", "/internal/events/reroute".to_owned(), "POST"),
    ] {
        let response = stack
            .http
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).expect("method"),
                format!("{}{path}", stack.api_url),
            )
            .bearer_auth(e2e::INTERNAL_SECRET)
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status(), 405, "{method} {path}");
        assert_eq!(response.headers()["allow"], allow, "{method} {path}");
    }
    let unknown = stack
        .http
        .get(format!("{}/internal/nothing-here", stack.api_url))
        .send()
        .await
        .expect("answers");
    assert_eq!(unknown.status(), 404);
}
