//! The OpenAPI document: served at `/openapi.json` exactly as committed in `docs/openapi.json`,
//! 3.1, every operation documented with its errors and routed, and the interactive page.

use serde_json::Value;

use e2e::TestStack;

const METHODS: [&str; 5] = ["get", "post", "patch", "put", "delete"];

fn committed() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
    let text = std::fs::read_to_string(path).expect("docs/openapi.json exists");
    serde_json::from_str(&text).expect("docs/openapi.json is JSON")
}

/// Every `$ref` in `value`.
fn refs<'v>(value: &'v Value, out: &mut Vec<&'v str>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(target)) = map.get("$ref") {
                out.push(target);
            }
            map.values().for_each(|v| refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_served_document_is_the_committed_one_and_complete() {
    let stack = TestStack::spawn().await;
    let response = stack
        .http
        .get(format!("{}/openapi.json", stack.api_url))
        .send()
        .await
        .expect("api answers");
    assert_eq!(response.status(), 200);
    let served: Value = response.json().await.expect("JSON");
    assert!(
        served == committed(),
        "docs/openapi.json differs from what the api serves: run `just openapi` and commit it"
    );

    assert_eq!(served["openapi"], "3.1.0");
    let schemas = served["components"]["schemas"]
        .as_object()
        .expect("schemas");
    let mut targets = Vec::new();
    refs(&served, &mut targets);
    for target in targets {
        let name = target
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected $ref {target}"));
        assert!(schemas.contains_key(name), "{target} does not resolve");
    }
    let codes: Vec<&str> = schemas["ErrorCode"]["enum"]
        .as_array()
        .expect("error codes")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for code in [
        "invalid_parameter",
        "not_found",
        "rate_limited",
        "unavailable",
    ] {
        assert!(codes.contains(&code), "{code} in {codes:?}");
    }

    let paths = served["paths"].as_object().expect("paths");
    let mut operations = 0;
    for (path, item) in paths {
        for method in METHODS {
            let Some(operation) = item.get(method) else {
                continue;
            };
            operations += 1;
            let name = format!("{} {path}", method.to_uppercase());
            assert!(operation["summary"].is_string(), "{name}: summary");
            let responses = operation["responses"].as_object().expect("responses");
            assert!(
                responses
                    .keys()
                    .any(|status| status.starts_with('2')
                        || ["101", "302"].contains(&status.as_str())),
                "{name}: a success response"
            );
            let meta = ["/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"]
                .contains(&path.as_str());
            if !meta {
                for status in ["429", "500", "503"] {
                    assert!(responses.contains_key(status), "{name}: {status}");
                }
            }
            if operation["security"]
                .as_array()
                .is_some_and(|s| !s.is_empty())
            {
                assert!(responses.contains_key("401"), "{name}: 401");
            }

            // Documented means routed: without credentials the api answers, never with the
            // 404 of an unknown route.
            let concrete = path
                .split('/')
                .map(|segment| {
                    if segment.starts_with('{') {
                        "1"
                    } else {
                        segment
                    }
                })
                .collect::<Vec<_>>()
                .join("/");
            let request = stack.http.request(
                method.to_uppercase().parse().expect("method"),
                format!("{}{concrete}", stack.api_url),
            );
            let status = request.send().await.expect("api answers").status();
            assert_ne!(status, 404, "{name} is documented but not routed");
        }
    }
    assert!(operations >= 30, "{operations} operations");
}

#[tokio::test]
async fn the_docs_page_renders_the_document() {
    let stack = TestStack::spawn().await;
    let response = stack
        .http
        .get(format!("{}/docs", stack.api_url))
        .send()
        .await
        .expect("api answers");
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .is_ok_and(|t| t.starts_with("text/html"))
    );
    let page = response.text().await.expect("text");
    assert!(page.contains("CTI server API"), "the spec is in the page");
    assert!(page.contains("/api/calls/{call_id}"));
}
