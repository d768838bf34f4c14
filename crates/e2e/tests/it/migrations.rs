//! Process life: migrations run only on request and are safe to run concurrently, services
//! refuse to start on a schema that is behind or without a required setting, and stop when told.

use e2e::TestDatabase;

#[tokio::test]
async fn services_refuse_to_start_until_migrated() {
    let db = TestDatabase::empty().await;
    let error = ingest::build(e2e::ingest_settings(db.url()))
        .await
        .expect_err("an unmigrated database is refused");
    let message = format!("{error:#}");
    assert!(
        message.contains("pending migration") && message.contains("migrate"),
        "{message}"
    );
    assert!(
        worker::Worker::build(worker::Settings::new(db.url()))
            .await
            .is_err()
    );

    // Two migrate runs at once: both succeed, the schema is applied once.
    let (a, b) = tokio::join!(
        db::migrations::run_migrations(db.url()),
        db::migrations::run_migrations(db.url())
    );
    let applied = a.expect("first migrate").len() + b.expect("second migrate").len();
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations"))
        .expect("migrations dir")
        .count();
    assert_eq!(
        applied, migrations,
        "each migration is applied by exactly one run"
    );

    let api = api::build(e2e::api_settings(db.url())).await;
    assert!(api.is_ok(), "starts once migrated");
}

#[tokio::test]
async fn a_missing_required_setting_is_named() {
    let db = TestDatabase::migrated().await;
    let mut settings = e2e::ingest_settings(db.url());
    settings.dialpad_webhook_secret = None;
    let error = ingest::build(settings).await.expect_err("refused");
    assert!(
        error.to_string().contains("DIALPAD_WEBHOOK_SECRET"),
        "{error}"
    );

    let mut settings = e2e::api_settings(db.url());
    settings.internal_api_secret = None;
    let error = api::build(settings).await.expect_err("refused");
    assert!(error.to_string().contains("INTERNAL_API_SECRET"), "{error}");

    let mut settings = e2e::ingest_settings(db.url());
    settings.encryption.encryption_key = None;
    let error = ingest::build(settings).await.expect_err("refused");
    assert!(error.to_string().contains("ENCRYPTION_KEY"), "{error}");

    let short_key = "c2hvcnQta2V5";
    let mut settings = e2e::api_settings(db.url());
    settings.encryption.encryption_key = Some(short_key.into());
    let error = api::build(settings).await.expect_err("refused");
    let message = error.to_string();
    assert!(
        message.contains("ENCRYPTION_KEY") && !message.contains(short_key),
        "{message}"
    );

    let mut settings = e2e::api_settings(db.url());
    settings.dialpad.dialpad_client_id = Some("client".into());
    let error = api::build(settings).await.expect_err("refused");
    assert!(
        error.to_string().contains("DIALPAD_CLIENT_SECRET"),
        "{error}"
    );
}

#[tokio::test]
async fn servers_stop_when_told_to() {
    let db = TestDatabase::migrated().await;
    let ingest = ingest::build(e2e::ingest_settings(db.url()))
        .await
        .expect("ingest starts");
    let api = api::build(e2e::api_settings(db.url()))
        .await
        .expect("api starts");
    let stop = tokio_util::sync::CancellationToken::new();
    let ingest = tokio::spawn(ingest.run_until_stopped(stop.clone().cancelled_owned()));
    let api = tokio::spawn(api.run_until_stopped(stop.clone().cancelled_owned()));
    stop.cancel();
    for server in [ingest, api] {
        let stopped = tokio::time::timeout(std::time::Duration::from_secs(10), server).await;
        assert!(
            matches!(stopped, Ok(Ok(Ok(())))),
            "a server did not stop cleanly"
        );
    }
}
