//! The tenant REST surface over the fixtures' ground truth: phone calls and legs with every
//! filter and both paging modes, active calls, one call with its legs and its raw events,
//! messages and voicemails, parameter errors, and tenant isolation on every endpoint.

use e2e::{TestApp, TestStack};
use serde_json::Value;

const ALL_FIXTURES: [&str; 29] = [
    "call_outbound_01_calling.json",
    "call_outbound_02_connected.json",
    "call_outbound_03_hangup.json",
    "call_outbound_04_recording.json",
    "call_outbound_05_recap_summary.json",
    "call_inbound_cc_01_queued.json",
    "call_inbound_cc_02_ringing.json",
    "call_inbound_cc_03_connected.json",
    "call_inbound_cc_04_hangup_agent_leg.json",
    "call_inbound_cc_05_hangup_callcenter_leg.json",
    "call_inbound_vm_01_ringing.json",
    "call_inbound_vm_02_missed.json",
    "call_inbound_vm_03_voicemail.json",
    "call_inbound_vm_04_hangup.json",
    "call_inbound_vm_05_voicemail_uploaded.json",
    "call_inbound_vm_06_transcription.json",
    "call_transfer_01_department_ringing.json",
    "call_transfer_02_agent_a_connected.json",
    "call_transfer_03_agent_b_connected.json",
    "call_transfer_04_agent_a_hangup.json",
    "call_transfer_05_agent_b_hangup.json",
    "call_transfer_06_department_hangup.json",
    "sms_inbound_01_received.json",
    "sms_outbound_01_pending.json",
    "sms_outbound_02_status_success.json",
    "call_edge_01_null_contact.json",
    "call_edge_02_ids_above_2pow53.json",
    "call_edge_03_unicode_names.json",
    "sms_edge_04_unicode_mms.json",
];

async fn get(stack: &TestStack, app: &TestApp, path: &str) -> (u16, Value) {
    let response = stack.tenant_get(&app.api_key, path).await;
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON body"))
}

fn ids(body: &Value, list: &str, key: &str) -> Vec<String> {
    body[list]
        .as_array()
        .unwrap_or_else(|| panic!("{list} in {body}"))
        .iter()
        .map(|row| row[key].as_str().expect("string id").to_owned())
        .collect()
}

/// A stack with app A holding every fixture, and app B one live outbound call.
async fn populated() -> (TestStack, TestApp, TestApp) {
    let stack = TestStack::spawn().await;
    let a = stack.create_app("A").await;
    let b = stack.create_app("B").await;
    stack.post_fixtures(&a, &ALL_FIXTURES).await;
    stack.post_fixtures(&b, &crate::OUTBOUND[..2]).await;
    stack.run_worker().await;
    (stack, a, b)
}

#[tokio::test]
async fn calls_are_phone_calls_with_filters_and_both_paging_modes() {
    let (stack, a, _) = populated().await;
    let count = |query: &'static str| {
        let (stack, a) = (&stack, &a);
        async move {
            let (status, body) = get(stack, a, &format!("/api/calls{query}")).await;
            assert_eq!(status, 200, "{query}: {body}");
            body["total"].as_i64().expect("total")
        }
    };
    assert_eq!(count("").await, 7, "seven phone calls");
    assert_eq!(count("?view=legs").await, 10, "ten legs");
    assert_eq!(count("?direction=inbound").await, 5);
    assert_eq!(count("?direction=outbound").await, 2);
    assert_eq!(
        count("?direction=all").await,
        7,
        "all: no filter, as Node clients send"
    );
    assert_eq!(count("?status=completed").await, 5);
    assert_eq!(count("?status=voicemail").await, 1);
    assert_eq!(count("?status=missed").await, 1);
    assert_eq!(count("?state=recap_summary").await, 1);
    assert_eq!(count("?view=legs&state=hangup").await, 8);
    assert_eq!(
        count("?from=2026-11-19T16:15:00Z&to=2026-11-19T17:00:00Z").await,
        2
    );
    assert_eq!(count("?from=2026-11-19T17:00:00%2B00:00").await, 4);
    assert_eq!(count("?number=%2B13125550187").await, 1);
    assert_eq!(count("?number=%2B14155550130").await, 1);
    assert_eq!(
        count("?target_id=7756170664517632").await,
        1,
        "Ingrid's leg"
    );
    assert_eq!(count("?view=legs&target_id=7756170664517632").await, 1);
    assert_eq!(
        count("?direction=inbound&status=completed&number=%2B12065550199").await,
        1
    );

    let (_, all) = get(&stack, &a, "/api/calls").await;
    let cc = all["calls"]
        .as_array()
        .expect("calls")
        .iter()
        .find(|c| c["call_id"] == "6517261180346368")
        .expect("the call-center call");
    assert_eq!(cc["leg_count"], 2);
    assert_eq!(cc["status"], "completed");
    assert_eq!(cc["talk_time"], 187_604);
    assert_eq!(cc["answered_at"], "2026-11-19T16:20:13.398Z");
    assert_eq!(cc["first_answered_by"]["name"], "Marcus Oyelaran");
    assert_eq!(cc["mos_score"], 4.41, "the answering agent leg's");
    assert_eq!(cc["recording_url"], serde_json::Value::Null, "not recorded");
    // As the Node CTI server's call objects carried them: from the leg that recorded, and
    // from the answered person leg.
    let outbound = all["calls"]
        .as_array()
        .expect("calls")
        .iter()
        .find(|c| c["call_id"] == "7189235590594560")
        .expect("the outbound call");
    assert_eq!(
        outbound["recording_url"],
        "https://dialpad.com/secureblob/callrecording/6458153277718528"
    );
    assert_eq!(outbound["mos_score"], 4.38);

    // Offset pages and cursor pages walk the same order.
    let newest_first = ids(&all, "calls", "call_id");
    assert_eq!(newest_first.len(), 7);
    let mut by_cursor = Vec::new();
    let mut path = "/api/calls?limit=2".to_owned();
    loop {
        let (status, page) = get(&stack, &a, &path).await;
        assert_eq!(status, 200, "{page}");
        by_cursor.extend(ids(&page, "calls", "call_id"));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/calls?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(by_cursor, newest_first);
    let mut by_offset = Vec::new();
    for offset in (0..7).step_by(3) {
        let (_, page) = get(&stack, &a, &format!("/api/calls?limit=3&offset={offset}")).await;
        by_offset.extend(ids(&page, "calls", "call_id"));
    }
    assert_eq!(by_offset, newest_first);
    let (_, legs) = get(&stack, &a, "/api/calls?view=legs&limit=4").await;
    let cursor = legs["next_cursor"].as_str().expect("more legs");
    let (_, rest) = get(
        &stack,
        &a,
        &format!("/api/calls?view=legs&limit=10&cursor={cursor}"),
    )
    .await;
    assert_eq!(ids(&rest, "calls", "call_id").len(), 6);
    assert_eq!(rest["next_cursor"], Value::Null);
}

#[tokio::test]
async fn bad_parameters_are_named() {
    let (stack, a, _) = populated().await;
    for (query, parameter) in [
        ("?direction=sideways", "direction"),
        ("?status=lost", "status"),
        ("?view=tree", "view"),
        ("?number=4155550100", "number"),
        ("?from=yesterday", "from"),
        ("?from=2026-11-20T00:00:00Z&to=2026-11-19T00:00:00Z", "from"),
        ("?limit=0", "limit"),
        ("?limit=201", "limit"),
        ("?offset=-1", "offset"),
        ("?cursor=garbage", "cursor"),
        // Well formed, but its time (epoch ms -8e15) is before what Postgres holds.
        ("?cursor=LTgwMDAwMDAwMDAwMDAwMDAuMQ", "cursor"),
        ("?cursor=MTc5NTEwNDAwMDExMi41&offset=2", "cursor"),
        // Ids are text of at most 64 bytes (a non-integer id is kept as Dialpad sent it).
        (
            "?target_id=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "target_id",
        ),
    ] {
        for path in ["/api/calls", "/api/calls/active"] {
            let (status, body) = get(&stack, &a, &format!("{path}{query}")).await;
            assert_eq!(
                (status, body["error"].as_str()),
                (400, Some("invalid_parameter")),
                "{path}{query}"
            );
            assert!(
                body["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(parameter)),
                "{path}{query}: {body}"
            );
        }
    }
    let (status, body) = get(&stack, &a, "/api/messages?status=lost").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_parameter"))
    );
    let (status, _) = get(&stack, &a, "/api/voicemails?number=x").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn active_calls_one_call_and_its_timeline() {
    let (stack, a, b) = populated().await;
    let (_, active) = get(&stack, &a, "/api/calls/active").await;
    assert_eq!(active["total"], 0, "every call of A has ended");
    let (_, active) = get(&stack, &b, "/api/calls/active").await;
    assert_eq!(active["total"], 1);
    assert_eq!(active["calls"][0]["status"], "connected");
    assert_eq!(
        get(&stack, &b, "/api/calls/active?status=completed")
            .await
            .1["total"],
        0
    );
    stack.post_fixtures(&b, &[crate::OUTBOUND[2]]).await;
    stack.run_worker().await;
    assert_eq!(
        get(&stack, &b, "/api/calls/active").await.1["total"],
        0,
        "ended"
    );

    // Any leg's id finds the call, with its legs.
    for id in ["6517261180346368", "5048188663660544"] {
        let (status, call) = get(&stack, &a, &format!("/api/calls/{id}")).await;
        assert_eq!(status, 200);
        assert_eq!(call["call_id"], "6517261180346368");
        assert_eq!(
            ids(&call, "legs", "call_id"),
            ["6517261180346368", "5048188663660544"]
        );
    }
    // A root never seen as a leg (only named as master) still names the call.
    let (status, call) = get(&stack, &a, "/api/calls/9007199254740995").await;
    assert_eq!(
        (status, call["legs"][0]["call_id"].as_str()),
        (200, Some("9007199254740993"))
    );
    assert_eq!(
        get(&stack, &a, "/api/calls/9007199254740993").await.1["call_id"],
        "9007199254740995"
    );
    for missing in ["1", "not-a-number"] {
        let (status, body) = get(&stack, &a, &format!("/api/calls/{missing}")).await;
        assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    }

    let (status, timeline) = get(&stack, &a, "/api/calls/7231233865916416/events").await;
    assert_eq!(status, 200);
    assert_eq!(timeline["call_id"], "8341797169152000");
    let events = timeline["events"].as_array().expect("events");
    assert_eq!(events.len(), 6, "every leg's events");
    let states: Vec<&str> = events
        .iter()
        .map(|e| e["state"].as_str().expect("state"))
        .collect();
    assert_eq!(
        states,
        [
            "ringing",
            "connected",
            "connected",
            "hangup",
            "hangup",
            "hangup"
        ]
    );
    assert!(events.iter().all(|e| e["payload"]["call_id"].is_i64()));
}

#[tokio::test]
async fn messages_and_voicemails() {
    let (stack, a, _) = populated().await;
    let (status, all) = get(&stack, &a, "/api/messages").await;
    assert_eq!(status, 200);
    assert_eq!(all["total"], 3);
    let outbound = all["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .find(|m| m["message_id"] == "4749132898713600")
        .expect("the outbound SMS");
    assert_eq!(outbound["status"], "success");
    assert_eq!(outbound["to"], serde_json::json!(["+17185550164"]));
    assert_eq!(
        get(&stack, &a, "/api/messages?direction=outbound").await.1["total"],
        1
    );
    assert_eq!(
        get(&stack, &a, "/api/messages?direction=all").await.1["total"],
        get(&stack, &a, "/api/messages").await.1["total"]
    );
    assert_eq!(
        get(&stack, &a, "/api/messages?status=success").await.1["total"],
        1
    );
    assert_eq!(
        get(&stack, &a, "/api/messages?number=%2B17185550164")
            .await
            .1["total"],
        2
    );
    assert_eq!(
        get(&stack, &a, "/api/messages?number=%2B14155550100")
            .await
            .1["total"],
        2
    );
    let (_, page) = get(&stack, &a, "/api/messages?limit=2").await;
    let cursor = page["next_cursor"].as_str().expect("more");
    let (_, rest) = get(&stack, &a, &format!("/api/messages?cursor={cursor}")).await;
    assert_eq!(ids(&rest, "messages", "message_id").len(), 1);

    let (_, voicemails) = get(&stack, &a, "/api/voicemails").await;
    assert_eq!(voicemails["total"], 1);
    let voicemail = &voicemails["voicemails"][0];
    assert_eq!(voicemail["call_id"], "5024420352393216");
    assert_eq!(voicemail["duration"], 31_840);
    assert!(
        voicemail["transcription_text"]
            .as_str()
            .is_some_and(|t| t.starts_with("Hi Priya"))
    );
    assert_eq!(
        get(&stack, &a, "/api/voicemails?number=%2B17185550164")
            .await
            .1["total"],
        1
    );
    assert_eq!(
        get(&stack, &a, "/api/voicemails?from=2026-11-20T00:00:00Z")
            .await
            .1["total"],
        0
    );
}

#[tokio::test]
async fn no_endpoint_shows_another_tenants_data() {
    let (stack, a, b) = populated().await;
    for path in [
        "/api/calls",
        "/api/calls?view=legs",
        "/api/calls/active",
        "/api/messages",
        "/api/voicemails",
    ] {
        let (status, body) = get(&stack, &b, path).await;
        assert_eq!(status, 200, "{path}");
        let text = body.to_string();
        for a_id in ["6517261180346368", "4749132898713600", "5024420352393216"] {
            assert!(!text.contains(a_id), "{path} leaks A's {a_id}");
        }
    }
    for path in [
        "/api/calls/6517261180346368",
        "/api/calls/6517261180346368/events",
    ] {
        let (status, body) = get(&stack, &b, path).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (404, Some("not_found")),
            "{path}"
        );
        assert_eq!(get(&stack, &a, path).await.0, 200, "{path}");
    }
}

/// Posts one outbound call (its first event) with the given `call_id`, and applies it.
async fn post_call(stack: &TestStack, app: &TestApp, call_id: i64) {
    let mut event = e2e::fixture("call_outbound_01_calling.json");
    event["call_id"] = call_id.into();
    assert_eq!(stack.post_event(app, &event).await.status(), 200);
    stack.run_worker().await;
}

#[tokio::test]
async fn a_counted_total_is_reused_briefly_and_a_last_page_is_always_exact() {
    let stack = TestStack::spawn_with(|settings| settings.total_cache_ttl_ms = 60_000).await;
    let app = stack.create_app("totals").await;
    for call_id in 1..=3 {
        post_call(&stack, &app, 7_000_000_000 + call_id).await;
    }
    let total = |query: &'static str| {
        let (stack, app) = (&stack, &app);
        async move {
            let (status, body) = get(stack, app, &format!("/api/calls{query}")).await;
            assert_eq!(status, 200, "{query}: {body}");
            (
                body["total"].as_i64(),
                body["calls"].as_array().map(Vec::len),
            )
        }
    };
    // A full page counts, and the count is cached for this tenant and filter.
    assert_eq!(total("?limit=2").await, (Some(3), Some(2)));
    post_call(&stack, &app, 7_000_000_004).await;
    assert_eq!(total("?limit=2").await, (Some(3), Some(2)), "cached");
    // A page that ends the list tells the total itself: exact at once.
    assert_eq!(total("?limit=10").await, (Some(4), Some(4)));
    assert_eq!(total("?limit=3&offset=2").await, (Some(4), Some(2)));
    // Other filters are counted on their own.
    assert_eq!(
        total("?limit=2&direction=outbound").await,
        (Some(4), Some(2))
    );
    // Cursor pages never carry a total.
    let (_, first) = get(&stack, &app, "/api/calls?limit=2").await;
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let (_, next) = get(&stack, &app, &format!("/api/calls?limit=2&cursor={cursor}")).await;
    assert_eq!(next["total"], Value::Null);
    assert_eq!(next["calls"].as_array().map(Vec::len), Some(2));
}
