//! Call events and the call-leg fold.
//!
//! Dialpad sends one event per state transition of a call *leg* (each leg has its own `call_id`;
//! one phone call can be several legs, `docs/dialpad.md` §4.4). Events of a leg arrive late, out of order and
//! duplicated (<https://developers.dialpad.com/docs/webhook-delivery-failures>), and post-call
//! states (`recording`, `recap_*`, `transcription`, ...) arrive minutes after `hangup`.
//!
//! # The merge rule
//!
//! A leg's row is a pure function of the *set* of its events, computed by [`CallLeg::fold`]:
//!
//! 1. Events are ordered by `event_timestamp` (Dialpad's clock), then by lifecycle phase
//!    (in-call < `hangup` < post-call), then by state name and content key, so the order never
//!    depends on arrival. Duplicates (same content key) count once.
//! 2. Walking that order, a field takes the value of the latest event that carries it: an event
//!    that lacks a field (`null`, absent, `{}`, `[]`, or a `0` duration) never erases it.
//! 3. `status` is derived from the accumulated facts, not from the last event: once the leg has
//!    ended (a `hangup` or any post-call state was seen) it is terminal (`completed` if it was
//!    ever connected, else `voicemail` if a voicemail was left, else `missed`) and an in-call
//!    state that arrives late (a retried `ringing`) never reopens it.
//!
//! Because the row depends only on the set of events, replays, retries, reordering and racing
//! workers all converge on the row that in-order, exactly-once processing gives.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use crate::json;

mod fold;

pub(crate) use fold::latest;
mod state;
mod status;

pub use state::{CallState, Direction, SUBSCRIBED, SUBSCRIBED_CALL_STATES, TargetType};
pub use status::CallStatus;

/// A call event that can never apply: its identity is unusable. Permanent: the same payload
/// fails the same way on every attempt. The messages name no value, so failures group by them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallEventError {
    #[error("call event is not a JSON object")]
    NotAnObject,
    #[error("call event has no usable call_id (an int64, or a string of digits)")]
    UnusableCallId,
    #[error("call event has no usable state (a string of 1 to 64 bytes)")]
    UnusableState,
}

/// One party of a call: Dialpad's `contact` (the external party) or `target` (the Dialpad user,
/// office, department or call center).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Party {
    /// Kept as text: an int64 in call events, a string in other Dialpad APIs
    /// ([`crate::json::id_text`]).
    #[serde(default, deserialize_with = "json::id_text")]
    pub id: Option<String>,
    #[serde(default, rename = "type", deserialize_with = "json::token")]
    pub kind: Option<String>,
    #[serde(default, deserialize_with = "json::text")]
    pub name: Option<String>,
    /// `phone` on call events (SMS events name it `phone_number`).
    #[serde(default, alias = "phone_number", deserialize_with = "json::text")]
    pub phone: Option<String>,
    #[serde(default, deserialize_with = "json::text")]
    pub email: Option<String>,
}

impl Party {
    /// No id, name or phone: Dialpad's `{}` or an all-null object.
    pub fn is_empty(&self) -> bool {
        self.id.is_none() && self.name.is_none() && self.phone.is_none()
    }
}

/// What a retention snapshot adds to Dialpad's fields.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
struct SnapshotFacts {
    /// How many events the pruned log had.
    event_count: i32,
    /// A voicemail state was seen (a leg can be `voicemail` before any link arrives).
    voicemail_left: bool,
}

/// An entry of `recording_details`; `duration` and `start_time` are milliseconds.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RecordingDetail {
    #[serde(default, deserialize_with = "json::text")]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "json::int")]
    pub duration: Option<i64>,
    #[serde(default, deserialize_with = "json::token")]
    pub recording_type: Option<String>,
    #[serde(default, deserialize_with = "json::text")]
    pub url: Option<String>,
}

/// A Dialpad call event, typed. Field names and units follow Dialpad's payload (`docs/dialpad.md` §4.3):
/// every `date_*` and `event_timestamp` is epoch **milliseconds** UTC; `duration` and
/// `total_duration` are **float milliseconds**; `talk_time`/`hold_time` are milliseconds.
#[derive(Debug, Clone, Deserialize)]
pub struct CallEvent {
    /// Dialpad's `call_id` ([`json::identity_field`]): always `Some` once [`CallEvent::parse`]
    /// or [`CallEvent::parse_text`] has returned the event.
    #[serde(default, deserialize_with = "json::identity_field")]
    call_id: Option<i64>,
    #[serde(default, deserialize_with = "call_state")]
    pub state: Option<CallState>,
    /// `inbound` or `outbound`; another value is kept as it is.
    #[serde(default, deserialize_with = "json::token")]
    pub direction: Option<String>,
    #[serde(default, deserialize_with = "json::text")]
    pub external_number: Option<String>,
    #[serde(default, deserialize_with = "json::text")]
    pub internal_number: Option<String>,
    #[serde(default, deserialize_with = "json::int")]
    pub master_call_id: Option<i64>,
    #[serde(default, deserialize_with = "json::int")]
    pub entry_point_call_id: Option<i64>,
    #[serde(default, deserialize_with = "json::int")]
    pub operator_call_id: Option<i64>,
    #[serde(default, deserialize_with = "json::int")]
    pub date_started: Option<i64>,
    #[serde(default, deserialize_with = "json::int")]
    pub date_rang: Option<i64>,
    #[serde(default, deserialize_with = "json::int")]
    pub date_queued: Option<i64>,
    #[serde(default, deserialize_with = "json::int")]
    pub date_connected: Option<i64>,
    #[serde(default, deserialize_with = "json::int")]
    pub date_ended: Option<i64>,
    #[serde(default, deserialize_with = "json::float")]
    pub duration: Option<f64>,
    #[serde(default, deserialize_with = "json::float")]
    pub total_duration: Option<f64>,
    #[serde(default, deserialize_with = "json::float")]
    pub talk_time: Option<f64>,
    #[serde(default, deserialize_with = "json::float")]
    pub hold_time: Option<f64>,
    #[serde(default, deserialize_with = "json::int")]
    pub event_timestamp: Option<i64>,
    #[serde(default, deserialize_with = "json::flag")]
    pub was_recorded: Option<bool>,
    #[serde(default, deserialize_with = "json::flag")]
    pub is_transferred: Option<bool>,
    #[serde(default, deserialize_with = "json::float")]
    pub mos_score: Option<f64>,
    #[serde(default, deserialize_with = "json::object")]
    pub contact: Option<Party>,
    #[serde(default, deserialize_with = "json::object")]
    pub target: Option<Party>,
    #[serde(default, deserialize_with = "json::text")]
    pub voicemail_link: Option<String>,
    #[serde(default, deserialize_with = "json::list")]
    pub recording_details: Option<Vec<RecordingDetail>>,
    /// Legacy list of recording URLs; `recording_details` is preferred (`docs/dialpad.md` §4.3).
    #[serde(default, deserialize_with = "json::list")]
    pub recording_url: Option<Vec<String>>,
    #[serde(default, deserialize_with = "json::text")]
    pub transcription_text: Option<String>,
    #[serde(default, deserialize_with = "json::text")]
    pub custom_data: Option<String>,
    #[serde(default, deserialize_with = "json::text")]
    pub voicemail_recording_id: Option<String>,
    /// Who transferred this leg (`{}` when nobody did).
    #[serde(default, deserialize_with = "json::object")]
    pub transferred_from: Option<Party>,
    /// Dialpad Ai recap pieces, on the `recap_*` states.
    #[serde(default, deserialize_with = "json::text")]
    pub recap_summary: Option<String>,
    #[serde(default, deserialize_with = "json::text")]
    pub recap_outcome: Option<String>,
    #[serde(default, deserialize_with = "json::value")]
    pub recap_action_items: Option<Value>,
    #[serde(default, deserialize_with = "json::value")]
    pub recap_purposes: Option<Value>,
    /// Only in retention snapshots ([`CallLeg::snapshot_event`]): facts a leg's row keeps that
    /// no Dialpad field carries.
    #[serde(default, rename = "x_cti_snapshot", deserialize_with = "json::object")]
    snapshot: Option<SnapshotFacts>,
    /// Content key of the stored event ([`crate::event::dedupe_key`]): the last tie-breaker of the
    /// fold order, so that order never depends on arrival.
    #[serde(skip)]
    content_key: String,
}

impl CallEvent {
    /// Reads a call event from a verified payload with the tolerant reader (`crate::json`):
    /// only `call_id` and `state` must be usable; any other field that cannot be read is absent.
    /// `content_key` is the event's dedupe key.
    ///
    /// # Errors
    /// [`CallEventError`] when the payload is not an object, `call_id` is not an int64 (or a
    /// string of digits), or `state` is not a string of 1 to 64 bytes.
    pub fn parse(payload: &Value, content_key: &str) -> Result<Self, CallEventError> {
        if !payload.is_object() {
            return Err(CallEventError::NotAnObject);
        }
        // Every field is read leniently, so an object always reads.
        let event = CallEvent::deserialize(payload).map_err(|_| CallEventError::NotAnObject)?;
        event.identified(content_key)
    }

    /// [`CallEvent::parse`] straight from the payload's JSON text, without building a
    /// `serde_json::Value` tree first (the worker reads every event of a leg's log on each
    /// change, so this is its hot path). Same result as `parse` of the text's value.
    ///
    /// # Errors
    /// As [`CallEvent::parse`]; text that is not JSON is [`CallEventError::NotAnObject`].
    pub fn parse_text(payload: &str, content_key: &str) -> Result<Self, CallEventError> {
        match json::object_text::<CallEvent>(payload) {
            Some(json::ObjectText::Typed(event)) => event.identified(content_key),
            Some(json::ObjectText::Value(value)) => CallEvent::parse(&value, content_key),
            None => Err(CallEventError::NotAnObject),
        }
    }

    /// Checks the identity fields of a read event and sets its content key.
    fn identified(mut self, content_key: &str) -> Result<Self, CallEventError> {
        if self.call_id.is_none() {
            return Err(CallEventError::UnusableCallId);
        }
        if self.state.is_none() {
            return Err(CallEventError::UnusableState);
        }
        content_key.clone_into(&mut self.content_key);
        Ok(self)
    }

    /// This leg's Dialpad `call_id`.
    pub fn call_id(&self) -> i64 {
        // Always `Some` in an event the parsers returned.
        self.call_id.unwrap_or_default()
    }

    fn state(&self) -> &str {
        self.state.as_ref().map_or("", CallState::as_str)
    }

    fn phase(&self) -> Phase {
        self.state.as_ref().map_or(Phase::InCall, Phase::of)
    }

    fn call_recording(&self) -> Option<&RecordingDetail> {
        self.recording_details
            .iter()
            .flatten()
            .find(|d| d.recording_type.as_deref() != Some("voicemail") && d.url.is_some())
    }

    fn voicemail_recording(&self) -> Option<&RecordingDetail> {
        self.recording_details
            .iter()
            .flatten()
            .find(|d| d.recording_type.as_deref() == Some("voicemail"))
    }

    fn recording_link(&self) -> Option<String> {
        self.call_recording()
            .and_then(|d| d.url.clone())
            .or_else(|| self.recording_url.iter().flatten().next().cloned())
    }

    fn voicemail_recording_link(&self) -> Option<String> {
        self.voicemail_link
            .clone()
            .or_else(|| self.voicemail_recording().and_then(|d| d.url.clone()))
    }
}

/// Where a Dialpad state sits in a leg's life; states from
/// <https://developers.dialpad.com/docs/call-events> (the enum in Dialpad's `OpenAPI` spec, `docs/dialpad.md` §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    /// Before or during the conversation, including unknown future states.
    InCall,
    /// `hangup`: the leg ended (sent for every leg, answered or not).
    Ended,
    /// Artefacts delivered after the leg ended; they imply it ended.
    PostCall,
}

impl Phase {
    fn of(state: &CallState) -> Phase {
        use CallState as S;
        match state {
            S::Hangup => Phase::Ended,
            S::Recording
            | S::AdminRecording
            | S::CallTranscription
            | S::Transcription
            | S::VoicemailUploaded
            | S::RecapSummary
            | S::RecapActionItems
            | S::RecapOutcome
            | S::RecapPurposes
            | S::Postcall
            | S::Csat
            | S::Pcsat
            | S::Dispositions => Phase::PostCall,
            _ => Phase::InCall,
        }
    }
}

/// The state of one call leg after all of its events: one `calls` row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallLeg {
    pub call_id: i64,
    pub master_call_id: Option<i64>,
    pub entry_point_call_id: Option<i64>,
    pub operator_call_id: Option<i64>,
    /// `inbound` or `outbound`.
    pub direction: Option<String>,
    pub external_number: Option<String>,
    pub internal_number: Option<String>,
    /// The latest Dialpad state by `event_timestamp` (a late in-call state never replaces the
    /// state of an ended leg).
    pub state: String,
    pub status: CallStatus,
    pub started_at: Option<DateTime<Utc>>,
    pub rang_at: Option<DateTime<Utc>>,
    pub queued_at: Option<DateTime<Utc>>,
    pub connected_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    /// Dialpad's `duration`: float milliseconds, connected to ended.
    pub duration_ms: Option<f64>,
    /// Dialpad's `total_duration`: float milliseconds, including ring time.
    pub total_duration_ms: Option<f64>,
    /// Dialpad's `talk_time`, milliseconds (excludes hold).
    pub talk_time_ms: Option<i64>,
    /// Dialpad's `hold_time`, milliseconds.
    pub hold_time_ms: Option<i64>,
    pub was_recorded: bool,
    pub is_transferred: bool,
    pub mos_score: Option<f64>,
    pub recording_url: Option<String>,
    pub voicemail_link: Option<String>,
    /// Voicemail transcript (not the AI call transcript).
    pub transcription_text: Option<String>,
    pub contact: Option<Party>,
    pub target: Option<Party>,
    pub custom_data: Option<String>,
    pub recording_id: Option<String>,
    pub voicemail_recording_id: Option<String>,
    /// Length of the voicemail recording, milliseconds.
    pub voicemail_duration_ms: Option<i64>,
    pub transferred_from: Option<Party>,
    pub recap_summary: Option<String>,
    pub recap_outcome: Option<String>,
    pub recap_action_items: Option<Value>,
    pub recap_purposes: Option<Value>,
    /// `event_timestamp` of the newest event folded in.
    pub last_event_at: Option<DateTime<Utc>>,
    /// How many distinct events were folded in.
    pub event_count: i32,
}

impl CallLeg {
    /// The leg's direction, typed.
    pub fn direction(&self) -> Option<Direction> {
        self.direction.as_deref().map(Direction::from)
    }

    /// The calling party: the external number on inbound legs, the internal one on outbound.
    pub fn from_number(&self) -> Option<&str> {
        match self.direction() {
            Some(Direction::Outbound) => self.internal_number.as_deref(),
            _ => self.external_number.as_deref(),
        }
    }

    /// The called party (see [`CallLeg::from_number`]).
    pub fn to_number(&self) -> Option<&str> {
        match self.direction() {
            Some(Direction::Outbound) => self.external_number.as_deref(),
            _ => self.internal_number.as_deref(),
        }
    }

    /// The leg this one hangs off in the call graph (`docs/dialpad.md` §4.4): its `entry_point_call_id`
    /// (the department/office/call-center leg it was rung from), else its `master_call_id`.
    /// `None` for a root leg. (`operator_call_id` points down, at a child.)
    pub fn parent_call_id(&self) -> Option<i64> {
        self.entry_point_call_id
            .or(self.master_call_id)
            .filter(|parent| *parent != self.call_id)
    }

    /// Whether a person (a Dialpad user) is on this leg, rather than a group (office,
    /// department, call center) that rings people on legs of their own.
    pub fn is_person_leg(&self) -> bool {
        self.target
            .as_ref()
            .and_then(|t| t.kind.as_deref())
            .is_none_or(|kind| TargetType::from(kind) == TargetType::User)
    }

    /// The leg as one call event, for retention: when a leg's event log is pruned, this event
    /// replaces it, so a (very) late event still folds onto everything known. It carries every
    /// field in Dialpad's shape, `event_timestamp` = the newest folded event's, and
    /// `content_key` as its identity. `fold([snapshot])` gives this leg back, and events
    /// folded with it give what they would have given with the whole log.
    pub fn snapshot_event(&self) -> Value {
        let ms = |t: Option<DateTime<Utc>>| t.map(|t| t.timestamp_millis());
        let party = |p: &Option<Party>| {
            p.as_ref().map(|p| {
                serde_json::json!({
                    "id": p.id, "type": p.kind, "name": p.name, "phone": p.phone, "email": p.email,
                })
            })
        };
        let mut details = Vec::new();
        if self.recording_url.is_some() {
            details.push(serde_json::json!({
                "id": self.recording_id, "recording_type": "callrecording", "url": self.recording_url,
            }));
        }
        if self.voicemail_link.is_some() || self.voicemail_recording_id.is_some() {
            details.push(serde_json::json!({
                "id": self.voicemail_recording_id, "recording_type": "voicemail",
                "url": self.voicemail_link, "duration": self.voicemail_duration_ms,
            }));
        }
        serde_json::json!({
            "call_id": self.call_id,
            "state": self.state,
            "master_call_id": self.master_call_id,
            "entry_point_call_id": self.entry_point_call_id,
            "operator_call_id": self.operator_call_id,
            "direction": self.direction,
            "external_number": self.external_number,
            "internal_number": self.internal_number,
            "date_started": ms(self.started_at),
            "date_rang": ms(self.rang_at),
            "date_queued": ms(self.queued_at),
            "date_connected": ms(self.connected_at),
            "date_ended": ms(self.ended_at),
            "duration": self.duration_ms,
            "total_duration": self.total_duration_ms,
            "talk_time": self.talk_time_ms,
            "hold_time": self.hold_time_ms,
            "event_timestamp": ms(self.last_event_at),
            "was_recorded": self.was_recorded,
            "is_transferred": self.is_transferred,
            "mos_score": self.mos_score,
            "contact": party(&self.contact),
            "target": party(&self.target),
            "transferred_from": party(&self.transferred_from),
            "voicemail_link": self.voicemail_link,
            "voicemail_recording_id": self.voicemail_recording_id,
            "recording_details": details,
            "transcription_text": self.transcription_text,
            "custom_data": self.custom_data,
            "recap_summary": self.recap_summary,
            "recap_outcome": self.recap_outcome,
            "recap_action_items": self.recap_action_items,
            "recap_purposes": self.recap_purposes,
            "x_cti_snapshot": SnapshotFacts {
                event_count: self.event_count,
                voicemail_left: self.status == CallStatus::Voicemail,
            },
        })
    }
}

/// A call `state` as the tolerant reader reads a token ([`json::token`]).
fn call_state<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<CallState>, D::Error> {
    Ok(json::token(de)?.as_deref().map(CallState::from))
}

/// An epoch-milliseconds time (Dialpad's unit).
pub(crate) fn ms(epoch_ms: i64) -> Option<DateTime<Utc>> {
    json::storable_time(epoch_ms)
}

#[cfg(test)]
mod tests;
