//! The verification snippets of `docs/events.md`, run as documented (Python 3 and Node), and
//! the reference Standard Webhooks library, unchanged, on real deliveries: they verify; a
//! tampered body, an empty or truncated signature and another secret do not; during a secret
//! rotation both secrets verify.

use std::io::Write;
use std::process::{Command, Stdio};

use super::*;

/// The code block of `docs/events.md` fenced as `language` (its first one).
fn snippet(language: &str) -> String {
    let doc = include_str!("../../../../../docs/events.md");
    let fence = format!("```{language}\n");
    let start = doc.find(&fence).expect("the snippet is documented") + fence.len();
    let end = start + doc[start..].find("```").expect("the block ends");
    doc[start..end].to_owned()
}

/// Runs `program` with `script` and the cases as JSON on stdin; its one line of output.
fn run(program: &str, args: &[&str], script: &str, cases: &Value) -> Value {
    let mut child = Command::new(program)
        .args(args)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(cases.to_string().as_bytes())
        .expect("writes the cases");
    let output = child.wait_with_output().expect("finishes");
    assert!(output.status.success(), "{program} fails: {output:?}");
    serde_json::from_slice(&output.stdout).expect("a JSON answer")
}

#[tokio::test]
async fn the_documented_verifiers_accept_a_delivery_and_refuse_tampering() {
    let stack = TestStack::spawn().await;
    let app = stack.create_app("Acme").await;
    let receiver = receiver_answering(ResponseTemplate::new(200)).await;
    let created = subscribe(&stack, &app, &receiver, json!(["call.started"])).await;
    let secret = created["secret_key"].as_str().expect("secret");
    stack.start_deliveries();
    stack.post_fixtures(&app, &OUTBOUND[..1]).await;
    stack.run_worker().await;
    let requests = received(&receiver, 1).await;
    let request = &requests[0];
    let headers = |signature: &str| {
        json!({
            "webhook-id": header(request, "webhook-id"),
            "webhook-timestamp": header(request, "webhook-timestamp"),
            "webhook-signature": signature,
        })
    };
    let signature = header(request, "webhook-signature");
    let body = String::from_utf8(request.body.clone()).expect("UTF-8 body");
    let other_secret = domain::push::secret_from_bytes(&[9; 32]);
    let cases = json!([
        { "secret": secret, "headers": headers(&signature), "body": body },
        { "secret": secret, "headers": headers(&signature), "body": format!("{body} ") },
        { "secret": secret, "headers": headers(""), "body": body },
        { "secret": secret, "headers": headers(&signature[..signature.len() - 4]), "body": body },
        { "secret": other_secret, "headers": headers(&signature), "body": body },
    ]);
    let expected = json!([true, false, false, false, false]);

    let python = format!(
        "{}\nimport json, sys\ncases = json.load(sys.stdin)\n\
         print(json.dumps([verify(c['secret'], c['headers'], c['body'].encode()) for c in cases]))\n",
        snippet("python")
    );
    assert_eq!(run("python3", &["-c"], &python, &cases), expected, "Python");

    let node = format!(
        "{}\nlet input = '';\nprocess.stdin.on('data', (d) => (input += d));\n\
         process.stdin.on('end', () => console.log(JSON.stringify(JSON.parse(input).map(\
         (c) => verify(c.secret, c.headers, Buffer.from(c.body))))));\n",
        snippet("js")
    );
    assert_eq!(run("node", &["-e"], &node, &cases), expected, "Node");
}

/// The pinned Standard Webhooks library's Python (`scripts/install-standardwebhooks.sh`, which
/// `.ci/run` calls); installed here when missing, so `cargo test` alone works too.
fn standardwebhooks_python() -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let status = Command::new(root.join("scripts/install-standardwebhooks.sh"))
        .status()
        .expect("runs the install script");
    assert!(status.success(), "installing standardwebhooks failed");
    root.join("target/tools/standardwebhooks/bin/python")
}

/// `Webhook(secret).verify(body, headers)` of the reference library, per case.
const LIBRARY_VERIFIER: &str = "
import json, sys
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

def verifies(case):
    try:
        Webhook(case['secret']).verify(case['body'].encode(), case['headers'])
        return True
    except WebhookVerificationError:
        return False

print(json.dumps([verifies(case) for case in json.load(sys.stdin)]))
";

#[tokio::test]
async fn the_standard_webhooks_library_verifies_deliveries_unchanged_also_during_a_rotation() {
    let python = standardwebhooks_python();
    let stack = TestStack::spawn().await;
    let app = stack.create_app("Acme").await;
    let receiver = receiver_answering(ResponseTemplate::new(200)).await;
    let created = subscribe(&stack, &app, &receiver, json!(["call.started"])).await;
    let first_secret = created["secret_key"].as_str().expect("secret");
    stack.start_deliveries();
    stack.post_fixtures(&app, &OUTBOUND[..1]).await;
    stack.run_worker().await;
    let before = received(&receiver, 1).await;
    let (status, rotated) = stack
        .tenant(
            &app.api_key,
            Method::POST,
            &format!(
                "/api/webhooks/subscriptions/{}/rotate-secret",
                created["id"].as_str().expect("id")
            ),
            None,
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let second_secret = rotated["secret_key"].as_str().expect("new secret");
    // Another call: delivered during the rotation's grace period.
    stack
        .post_event(&app, &{
            let mut event = db::testing::fixtures::fixture(OUTBOUND[0]);
            event["call_id"] = json!(6_200_000_000_000_001_i64);
            event
        })
        .await;
    stack.run_worker().await;
    let during = received(&receiver, 2).await;

    let case = |request: &Request, secret: &str, body: String, signature: Option<&str>| {
        let signature =
            signature.map_or_else(|| header(request, "webhook-signature"), str::to_owned);
        json!({
            "secret": secret,
            "body": body,
            "headers": {
                "webhook-id": header(request, "webhook-id"),
                "webhook-timestamp": header(request, "webhook-timestamp"),
                "webhook-signature": signature,
            },
        })
    };
    let text = |request: &Request| String::from_utf8(request.body.clone()).expect("UTF-8");
    let (one, two) = (&before[0], &during[1]);
    let signature = header(one, "webhook-signature");
    let other_secret = domain::push::secret_from_bytes(&[9; 32]);
    assert_eq!(header(two, "webhook-signature").split(' ').count(), 2);
    let cases = json!([
        case(one, first_secret, text(one), None),
        case(one, first_secret, format!("{} ", text(one)), None),
        case(one, first_secret, text(one), Some("")),
        case(
            one,
            first_secret,
            text(one),
            Some(&signature[..signature.len() - 4])
        ),
        case(one, &other_secret, text(one), None),
        case(two, second_secret, text(two), None),
        case(two, first_secret, text(two), None),
    ]);
    let expected = json!([true, false, false, false, false, true, true]);
    let python = python.to_str().expect("a UTF-8 path");
    assert_eq!(run(python, &["-c"], LIBRARY_VERIFIER, &cases), expected);
}
