//! Tokens and secrets: one shared refresh with rotation, sealing at start, key rotation and
//! `reseal`.

use super::*;

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
