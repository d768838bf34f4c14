//! Resources as clients see them, where more than one service shows them: the api answers
//! with them and push bodies carry them as `data`, so both show the same JSON. Ids are
//! strings (exact for JavaScript), times RFC 3339 UTC with milliseconds, durations integer
//! milliseconds.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::logical_calls::{LogicalCallRow, VoicemailRow};
use crate::messages::MessageRow;

/// RFC 3339 UTC with milliseconds (`2026-11-19T16:00:00.112Z`), the API's one time format.
pub fn timestamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// [`timestamp`] of a time that may be unknown.
pub fn rfc3339(time: Option<DateTime<Utc>>) -> Option<String> {
    time.map(timestamp)
}

/// One phone call as clients see it: its legs aggregated (`domain::logical_call`). Ids are
/// strings, times RFC 3339 UTC, durations integer milliseconds.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = PhoneCall))]
pub struct PhoneCallView {
    /// The call's id: its root leg's `call_id` (any leg's id also finds it).
    pub call_id: String,
    /// `ringing`, `queued`, `connected`, `on_hold`, `completed`, `missed`, `voicemail`,
    /// `abandoned`.
    pub status: String,
    pub direction: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub started_at: Option<String>,
    /// First connect on a person (user) leg.
    pub answered_at: Option<String>,
    pub ended_at: Option<String>,
    /// `ended_at - answered_at`, ms.
    pub duration: Option<i64>,
    /// `ended_at - started_at`, ms.
    pub total_duration: Option<i64>,
    /// Summed over person legs, ms.
    pub talk_time: i64,
    pub hold_time: i64,
    pub transferred: bool,
    /// The target of the first person leg that connected: `{id, type, name, ...}`.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub first_answered_by: Option<Value>,
    /// The target of the last person leg that connected.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub final_handler: Option<Value>,
    pub voicemail: bool,
    pub was_recorded: bool,
    /// Dialpad's contact (the other party), as on its root leg.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub contact: Option<Value>,
    /// Dialpad's target, as on its root leg.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub target: Option<Value>,
    /// How many Dialpad legs (`call_id`s) the call has.
    pub leg_count: i32,
    pub last_event_at: Option<String>,
    /// Dialpad's recording link, from the leg that recorded.
    pub recording_url: Option<String>,
    /// Dialpad's MOS call-quality score (1-5), from the answered person leg.
    pub mos_score: Option<f64>,
}

impl From<LogicalCallRow> for PhoneCallView {
    fn from(call: LogicalCallRow) -> Self {
        PhoneCallView {
            call_id: call.logical_call_id.to_string(),
            status: call.status,
            direction: call.direction,
            from: call.from_number,
            to: call.to_number,
            started_at: rfc3339(call.started_at),
            answered_at: rfc3339(call.answered_at),
            ended_at: rfc3339(call.ended_at),
            duration: call.duration_ms,
            total_duration: call.total_duration_ms,
            talk_time: call.talk_time_ms,
            hold_time: call.hold_time_ms,
            transferred: call.transferred,
            first_answered_by: call.first_answered_by,
            final_handler: call.final_handler,
            voicemail: call.voicemail,
            was_recorded: call.was_recorded,
            contact: call.contact,
            target: call.target,
            leg_count: call.leg_count,
            last_event_at: rfc3339(call.last_event_at),
            recording_url: call.recording_url,
            mos_score: call.mos_score,
        }
    }
}

/// One SMS or MMS, folded from its events (a delivery update updates its message). Ids are
/// strings, times RFC 3339 UTC.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = Message))]
pub struct MessageView {
    /// Dialpad's message id.
    pub message_id: String,
    /// `inbound` or `outbound`.
    pub direction: Option<String>,
    pub from: Option<String>,
    /// Every recipient (E.164).
    pub to: Vec<String>,
    pub text: Option<String>,
    pub mms: bool,
    pub mms_url: Option<String>,
    /// `pending`, `success` or `failed` (Dialpad's `message_status`).
    pub status: Option<String>,
    /// Dialpad's `message_delivery_result`, when it reported one.
    pub delivery_result: Option<String>,
    pub is_internal: Option<bool>,
    /// The Dialpad user who sent it.
    pub sender_id: Option<String>,
    /// Dialpad's target: `{id, type, name, phone, email, ...}`.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub target: Option<Value>,
    /// Dialpad's contact (the other party).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub contact: Option<Value>,
    pub sent_at: Option<String>,
    /// When its delivery status last changed.
    pub status_updated_at: Option<String>,
    /// How many events were folded into it.
    pub event_count: i32,
}

impl From<MessageRow> for MessageView {
    fn from(message: MessageRow) -> Self {
        MessageView {
            message_id: message.message_id.to_string(),
            direction: message.direction,
            from: message.from_number,
            to: message.to_numbers,
            text: message.text,
            mms: message.mms,
            mms_url: message.mms_url,
            status: message.message_status,
            delivery_result: message.delivery_result,
            is_internal: message.is_internal,
            sender_id: message.sender_id,
            target: message.target,
            contact: message.contact,
            sent_at: rfc3339(message.sent_at),
            status_updated_at: rfc3339(message.status_updated_at),
            event_count: message.event_count,
        }
    }
}

/// One voicemail: a leg that went to voicemail, with its transcript once it arrived.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = Voicemail))]
pub struct VoicemailView {
    /// The leg's Dialpad `call_id`.
    pub call_id: String,
    /// The phone call it belongs to (`GET /api/calls/{call_id}`).
    pub logical_call_id: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    /// Dialpad's contact (the caller).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub contact: Option<Value>,
    /// Dialpad's target (whose voicemail box).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub target: Option<Value>,
    /// Length in milliseconds.
    pub duration: Option<i64>,
    /// Dialpad's link to the recording.
    pub link: Option<String>,
    pub recording_id: Option<String>,
    pub transcription_text: Option<String>,
    pub left_at: Option<String>,
}

impl From<VoicemailRow> for VoicemailView {
    fn from(voicemail: VoicemailRow) -> Self {
        VoicemailView {
            call_id: voicemail.call_id.to_string(),
            logical_call_id: voicemail.logical_call_id.map(|id| id.to_string()),
            from: voicemail.from_number,
            to: voicemail.to_number,
            contact: voicemail.contact,
            target: voicemail.target,
            duration: voicemail.duration_ms,
            link: voicemail.link,
            recording_id: voicemail.recording_id,
            transcription_text: voicemail.transcription_text,
            left_at: rfc3339(voicemail.left_at),
        }
    }
}
