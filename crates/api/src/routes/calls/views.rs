//! A leg and a phone call as clients see them.

use super::*;

/// One call leg as clients see it. Dialpad ids are int64 and are sent as strings so JavaScript
/// clients keep them exact; times are RFC 3339 UTC; durations are integer milliseconds.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = CallLeg)]
pub(crate) struct CallResponse {
    id: String,
    call_id: String,
    /// The phone call this leg belongs to (`GET /api/calls/{id}`).
    logical_call_id: Option<String>,
    master_call_id: Option<String>,
    entry_point_call_id: Option<String>,
    operator_call_id: Option<String>,
    /// `inbound` or `outbound`.
    direction: Option<String>,
    from: Option<String>,
    to: Option<String>,
    external_number: Option<String>,
    internal_number: Option<String>,
    /// Our status: `ringing`, `queued`, `connected`, `on_hold`, `completed`, `missed`, `voicemail`.
    status: String,
    /// The latest Dialpad state.
    state: String,
    started_at: Option<String>,
    rang_at: Option<String>,
    queued_at: Option<String>,
    connected_at: Option<String>,
    ended_at: Option<String>,
    /// Connected to ended, ms (Dialpad `duration`).
    duration: Option<i64>,
    /// Started to ended, ms (Dialpad `total_duration`).
    total_duration: Option<i64>,
    /// Talk time excluding hold, ms.
    talk_time: Option<i64>,
    /// Hold time, ms.
    hold_time: Option<i64>,
    was_recorded: bool,
    recording_url: Option<String>,
    voicemail_link: Option<String>,
    transcription_text: Option<String>,
    is_transferred: bool,
    mos_score: Option<f64>,
    /// Dialpad's target (the user, office, call center... the call was routed to): `{id,
    /// type, name, phone, email, ...}` as Dialpad sent it.
    #[schema(value_type = Option<Object>)]
    target: Option<Value>,
    /// Dialpad's contact (the other party): `{id, type, name, phone, email, ...}`.
    #[schema(value_type = Option<Object>)]
    contact: Option<Value>,
    custom_data: Option<String>,
    event_count: i32,
    last_event_at: Option<String>,
    updated_at: String,
}

fn millis(value: Option<f64>) -> Option<i64> {
    // Durations are far below 2^53 ms, so rounding then casting is exact.
    value.map(|ms| ms.round() as i64)
}

impl From<Call> for CallResponse {
    fn from(call: Call) -> Self {
        let (id, updated_at, call) = (call.id, call.updated_at, call.leg);
        CallResponse {
            id: id.to_string(),
            call_id: call.call_id.to_string(),
            logical_call_id: call.logical_call_id.map(|id| id.to_string()),
            master_call_id: call.master_call_id.map(|id| id.to_string()),
            entry_point_call_id: call.entry_point_call_id.map(|id| id.to_string()),
            operator_call_id: call.operator_call_id.map(|id| id.to_string()),
            direction: call.direction,
            from: call.from_number,
            to: call.to_number,
            external_number: call.external_number,
            internal_number: call.internal_number,
            status: call.status,
            state: call.state,
            started_at: rfc3339(call.started_at),
            rang_at: rfc3339(call.rang_at),
            queued_at: rfc3339(call.queued_at),
            connected_at: rfc3339(call.connected_at),
            ended_at: rfc3339(call.ended_at),
            duration: millis(call.duration_ms),
            total_duration: millis(call.total_duration_ms),
            talk_time: call.talk_time_ms,
            hold_time: call.hold_time_ms,
            was_recorded: call.was_recorded,
            recording_url: call.recording_url,
            voicemail_link: call.voicemail_link,
            transcription_text: call.transcription_text,
            is_transferred: call.is_transferred,
            mos_score: call.mos_score,
            target: call.target,
            contact: call.contact,
            custom_data: call.custom_data,
            event_count: call.event_count,
            last_event_at: rfc3339(call.last_event_at),
            updated_at: timestamp(updated_at),
        }
    }
}

/// One phone call as clients see it (shared with push bodies, which carry it as `data`).
pub(crate) use db::views::PhoneCallView as LogicalCallResponse;
