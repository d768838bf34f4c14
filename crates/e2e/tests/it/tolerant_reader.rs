//! A payload a little off the documented shape still becomes a call (`domain::json`, the
//! tolerant reader): only an event's identity must be usable. Through ingest's HTTP route, the
//! worker and the tenant API, against Postgres.

use std::collections::{BTreeMap, BTreeSet};

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use futures_util::StreamExt;
use serde_json::{Value, json};

use db::schema::webhook_events;
use e2e::{TestStack, fixture};

/// Every call and SMS fixture in `testdata/dialpad/`.
fn fixture_names() -> Vec<String> {
    let dir = format!("{}/../../testdata/dialpad", env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("testdata/dialpad")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| {
            (name.starts_with("call_") || name.starts_with("sms_")) && name.ends_with(".json")
        })
        .collect();
    names.sort();
    names
}

/// What replaces a field: every other JSON type, the field's number as a string, and extremes.
fn replacements(original: &Value) -> Vec<Value> {
    let mut values = vec![
        json!("x"),
        json!(7),
        json!(2.5),
        json!(true),
        Value::Null,
        json!({}),
        json!([]),
        json!(-8_000_000_000_000_000_i64),
        json!(1e308),
        json!("y".repeat(100 * 1024)),
    ];
    if original.is_number() {
        values.push(json!(original.to_string()));
    }
    values
}

/// Whether a value is a usable identity, as the issue defines it: an int64, or a string of
/// digits that is one.
fn usable_id(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok()
        }
        _ => None,
    }
}

/// A call's state is usable when it is a string of 1 to 64 bytes.
fn usable_state(value: Option<&Value>) -> bool {
    value
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty() && s.len() <= 64)
}

/// Moves an event's ids by `offset` so each mutant is its own leg (or message), in its own
/// call graph: no mutant links to another.
fn rekey(event: &mut Value, offset: i64) {
    for key in [
        "call_id",
        "master_call_id",
        "entry_point_call_id",
        "operator_call_id",
        "id",
    ] {
        if let Some(id) = event[key].as_i64() {
            event[key] = json!(id + offset);
        }
    }
}

/// The expected fate of a mutant: applied as this leg or message, or dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expected {
    Leg(i64),
    Message(i64),
    Dead,
}

/// Every field of every fixture (top level, and one level into objects such as `contact` and
/// `target`) replaced in turn with every other JSON type and extreme values: each mutant
/// either applies (its identity intact: the leg is in `GET /api/calls?view=legs`, the message
/// in `GET /api/messages`) or is dead at once, after one attempt, with its reason. Ingest
/// stores every one; nothing is retried, nothing panics, no neighbour in a batch is affected.
#[tokio::test]
async fn every_field_of_every_fixture_may_have_any_type_and_only_a_broken_identity_fails() {
    let stack = TestStack::spawn().await;
    let app = stack.create_app("tolerant").await;

    let mut mutants: Vec<(String, Value, Expected)> = Vec::new();
    for name in fixture_names() {
        let original = fixture(&name);
        let is_call = name.starts_with("call_");
        let mut paths: Vec<Vec<String>> = Vec::new();
        for (key, value) in original.as_object().expect("object") {
            paths.push(vec![key.clone()]);
            if let Value::Object(inner) = value {
                paths.extend(inner.keys().map(|k| vec![key.clone(), k.clone()]));
            }
        }
        for path in paths {
            let current = path.iter().fold(&original, |v, k| &v[k.as_str()]).clone();
            for replacement in replacements(&current) {
                let mut mutant = original.clone();
                rekey(&mut mutant, (mutants.len() as i64 + 1) * 8192);
                let slot = path[..path.len() - 1]
                    .iter()
                    .fold(&mut mutant, |v, k| &mut v[k.as_str()]);
                slot[path.last().expect("path").as_str()] = replacement.clone();
                let expected = if is_call {
                    match usable_id(mutant.get("call_id")) {
                        Some(id) if usable_state(mutant.get("state")) => Expected::Leg(id),
                        _ => Expected::Dead,
                    }
                } else {
                    usable_id(mutant.get("id")).map_or(Expected::Dead, Expected::Message)
                };
                let label = format!(
                    "{name} {} = {:.40}",
                    path.join("."),
                    replacement.to_string()
                );
                mutants.push((label, mutant, expected));
            }
        }
    }

    // Ingest stores every one (distinct content, so none is a duplicate), 32 at a time.
    let ids: Vec<i64> = futures_util::stream::iter(&mutants)
        .map(|(label, event, _)| {
            let stack = &stack;
            let app = &app;
            async move {
                let response = stack.post_event(app, event).await;
                assert_eq!(response.status(), 200, "{label}: stored");
                let body: Value = response.json().await.expect("JSON");
                body["id"].as_i64().expect("event id")
            }
        })
        .buffered(32)
        .collect()
        .await;
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        mutants.len(),
        "each stored once"
    );

    let report = stack.worker.drain().await.expect("drain");
    assert_eq!(report.failed, 0, "nothing is retried: {report:?}");
    assert_eq!(
        report.claimed,
        mutants.len(),
        "each claimed once: {report:?}"
    );

    // Each mutant's fate: dead after one attempt with a broken-identity reason, or done and in
    // the tenant API.
    let mut conn = stack.db.connect().await;
    let stored: BTreeMap<i64, (String, i32, Option<String>)> = webhook_events::table
        .select((
            webhook_events::id,
            webhook_events::status,
            webhook_events::attempts,
            webhook_events::last_error,
        ))
        .load::<(i64, String, i32, Option<String>)>(&mut conn)
        .await
        .expect("events")
        .into_iter()
        .map(|(id, status, attempts, error)| (id, (status, attempts, error)))
        .collect();
    let legs = walk(
        &stack,
        &app.api_key,
        "/api/calls?view=legs",
        "calls",
        "call_id",
    )
    .await;
    let messages = walk(
        &stack,
        &app.api_key,
        "/api/messages",
        "messages",
        "message_id",
    )
    .await;
    let mut wrong = Vec::new();
    for ((label, _, expected), id) in mutants.iter().zip(&ids) {
        let (status, attempts, error) = &stored[id];
        let as_expected = match expected {
            Expected::Leg(call_id) => status == "done" && legs.contains(call_id),
            Expected::Message(message_id) => status == "done" && messages.contains(message_id),
            Expected::Dead => {
                status == "dead"
                    && *attempts == 1
                    && error.as_deref().is_some_and(|e| e.contains("no usable"))
            }
        };
        if !as_expected {
            wrong.push(format!(
                "{label}: expected {expected:?}, got {status} {error:?}"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} mutants went wrong, e.g.:\n{}",
        wrong.len(),
        mutants.len(),
        wrong[..wrong.len().min(20)].join("\n")
    );
}

/// Every id of a list, page by page (`limit=200`, following `next_cursor`).
async fn walk(stack: &TestStack, api_key: &str, path: &str, rows: &str, id: &str) -> BTreeSet<i64> {
    let mut ids = BTreeSet::new();
    let separator = if path.contains('?') { '&' } else { '?' };
    let mut url = format!("{path}{separator}limit=200");
    loop {
        let response = stack.tenant_get(api_key, &url).await;
        assert_eq!(response.status(), 200, "{url}");
        let body: Value = response.json().await.expect("JSON");
        for row in body[rows].as_array().expect("rows") {
            ids.insert(row[id].as_str().expect("id").parse().expect("int64 id"));
        }
        match body["next_cursor"].as_str() {
            Some(cursor) => url = format!("{path}{separator}limit=200&cursor={cursor}"),
            None => return ids,
        }
    }
}

/// A contact id and a target id given as strings, not int64s (as Dialpad's REST API gives
/// them), land as a normal call with those ids as text; the target id filter finds it.
#[tokio::test]
async fn string_party_ids_land_as_a_normal_call_with_the_ids_as_text() {
    let stack = TestStack::spawn().await;
    let app = stack.create_app("string ids").await;
    let mut event = fixture("call_outbound_03_hangup.json");
    event["contact"]["id"] = json!("c-4517233558609920");
    event["target"]["id"] = json!("agent-42");
    event["was_recorded"] = json!("true");
    event["duration"] = json!("410934.5");
    assert_eq!(stack.post_event(&app, &event).await.status(), 200);
    let report = stack.run_worker().await;
    assert_eq!((report.done, report.dead), (1, 0));

    let (status, body) = stack.get_calls(&app.api_key, "?view=legs").await;
    assert_eq!(status, 200);
    let leg = &body["calls"][0];
    assert_eq!(leg["call_id"], event["call_id"].to_string());
    assert_eq!(leg["status"], "completed");
    assert_eq!(leg["contact"]["id"], "c-4517233558609920");
    assert_eq!(leg["target"]["id"], "agent-42");
    let (_, calls) = stack.get_calls(&app.api_key, "").await;
    assert_eq!(calls["calls"][0]["contact"]["id"], "c-4517233558609920");
    let (_, found) = stack.get_calls(&app.api_key, "?target_id=agent-42").await;
    assert_eq!(found["total"], 1);

    // An integer id given as a string is stored in canonical decimal, as a number would be.
    let mut padded = fixture("call_outbound_01_calling.json");
    padded["call_id"] = json!(padded["call_id"].as_i64().expect("call_id") + 8192);
    padded["target"]["id"] = json!("0099");
    assert_eq!(stack.post_event(&app, &padded).await.status(), 200);
    assert_eq!(stack.run_worker().await.done, 1);
    let (_, found) = stack
        .get_calls(&app.api_key, "?view=legs&target_id=99")
        .await;
    assert_eq!(found["total"], 1);
    assert_eq!(found["calls"][0]["target"]["id"], "99");
}
