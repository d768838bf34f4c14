//! A sample body of each event, shaped exactly as real ones (`data` is a view of `crate::views`):
//! what `POST /api/webhooks/test` sends, and the examples of the OpenAPI document's `webhooks`.

use super::*;
use crate::views::rfc3339;

/// Id of the sample phone call (and of the sample message): recognisable, and no real
/// Dialpad id (those are 16 digits).
pub const SAMPLE_SUBJECT_ID: i64 = 1_000_000_000_000_001;

/// The body of a sample `event` with `webhook-id` `id`, as if announced at `now`:
/// `{id, event, callId, status, timestamp, sequence, data}`.
pub fn sample_body(event: PushEvent, id: Uuid, now: DateTime<Utc>) -> Value {
    let (status, data) = match event {
        PushEvent::SmsReceived | PushEvent::SmsSent | PushEvent::SmsStatusChanged => {
            let inbound = event == PushEvent::SmsReceived;
            let status = (event == PushEvent::SmsStatusChanged).then(|| "delivered".to_owned());
            (status.clone(), json!(sample_message(inbound, status, now)))
        }
        PushEvent::VoicemailCreated => (Some("voicemail".to_owned()), json!(sample_voicemail(now))),
        call_event => {
            let call = sample_call(call_event, now);
            (Some(call.status.clone()), json!(call))
        }
    };
    json!({
        "id": id.to_string(),
        "event": event.as_str(),
        "callId": SAMPLE_SUBJECT_ID.to_string(),
        "status": status,
        "timestamp": timestamp(now),
        "sequence": 1,
        "data": data,
    })
}

fn sample_call(event: PushEvent, now: DateTime<Utc>) -> PhoneCallView {
    let started = now - chrono::Duration::seconds(95);
    let answered = started + chrono::Duration::seconds(12);
    let (status, inbound, was_answered, ended, recorded) = match event {
        PushEvent::CallStarted | PushEvent::CallRinging => ("ringing", true, false, false, false),
        PushEvent::CallAnswered | PushEvent::CallStatusChanged => {
            ("connected", true, true, false, false)
        }
        PushEvent::CallMissed => ("missed", true, false, true, false),
        PushEvent::CallFailed => ("missed", false, false, true, false),
        PushEvent::CallRecordingReady => ("completed", true, true, true, true),
        _ => ("completed", true, true, true, false),
    };
    let agent = json!({"id": "5220070065635328", "type": "user", "name": "Sample Agent"});
    let ended_at = ended.then_some(now);
    PhoneCallView {
        call_id: SAMPLE_SUBJECT_ID.to_string(),
        status: status.to_owned(),
        direction: Some(if inbound { "inbound" } else { "outbound" }.to_owned()),
        from: Some(
            if inbound {
                "+15555550100"
            } else {
                "+15555550199"
            }
            .to_owned(),
        ),
        to: Some(
            if inbound {
                "+15555550199"
            } else {
                "+15555550100"
            }
            .to_owned(),
        ),
        started_at: Some(timestamp(started)),
        answered_at: was_answered.then(|| timestamp(answered)),
        ended_at: rfc3339(ended_at),
        duration: ended_at
            .filter(|_| was_answered)
            .map(|end| (end - answered).num_milliseconds()),
        total_duration: ended_at.map(|end| (end - started).num_milliseconds()),
        talk_time: if was_answered && ended { 83_000 } else { 0 },
        hold_time: 0,
        transferred: false,
        first_answered_by: was_answered.then(|| agent.clone()),
        final_handler: was_answered.then_some(agent),
        voicemail: false,
        was_recorded: recorded,
        contact: Some(
            json!({"id": "sample", "type": "contact", "name": "Sample Caller", "phone": "+15555550100"}),
        ),
        target: Some(
            json!({"id": "5220070065635328", "type": "user", "name": "Sample Agent", "phone": "+15555550199"}),
        ),
        leg_count: 1,
        last_event_at: Some(timestamp(now)),
        recording_url: recorded.then(|| "https://dialpad.com/r/sample".to_owned()),
        mos_score: None,
    }
}

fn sample_message(inbound: bool, status: Option<String>, now: DateTime<Utc>) -> MessageView {
    let (ours, theirs) = ("+15555550199", "+15555550100");
    MessageView {
        message_id: SAMPLE_SUBJECT_ID.to_string(),
        direction: Some(if inbound { "inbound" } else { "outbound" }.to_owned()),
        from: Some(if inbound { theirs } else { ours }.to_owned()),
        to: vec![if inbound { ours } else { theirs }.to_owned()],
        text: Some("This is a sample message.".to_owned()),
        mms: false,
        mms_url: None,
        status: status.clone(),
        delivery_result: status.map(|_| "success".to_owned()),
        is_internal: Some(false),
        sender_id: None,
        target: Some(json!({"id": "5220070065635328", "type": "user", "name": "Sample Agent"})),
        contact: Some(json!({"id": "sample", "type": "contact", "name": "Sample Contact"})),
        sent_at: Some(timestamp(now)),
        status_updated_at: Some(timestamp(now)),
        event_count: 1,
    }
}

fn sample_voicemail(now: DateTime<Utc>) -> VoicemailView {
    VoicemailView {
        call_id: SAMPLE_SUBJECT_ID.to_string(),
        logical_call_id: Some(SAMPLE_SUBJECT_ID.to_string()),
        from: Some("+15555550100".to_owned()),
        to: Some("+15555550199".to_owned()),
        contact: Some(json!({"id": "sample", "type": "contact", "name": "Sample Caller"})),
        target: Some(json!({"id": "5220070065635328", "type": "user", "name": "Sample Agent"})),
        duration: Some(21_000),
        link: Some("https://dialpad.com/v/sample".to_owned()),
        recording_id: Some("sample".to_owned()),
        transcription_text: Some("Hi, this is a sample voicemail.".to_owned()),
        left_at: Some(timestamp(now)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_has_a_sample_shaped_like_a_real_body() {
        let now = Utc::now();
        for event in PushEvent::ALL {
            let body = sample_body(*event, Uuid::nil(), now);
            assert_eq!(body["event"], event.as_str());
            assert_eq!(body["callId"], SAMPLE_SUBJECT_ID.to_string());
            let data = body["data"].as_object().expect("data is an object");
            let id_field = match event {
                PushEvent::SmsReceived | PushEvent::SmsSent | PushEvent::SmsStatusChanged => {
                    "message_id"
                }
                _ => "call_id",
            };
            assert_eq!(data[id_field], SAMPLE_SUBJECT_ID.to_string(), "{event:?}");
        }
        let missed = sample_body(PushEvent::CallMissed, Uuid::nil(), now);
        assert_eq!(missed["status"], "missed");
        assert_eq!(missed["data"]["direction"], "inbound");
        assert!(missed["data"]["answered_at"].is_null());
    }
}
