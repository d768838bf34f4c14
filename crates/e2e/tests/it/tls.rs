//! TLS to Postgres: `sslmode` in `DATABASE_URL` (libpq's meanings) and `DATABASE_CA_FILE`,
//! against a Postgres of the test's own that accepts only TLS, with a certificate authority
//! made here (rcgen).

use std::time::Duration;

use bootstrap::settings::DatabaseSettings;
use diesel::sql_types::{BigInt, Bool};
use diesel_async::RunQueryDsl;
use e2e::{PrivatePostgres, TestCa, fixture, sign};
use secrecy::ExposeSecret;
use serde_json::Value;

#[derive(diesel::QueryableByName)]
struct Encrypted {
    #[diesel(sql_type = Bool)]
    ssl: bool,
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

/// Whether the connection `url` opens is encrypted (Postgres' own view, `pg_stat_ssl`).
async fn encrypted(url: &str) -> Result<bool, String> {
    let mut conn = db::connect::establish(url)
        .await
        .map_err(|e| e.to_string())?;
    let row: Encrypted =
        diesel::sql_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .get_result(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
    Ok(row.ssl)
}

async fn start_tls_server(ca: &TestCa, names: &[&str]) -> PrivatePostgres {
    let cert = ca.server_cert(names);
    tokio::task::spawn_blocking(move || PrivatePostgres::start(Some(&cert)))
        .await
        .expect("private postgres starts")
}

/// A directory for the test's CA files, removed when dropped.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("cti-tls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temporary directory");
        TempDir(dir)
    }

    /// Writes the CA's certificate as a PEM file; its path.
    fn write_ca(&self, ca: &TestCa) -> String {
        let path = self.0.join(format!("ca-{}.pem", uuid::Uuid::new_v4()));
        std::fs::write(&path, &ca.cert_pem).expect("write CA file");
        path.to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        drop(std::fs::remove_dir_all(&self.0));
    }
}

#[tokio::test]
async fn every_sslmode_against_a_tls_only_server() {
    let ca = TestCa::new("cti test CA");
    let server = start_tls_server(&ca, &["localhost"]).await;
    let dir = TempDir::new();
    let ca_file = dir.write_ca(&ca);
    let other_ca_file = dir.write_ca(&TestCa::new("another CA"));
    let at = |host: &str, query: &str| {
        format!(
            "postgres://postgres:never-shown-pw@{host}:{}/postgres?{query}",
            server.port()
        )
    };

    // The server refuses plain TCP, so every success below is over TLS.
    let plain = encrypted(&at("localhost", "sslmode=disable")).await;
    assert!(plain.is_err(), "a plain connection is refused: {plain:?}");
    assert!(encrypted(&at("localhost", "")).await.is_err());

    // prefer and require encrypt without checking the certificate (as libpq does).
    assert_eq!(
        encrypted(&at("localhost", "sslmode=prefer")).await,
        Ok(true)
    );
    assert_eq!(
        encrypted(&at("localhost", "sslmode=require")).await,
        Ok(true)
    );
    // require with roots checks the chain, as libpq does.
    let refused = encrypted(&at(
        "localhost",
        &format!("sslmode=require&sslrootcert={other_ca_file}"),
    ))
    .await;
    assert!(refused.is_err(), "{refused:?}");

    // verify-full: the right CA and the name in the certificate.
    let full = format!("sslmode=verify-full&sslrootcert={ca_file}");
    assert_eq!(encrypted(&at("localhost", &full)).await, Ok(true));
    // The certificate names localhost, not 127.0.0.1: verify-full refuses, verify-ca accepts.
    let wrong_name = encrypted(&at("127.0.0.1", &full)).await;
    let message = wrong_name.expect_err("the host is not the certificate's name");
    assert!(message.contains("certificate"), "{message}");
    assert_eq!(
        encrypted(&at(
            "127.0.0.1",
            &format!("sslmode=verify-ca&sslrootcert={ca_file}")
        ))
        .await,
        Ok(true)
    );

    // Another CA's roots: refused under verify-full and verify-ca, saying why, without the
    // password.
    for mode in ["verify-full", "verify-ca"] {
        let wrong_ca = encrypted(&at(
            "localhost",
            &format!("sslmode={mode}&sslrootcert={other_ca_file}"),
        ))
        .await;
        let message = wrong_ca.expect_err("a certificate from an untrusted CA");
        assert!(
            message.contains("certificate") && message.contains("UnknownIssuer"),
            "{mode}: {message}"
        );
        assert!(!message.contains("never-shown-pw"), "{message}");
    }
    // No sslrootcert: the system's roots, which do not hold the test CA.
    assert!(
        encrypted(&at("localhost", "sslmode=verify-full"))
            .await
            .is_err()
    );
    // A missing roots file is named.
    let missing = encrypted(&at(
        "localhost",
        "sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
    ))
    .await
    .expect_err("no roots file");
    assert!(missing.contains("/nonexistent/ca.pem"), "{missing}");
}

#[tokio::test]
async fn the_three_services_run_on_a_verify_full_database() {
    let ca = TestCa::new("cti test CA");
    let server = start_tls_server(&ca, &["localhost"]).await;
    let dir = TempDir::new();
    let database = DatabaseSettings {
        database_ca_file: Some(dir.write_ca(&ca)),
        ..DatabaseSettings::for_url(&server.url("sslmode=verify-full"))
    };
    let url = database.url().expect("url");
    assert!(url.expose_secret().contains("sslrootcert="));
    db::migrations::run_migrations(url.expose_secret())
        .await
        .expect("migrations over TLS");

    let http = reqwest::Client::new();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let mut api_settings = e2e::api_settings("");
    api_settings.database = database.clone();
    let api_url = e2e::serve_api(api_settings, &shutdown).await;
    let mut ingest_settings = e2e::ingest_settings("");
    ingest_settings.database = database.clone();
    let (ingest_port, _) = e2e::serve_ingest(ingest_settings, &shutdown).await;
    let ingest_url = format!("http://127.0.0.1:{ingest_port}");
    let mut worker_settings = worker::Settings::new("");
    worker_settings.database = database.clone();
    let worker = worker::Worker::build(worker_settings)
        .await
        .expect("worker builds over TLS");

    // A tenant, a call's events through ingest, the worker, and the call through the api.
    let app = e2e::create_app_at(&http, &api_url, "tls tenant").await;
    for name in crate::OUTBOUND {
        let response = http
            .post(format!("{ingest_url}/webhooks/dialpad/{}", app.app_id))
            .body(sign(&fixture(name), &app.webhook_secret))
            .send()
            .await
            .expect("ingest answers");
        assert_eq!(response.status(), 200, "{name}");
    }
    let report = worker.drain().await.expect("worker drains over TLS");
    assert_eq!(report.done, crate::OUTBOUND.len());
    let calls: Value = http
        .get(format!("{api_url}/api/calls"))
        .header("x-app-api-key", &app.api_key)
        .send()
        .await
        .expect("api answers")
        .json()
        .await
        .expect("JSON");
    assert_eq!(calls["calls"].as_array().map(Vec::len), Some(1), "{calls}");
    for base in [&api_url, &ingest_url] {
        let ready = http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .expect("answers");
        assert_eq!(ready.status(), 200, "{base}");
    }

    // Every connection the services hold is encrypted (the server refuses any other).
    let mut conn = db::connect::establish(url.expose_secret())
        .await
        .expect("connects");
    let plain: Count = diesel::sql_query(
        "SELECT count(*) AS count FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
         WHERE a.backend_type = 'client backend' AND NOT s.ssl",
    )
    .get_result(&mut conn)
    .await
    .expect("query");
    assert_eq!(plain.count, 0);
    shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn a_service_refuses_to_start_on_a_database_whose_certificate_fails_the_check() {
    let ca = TestCa::new("cti test CA");
    let server = start_tls_server(&ca, &["localhost"]).await;
    let dir = TempDir::new();
    let mut settings = e2e::ingest_settings("");
    settings.database = DatabaseSettings {
        database_ca_file: Some(dir.write_ca(&TestCa::new("not the server's CA"))),
        ..DatabaseSettings::for_url(&format!(
            "postgres://postgres:never-shown-pw@localhost:{}/postgres?sslmode=verify-full",
            server.port()
        ))
    };
    let error = ingest::build(settings)
        .await
        .expect_err("an untrusted certificate");
    let message = format!("{error:#}");
    assert!(message.contains("UnknownIssuer"), "{message}");
    assert!(!message.contains("never-shown-pw"), "{message}");
}
