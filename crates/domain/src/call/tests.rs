//! The fold against recorded Dialpad lifecycles, in any order and multiplicity.

use super::*;
use crate::event::dedupe_key;

fn fixture(json: &str) -> CallEvent {
    let value: Value = serde_json::from_str(json).expect("fixture is JSON");
    let key = dedupe_key(value.as_object().expect("fixture is an object"));
    CallEvent::parse(&value, &key).expect("fixture is a call event")
}

fn outbound() -> Vec<CallEvent> {
    [
        include_str!("../../../../testdata/dialpad/call_outbound_01_calling.json"),
        include_str!("../../../../testdata/dialpad/call_outbound_02_connected.json"),
        include_str!("../../../../testdata/dialpad/call_outbound_03_hangup.json"),
        include_str!("../../../../testdata/dialpad/call_outbound_04_recording.json"),
        include_str!("../../../../testdata/dialpad/call_outbound_05_recap_summary.json"),
    ]
    .map(fixture)
    .to_vec()
}

fn voicemail() -> Vec<CallEvent> {
    [
        include_str!("../../../../testdata/dialpad/call_inbound_vm_01_ringing.json"),
        include_str!("../../../../testdata/dialpad/call_inbound_vm_02_missed.json"),
        include_str!("../../../../testdata/dialpad/call_inbound_vm_03_voicemail.json"),
        include_str!("../../../../testdata/dialpad/call_inbound_vm_04_hangup.json"),
        include_str!("../../../../testdata/dialpad/call_inbound_vm_05_voicemail_uploaded.json"),
        include_str!("../../../../testdata/dialpad/call_inbound_vm_06_transcription.json"),
    ]
    .map(fixture)
    .to_vec()
}

fn at(epoch_ms: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(epoch_ms)
}

#[test]
fn outbound_lifecycle_matches_ground_truth() {
    let leg = CallLeg::fold(&outbound()).expect("events");
    assert_eq!(leg.call_id, 7_189_235_590_594_560);
    assert_eq!(leg.status, CallStatus::Completed);
    assert_eq!(leg.direction.as_deref(), Some("outbound"));
    assert_eq!(leg.from_number(), Some("+14155550111"));
    assert_eq!(leg.to_number(), Some("+16175550142"));
    assert_eq!(leg.started_at, at(1_795_104_000_112));
    assert_eq!(leg.connected_at, at(1_795_104_009_842));
    assert_eq!(leg.ended_at, at(1_795_104_264_160));
    assert_eq!(leg.duration_ms, Some(254_318.575));
    assert_eq!(leg.talk_time_ms, Some(232_868));
    assert_eq!(leg.hold_time_ms, Some(21_450));
    assert_eq!(leg.mos_score, Some(4.38));
    assert!(leg.was_recorded);
    assert_eq!(
        leg.recording_url.as_deref(),
        Some("https://dialpad.com/secureblob/callrecording/6458153277718528")
    );
    assert_eq!(leg.state, "recap_summary");
    assert_eq!(leg.event_count, 5);
}

#[test]
fn voicemail_lifecycle_matches_ground_truth() {
    let leg = CallLeg::fold(&voicemail()).expect("events");
    assert_eq!(leg.status, CallStatus::Voicemail);
    assert_eq!(leg.from_number(), Some("+17185550164"));
    assert_eq!(leg.to_number(), Some("+14155550111"));
    assert_eq!(leg.connected_at, None);
    assert_eq!(leg.ended_at, at(1_795_106_879_708));
    assert_eq!(leg.duration_ms, Some(0.0));
    assert_eq!(leg.talk_time_ms, Some(0));
    assert_eq!(
        leg.voicemail_link.as_deref(),
        Some("https://dialpad.com/secureblob/voicemail/7337175117225984")
    );
    assert!(
        leg.transcription_text
            .as_deref()
            .is_some_and(|t| t.starts_with("Hi Priya"))
    );
}

#[test]
fn any_order_and_duplicates_converge() {
    for events in [outbound(), voicemail()] {
        let expected = CallLeg::fold(&events);
        // Every rotation, reversed, and with every event duplicated.
        for shift in 0..events.len() {
            let mut rotated = events.clone();
            rotated.rotate_left(shift);
            assert_eq!(CallLeg::fold(&rotated), expected);
            rotated.reverse();
            rotated.extend(events.iter().cloned());
            assert_eq!(CallLeg::fold(&rotated), expected);
        }
    }
}

#[test]
fn a_snapshot_stands_for_its_log() {
    for events in [outbound(), voicemail()] {
        let leg = CallLeg::fold(&events).expect("events");
        let snapshot = CallEvent::parse(&leg.snapshot_event(), "snapshot").expect("parses");
        assert_eq!(
            CallLeg::fold(std::slice::from_ref(&snapshot)),
            Some(leg.clone())
        );
        // Pruned after the first events: the rest folds onto the snapshot as onto the log.
        for cut in 1..events.len() {
            let early = CallLeg::fold(&events[..cut]).expect("events");
            let snapshot = CallEvent::parse(&early.snapshot_event(), "snapshot").expect("parses");
            let mut rest = vec![snapshot];
            rest.extend(events[cut..].iter().cloned());
            assert_eq!(
                CallLeg::fold(&rest),
                Some(leg.clone()),
                "pruned after {cut}"
            );
        }
    }
}

#[test]
fn repeated_states_and_hold_cycles_fold_to_the_latest() {
    // `docs/dialpad.md` §10.6: `connected` repeats after each hold; there is no "unhold".
    let base = outbound();
    let at = |event: &CallEvent, state: &str, ts: i64| {
        let mut value = serde_json::to_value(RawState { state, ts }).expect("json");
        value["call_id"] = serde_json::json!(event.call_id());
        CallEvent::parse(&value, &format!("{state}-{ts}")).expect("event")
    };
    let connected = &base[1];
    let mut events = vec![base[0].clone(), connected.clone()];
    events.push(at(connected, "hold", 1_795_104_100_000));
    let on_hold = CallLeg::fold(&events).expect("events");
    assert_eq!(on_hold.status, CallStatus::OnHold);
    events.push(at(connected, "connected", 1_795_104_120_000));
    events.push(at(connected, "hold", 1_795_104_130_000));
    events.push(at(connected, "connected", 1_795_104_140_000));
    let back = CallLeg::fold(&events).expect("events");
    assert_eq!(back.status, CallStatus::Connected);
    assert_eq!(
        back.connected_at,
        connected.date_connected.and_then(ms),
        "first connect kept"
    );
    events.push(base[2].clone());
    assert_eq!(
        CallLeg::fold(&events).expect("events").status,
        CallStatus::Completed
    );
}

#[derive(serde::Serialize)]
struct RawState<'a> {
    state: &'a str,
    #[serde(rename = "event_timestamp")]
    ts: i64,
}

#[test]
fn a_blocked_caller_id_is_kept_as_sent() {
    // `docs/dialpad.md` §10.13: `internal_number` can be the literal "blocked".
    let mut value: Value = serde_json::from_str(include_str!(
        "../../../../testdata/dialpad/call_outbound_03_hangup.json"
    ))
    .expect("JSON");
    value["internal_number"] = serde_json::json!("blocked");
    value["contact"] = serde_json::json!({});
    let leg = CallLeg::fold(&[CallEvent::parse(&value, "k").expect("event")]).expect("leg");
    assert_eq!(leg.from_number(), Some("blocked"));
    assert_eq!(leg.contact, None, "an empty contact is no contact");
}

#[test]
fn late_in_call_state_never_reopens_an_ended_leg() {
    let events = voicemail();
    let hangup_then_ringing = vec![events[3].clone(), events[0].clone()];
    let leg = CallLeg::fold(&hangup_then_ringing).expect("events");
    assert_eq!(leg.status, CallStatus::Missed);
    assert_eq!(leg.state, "hangup");
}

#[test]
fn live_states_map_to_status() {
    let outbound = outbound();
    let ringing = CallLeg::fold(&outbound[..1]).expect("events");
    assert_eq!(ringing.status, CallStatus::Ringing);
    assert_eq!(ringing.ended_at, None);
    let connected = CallLeg::fold(&outbound[..2]).expect("events");
    assert_eq!(connected.status, CallStatus::Connected);
    assert!(!connected.status.is_terminal());
}

#[test]
fn float_ids_are_refused_and_big_ids_are_exact() {
    let float = serde_json::json!({"call_id": 1.5, "state": "ringing"});
    assert!(CallEvent::parse(&float, "k").is_err());
    let edge = fixture(include_str!(
        "../../../../testdata/dialpad/call_edge_02_ids_above_2pow53.json"
    ));
    assert_eq!(edge.call_id(), 9_007_199_254_740_993);
    assert_eq!(edge.master_call_id, Some(9_007_199_254_740_995));
    assert_eq!(
        edge.target.and_then(|t| t.id).as_deref(),
        Some("9223372036854775807")
    );
}

/// Every fixture, and every fixture with each field replaced by each kind of JSON value, reads
/// the same from its text as from its `Value` (the worker reads the text).
#[test]
fn parse_text_reads_what_parse_reads() {
    use crate::sms::SmsEvent;
    let replacements = [
        serde_json::json!(null),
        serde_json::json!(true),
        serde_json::json!(0),
        serde_json::json!(-1.5),
        serde_json::json!(9_223_372_036_854_775_807_i64),
        serde_json::json!(""),
        serde_json::json!("12"),
        serde_json::json!("x"),
        serde_json::json!([]),
        serde_json::json!([1, "a", {}]),
        serde_json::json!({}),
        serde_json::json!({"id": 1, "type": "user"}),
    ];
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/dialpad");
    let mut payloads = Vec::new();
    for entry in std::fs::read_dir(dir).expect("fixtures") {
        let path = entry.expect("fixture").path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("fixture");
        let value: Value = serde_json::from_str(&text).expect("fixture is JSON");
        let object = value.as_object().expect("fixture is an object").clone();
        for field in object.keys() {
            for replacement in &replacements {
                let mut changed = object.clone();
                changed.insert(field.clone(), replacement.clone());
                payloads.push(Value::Object(changed));
            }
        }
        payloads.push(value);
    }
    payloads.extend([
        serde_json::json!([1, 2]),
        serde_json::json!("text"),
        serde_json::json!({"call_id": "12", "id": "12", "state": "hangup"}),
    ]);
    assert!(payloads.len() > 1_000, "{} payloads", payloads.len());
    for value in &payloads {
        let text = value.to_string();
        assert_eq!(
            format!("{:?}", CallEvent::parse_text(&text, "k")),
            format!("{:?}", CallEvent::parse(value, "k")),
            "{text}"
        );
        assert_eq!(
            format!("{:?}", SmsEvent::parse_text(&text, "k")),
            format!("{:?}", SmsEvent::parse(value, "k")),
            "{text}"
        );
    }
    // A repeated key: the last one counts, as jsonb keeps it.
    let repeated = r#"{"call_id": 1, "state": "ringing", "state": "hangup"}"#;
    let event = CallEvent::parse_text(repeated, "k").expect("reads");
    assert_eq!(event.state, Some(CallState::Hangup));
    assert_eq!(
        CallEvent::parse_text("not json", "k").map(|e| e.call_id()),
        Err(CallEventError::NotAnObject)
    );
}
