//! The verification snippets of `docs/events.md`, run as documented (Python 3 and Node), on a
//! real delivery: it verifies; a tampered body, an empty or truncated signature and another
//! secret do not.

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
