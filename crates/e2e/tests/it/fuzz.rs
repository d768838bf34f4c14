//! Schema-driven fuzzing of the api with schemathesis (the standard OpenAPI fuzzer), against
//! the served `/openapi.json`, with a tenant key and the admin secret.

use std::process::Command;

use e2e::{INTERNAL_SECRET, TestStack};

/// The pinned schemathesis `.ci/run` installs (`scripts/install-schemathesis.sh`, into
/// `target/tools`); installed here when missing, so `cargo test` alone works too (it needs
/// Python 3 and the package index).
fn schemathesis() -> std::path::PathBuf {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/tools/schemathesis/bin/st");
    if !path.exists() {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../scripts/install-schemathesis.sh");
        let status = Command::new(&script)
            .status()
            .expect("runs the install script");
        assert!(status.success(), "installing schemathesis failed");
    }
    path
}

/// Every operation of the document, 25 generated cases each (deterministic) plus its examples,
/// valid and invalid input, every method: no answer is a server error, and every status,
/// header and body matches the document; a request the schema refuses is refused. Two checks
/// are relaxed in `testdata/schemathesis/schemathesis.toml`, each with its reason.
#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_server_error_and_no_answer_the_document_does_not_allow() {
    let st = schemathesis();
    let stack = TestStack::spawn().await;
    let app = stack.create_app("fuzzed").await;
    let api_url = stack.api_url.clone();
    let output = tokio::task::spawn_blocking(move || {
        let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata/schemathesis/schemathesis.toml");
        Command::new(&st)
            // Its cache and reports go beside it, not into the source tree.
            .current_dir(st.parent().unwrap_or(std::path::Path::new(".")))
            .arg("--config-file")
            .arg(config)
            .args(["run", &format!("{api_url}/openapi.json")])
            .arg("--generation-deterministic")
            .args(["--max-examples", "25"])
            .args(["-H", &format!("x-app-api-key: {}", app.api_key)])
            .args(["-H", &format!("Authorization: Bearer {INTERNAL_SECRET}")])
            .output()
    })
    .await
    .expect("joins")
    .expect("schemathesis runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{text}");
}
