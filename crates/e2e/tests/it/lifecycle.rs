//! A Dialpad call lifecycle goes in via ingest and comes out of `GET /api/calls`.

use e2e::TestStack;
use serde_json::Value;

use crate::OUTBOUND;

fn assert_outbound_ground_truth(call: &Value) {
    assert_eq!(call["call_id"], "7189235590594560");
    assert_eq!(call["direction"], "outbound");
    assert_eq!(call["from"], "+14155550111");
    assert_eq!(call["to"], "+16175550142");
    assert_eq!(call["status"], "completed");
    assert_eq!(call["state"], "recap_summary");
    assert_eq!(call["started_at"], "2026-11-19T16:00:00.112Z");
    assert_eq!(call["connected_at"], "2026-11-19T16:00:09.842Z");
    assert_eq!(call["ended_at"], "2026-11-19T16:04:24.160Z");
    assert_eq!(call["duration"], 254_319, "254318.575 ms, rounded");
    assert_eq!(call["total_duration"], 264_049);
    assert_eq!(call["talk_time"], 232_868);
    assert_eq!(call["hold_time"], 21_450);
    assert_eq!(call["was_recorded"], true);
    assert_eq!(call["mos_score"], 4.38);
    assert_eq!(
        call["recording_url"],
        "https://dialpad.com/secureblob/callrecording/6458153277718528"
    );
    assert_eq!(call["contact"]["name"], "Jordan Whitaker");
    assert_eq!(call["target"]["id"], "6460210548400128");
    assert_eq!(call["event_count"], 5);
}

#[tokio::test]
async fn outbound_lifecycle_comes_out_of_the_api() {
    let stack = TestStack::spawn().await;
    let app = stack.create_app("Harbor & Pine Dental").await;
    stack.post_fixtures(&app, &OUTBOUND).await;

    let report = stack.run_worker().await;
    assert_eq!((report.claimed, report.done, report.failed), (5, 5, 0));

    let (status, body) = stack.get_calls(&app.api_key, "?view=legs").await;
    assert_eq!(status, 200);
    assert_eq!(body["total"], 1);
    assert_eq!(body["limit"], 50);
    assert_eq!(body["offset"], 0);
    assert_outbound_ground_truth(&body["calls"][0]);
    assert_eq!(stack.events_by_status().await, vec![("done".to_owned(), 5)]);
}

#[tokio::test]
async fn events_out_of_order_and_across_batches_converge() {
    let stack = TestStack::spawn().await;
    let app = stack.create_app("reordered").await;
    // Hangup first and alone, then the late ringing-phase events, then the rest reversed:
    // each worker run folds the new events with those already applied.
    stack.post_fixtures(&app, &[OUTBOUND[2]]).await;
    stack.run_worker().await;
    let (_, after_hangup) = stack.get_calls(&app.api_key, "?view=legs").await;
    assert_eq!(after_hangup["calls"][0]["status"], "completed");

    stack.post_fixtures(&app, &[OUTBOUND[0]]).await;
    stack.run_worker().await;
    let (_, after_late_calling) = stack.get_calls(&app.api_key, "?view=legs").await;
    assert_eq!(
        after_late_calling["calls"][0]["status"], "completed",
        "a late event never reopens"
    );
    assert_eq!(after_late_calling["calls"][0]["state"], "hangup");

    stack
        .post_fixtures(&app, &[OUTBOUND[4], OUTBOUND[3], OUTBOUND[1]])
        .await;
    stack.run_worker().await;
    let (_, body) = stack.get_calls(&app.api_key, "?view=legs").await;
    assert_eq!(body["total"], 1);
    assert_outbound_ground_truth(&body["calls"][0]);
}

#[tokio::test]
async fn voicemail_call_and_int64_ids_round_trip() {
    let stack = TestStack::spawn().await;
    let app = stack.create_app("voicemail").await;
    stack
        .post_fixtures(
            &app,
            &[
                "call_inbound_vm_06_transcription.json",
                "call_inbound_vm_01_ringing.json",
                "call_inbound_vm_04_hangup.json",
                "call_inbound_vm_02_missed.json",
                "call_inbound_vm_05_voicemail_uploaded.json",
                "call_inbound_vm_03_voicemail.json",
                "call_edge_02_ids_above_2pow53.json",
            ],
        )
        .await;
    stack.run_worker().await;
    let (_, body) = stack.get_calls(&app.api_key, "?view=legs").await;
    assert_eq!(body["total"], 2);
    let calls = body["calls"].as_array().expect("calls");
    let find = |id: &str| {
        calls
            .iter()
            .find(|c| c["call_id"] == id)
            .expect("call listed")
    };

    let voicemail = find("5024420352393216");
    assert_eq!(voicemail["status"], "voicemail");
    assert_eq!(voicemail["direction"], "inbound");
    assert_eq!(voicemail["from"], "+17185550164");
    assert_eq!(voicemail["to"], "+14155550111");
    assert_eq!(voicemail["connected_at"], Value::Null);
    assert_eq!(voicemail["ended_at"], "2026-11-19T16:47:59.708Z");
    assert_eq!(voicemail["duration"], 0);
    assert_eq!(
        voicemail["voicemail_link"],
        "https://dialpad.com/secureblob/voicemail/7337175117225984"
    );
    assert!(
        voicemail["transcription_text"]
            .as_str()
            .is_some_and(|t| t.contains("Thursday"))
    );

    let big = find("9007199254740993");
    assert_eq!(big["master_call_id"], "9007199254740995");
    assert_eq!(big["contact"]["id"], "9007199254740997");
    assert_eq!(big["target"]["id"], "9223372036854775807");
    assert_eq!(big["status"], "completed");

    // Newest first by started_at: the edge call started at 18:30, the voicemail at 16:47.
    assert_eq!(calls[0]["call_id"], "9007199254740993");
}
