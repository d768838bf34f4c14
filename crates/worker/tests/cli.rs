//! The `worker` binary's command line: settings errors, `migrate`, refusing a schema that is
//! behind, `healthcheck` against its health port, and a clean exit on SIGTERM. (ingest and api share this CLI through `bootstrap`.)

use std::process::Stdio;
use std::time::Duration;

use db::testing::TestDatabase;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

fn worker(database_url: Option<&str>) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_worker"));
    command
        .env_remove("DATABASE_URL")
        .env_remove("CONFIG_FILE")
        .env("METRICS_PORT", "0")
        .env("RUST_LOG", "info");
    if let Some(url) = database_url {
        command.env("DATABASE_URL", url);
    }
    command.kill_on_drop(true);
    command
}

async fn run(mut command: Command) -> (bool, String) {
    let output = command.output().await.expect("the binary runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

#[tokio::test]
async fn a_node_cti_server_variable_is_named_at_start_up_with_its_replacement() {
    let mut command = worker(None);
    command
        .env("NODE_ENV", "production")
        .env("DB_HOST", "db.internal");
    let (ok, output) = run(command).await;
    assert!(!ok, "still refuses to start without DATABASE_URL");
    assert!(
        output.contains("DB_HOST is a setting of the Node CTI server")
            && output.contains("set DATABASE_URL"),
        "{output}"
    );
    assert!(
        output.contains("NODE_ENV is a setting of the Node CTI server"),
        "{output}"
    );
}

#[tokio::test]
async fn a_missing_setting_is_named() {
    let (ok, output) = run(worker(None)).await;
    assert!(!ok);
    assert!(output.contains("DATABASE_URL is required"), "{output}");
}

#[tokio::test]
async fn migrate_then_serve_then_stop_on_sigterm() {
    let db = TestDatabase::empty().await;

    let (ok, output) = run(worker(Some(db.url()))).await;
    assert!(!ok, "refuses an unmigrated database");
    assert!(output.contains("pending migration"), "{output}");

    for _ in 0..2 {
        let mut migrate = worker(Some(db.url()));
        migrate.arg("migrate");
        let (ok, output) = run(migrate).await;
        assert!(ok, "{output}");
    }

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
        .to_string();
    let with_port = |mut command: Command| {
        command.env("METRICS_PORT", &port);
        command
    };
    let healthcheck = || {
        let mut command = with_port(worker(Some(db.url())));
        command.arg("healthcheck");
        command
    };
    let (ok, output) = run(healthcheck()).await;
    assert!(!ok && output.contains("nothing answers"), "{output}");

    let mut serve = with_port(worker(Some(db.url())));
    let mut child = serve.stdout(Stdio::piped()).spawn().expect("starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let started = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.expect("reads") {
            if line.contains("Worker started") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(started, Ok(true), "the worker logs that it started");
    let (ok, output) = run(healthcheck()).await;
    assert!(
        ok && output.contains("200"),
        "`worker healthcheck` passes: {output}"
    );

    let pid = child.id().expect("running").to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill runs");
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("exits after SIGTERM")
        .expect("status");
    assert!(status.success(), "exit 0 after SIGTERM, got {status}");
    let (ok, _) = run(healthcheck()).await;
    assert!(!ok, "`worker healthcheck` fails once it stopped");
}

#[tokio::test]
async fn settings_come_from_the_config_file_and_the_environment_wins() {
    let db = TestDatabase::empty().await;
    let dir = std::env::temp_dir().join(format!("cti-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("worker.toml");
    std::fs::write(
        &file,
        format!("database_url = \"{}\"\nworker_batch_size = 7\n", db.url()),
    )
    .expect("write");

    // The file supplies DATABASE_URL: the worker reaches the (unmigrated) database.
    let mut from_file = worker(None);
    from_file.env("CONFIG_FILE", &file);
    let (ok, output) = run(from_file).await;
    assert!(!ok && output.contains("pending migration"), "{output}");

    // The environment overrides the file: a bad value there is reported by name.
    let mut overridden = worker(None);
    overridden
        .env("CONFIG_FILE", &file)
        .env("WORKER_BATCH_SIZE", "many");
    let (ok, output) = run(overridden).await;
    assert!(!ok && output.contains("worker_batch_size"), "{output}");
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn at_debug_each_event_is_logged_with_the_request_id_ingest_answered_it_with() {
    use db::queue::{NewWebhookEvent, enqueue_many};
    use db::testing::fixtures::fixture;

    let db = TestDatabase::migrated().await;
    let app_id = db.insert_app("logs").await;
    let mut conn = db.connect().await;
    let event = |payload: serde_json::Value, request_id: &str| {
        let serde_json::Value::Object(payload) = payload else {
            unreachable!("an object")
        };
        NewWebhookEvent {
            request_id: Some(request_id.to_owned()),
            ..NewWebhookEvent::from_verified(Some(app_id), payload)
        }
    };
    enqueue_many(
        &mut conn,
        &[
            event(fixture("call_outbound_03_hangup.json"), "req-call-hangup-1"),
            event(
                serde_json::json!({"agent_status": "available"}),
                "req-not-modelled-2",
            ),
        ],
    )
    .await
    .expect("enqueued");

    let mut serve = worker(Some(db.url()));
    serve
        .env("RUST_LOG", "worker=debug")
        .env("WORKER_POLL_INTERVAL_MS", "100");
    let mut child = serve.stdout(Stdio::piped()).spawn().expect("starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let (mut applied, mut ignored) = (None, None);
    let seen = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.expect("reads") {
            if line.contains("req-call-hangup-1") {
                applied = Some(line);
            } else if line.contains("req-not-modelled-2") {
                ignored = Some(line);
            }
            if applied.is_some() && ignored.is_some() {
                break;
            }
        }
    })
    .await;
    child.kill().await.expect("stopped");
    assert!(
        seen.is_ok(),
        "both lines within 30 s: {applied:?} {ignored:?}"
    );
    let (applied, ignored) = (applied.unwrap_or_default(), ignored.unwrap_or_default());
    assert!(
        applied.contains("Event applied") && applied.contains("outcome=\"done\""),
        "{applied}"
    );
    assert!(
        ignored.contains("Event ignored") && ignored.contains("outcome=\"ignored\""),
        "{ignored}"
    );
}
