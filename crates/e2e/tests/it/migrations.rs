//! Process life: migrations run only on request and are safe to run concurrently, services
//! refuse to start on a schema that is behind or without a required setting, and stop when told.

use e2e::{TestDatabase, UNSCOPED_SECRET};

#[tokio::test]
async fn services_refuse_to_start_until_migrated() {
    let db = TestDatabase::empty().await;
    let error = ingest::build(ingest::Settings::new(db.url(), UNSCOPED_SECRET))
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
    assert_eq!(
        applied, 1,
        "the one migration is applied by exactly one run"
    );

    let api = api::build(api::Settings::new(db.url(), "secret")).await;
    assert!(api.is_ok(), "starts once migrated");
}

#[tokio::test]
async fn a_missing_required_setting_is_named() {
    let db = TestDatabase::migrated().await;
    let mut settings = ingest::Settings::new(db.url(), UNSCOPED_SECRET);
    settings.dialpad_webhook_secret = None;
    let error = ingest::build(settings).await.expect_err("refused");
    assert!(
        error.to_string().contains("DIALPAD_WEBHOOK_SECRET"),
        "{error}"
    );

    let mut settings = api::Settings::new(db.url(), "x");
    settings.internal_api_secret = None;
    let error = api::build(settings).await.expect_err("refused");
    assert!(error.to_string().contains("INTERNAL_API_SECRET"), "{error}");
}

#[tokio::test]
async fn servers_stop_when_told_to() {
    let db = TestDatabase::migrated().await;
    let ingest = ingest::build(ingest::Settings::new(db.url(), UNSCOPED_SECRET))
        .await
        .expect("ingest starts");
    let api = api::build(api::Settings::new(db.url(), "secret"))
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
