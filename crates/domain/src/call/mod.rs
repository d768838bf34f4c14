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

mod state;

pub use state::{CallState, Direction, SUBSCRIBED, SUBSCRIBED_CALL_STATES, TargetType};

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
    /// Set by [`CallEvent::parse`] from [`json::identity`].
    #[serde(skip)]
    call_id: i64,
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
        let object = payload.as_object().ok_or(CallEventError::NotAnObject)?;
        let call_id = object
            .get("call_id")
            .and_then(json::identity)
            .ok_or(CallEventError::UnusableCallId)?;
        // Every field is read leniently, so only a non-object can fail here.
        let mut event = CallEvent::deserialize(payload).map_err(|_| CallEventError::NotAnObject)?;
        if event.state.is_none() {
            return Err(CallEventError::UnusableState);
        }
        event.call_id = call_id;
        content_key.clone_into(&mut event.content_key);
        Ok(event)
    }

    /// This leg's Dialpad `call_id`.
    pub fn call_id(&self) -> i64 {
        self.call_id
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

/// Our status of a call leg: the vocabulary clients filter on.
///
/// Every state Dialpad documents (the `call_states` enum of its `OpenAPI` spec, `docs/dialpad.md` §4.2,
/// <https://developers.dialpad.com/docs/call-events>), and what it does to a leg:
///
/// | Dialpad state | leg status while live | on the leg's end |
/// |---|---|---|
/// | `preanswer`, `calling`, `ringing` | `ringing` | |
/// | `queued` | `queued` | |
/// | `connected` (repeats after hold and transfer), `merged` | `connected` | |
/// | `hold` (no "unhold": ends at the next `connected` or `hangup`), `parked` | `on_hold` | |
/// | `missed` | `missed` | |
/// | `voicemail` | `voicemail` | marks a voicemail left |
/// | `hangup` (sent for every leg, answered or not) | | ends the leg |
/// | `voicemail_uploaded` (carries the link) | | ends the leg; a voicemail left |
/// | `transcription` (voicemail text), `recording`, `admin_recording`, `call_transcription`, `recap_summary`, `recap_action_items`, `recap_outcome`, `recap_purposes`, `postcall`, `csat`, `pcsat`, `dispositions` | | post-call: ends the leg, never reopens it |
/// | `blocked`, `admin`, `barge`, `eavesdrop`, `monitor`, `takeover`, `ai_playbook`, and states Dialpad adds later | keeps the current status | |
///
/// ("`all`" is a subscription wildcard, not a payload state.) An ended leg's status is
/// terminal and derived from what is known, not from the last state: `completed` if it was
/// ever connected, else `voicemail` if a voicemail was left, else `missed`. A whole phone call
/// can also be `abandoned` (`domain::logical_call`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CallStatus {
    /// Also the status of a leg before any event says otherwise.
    #[default]
    Ringing,
    Queued,
    Connected,
    OnHold,
    Completed,
    Missed,
    Voicemail,
}

impl CallStatus {
    /// The name stored in `calls.status` and returned by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Ringing => "ringing",
            CallStatus::Queued => "queued",
            CallStatus::Connected => "connected",
            CallStatus::OnHold => "on_hold",
            CallStatus::Completed => "completed",
            CallStatus::Missed => "missed",
            CallStatus::Voicemail => "voicemail",
        }
    }

    /// The status named by [`CallStatus::as_str`].
    pub fn parse(name: &str) -> Option<CallStatus> {
        Some(match name {
            "ringing" => CallStatus::Ringing,
            "queued" => CallStatus::Queued,
            "connected" => CallStatus::Connected,
            "on_hold" => CallStatus::OnHold,
            "completed" => CallStatus::Completed,
            "missed" => CallStatus::Missed,
            "voicemail" => CallStatus::Voicemail,
            _ => return None,
        })
    }

    /// Whether the leg is over; terminal statuses never regress.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            CallStatus::Completed | CallStatus::Missed | CallStatus::Voicemail
        )
    }

    /// The status a live (not yet ended) leg has after `state`; `None` keeps the previous one.
    fn of_live_state(state: &CallState) -> Option<CallStatus> {
        use CallState as S;
        Some(match state {
            S::Preanswer | S::Calling | S::Ringing => CallStatus::Ringing,
            S::Queued => CallStatus::Queued,
            S::Connected | S::Merged => CallStatus::Connected,
            S::Hold | S::Parked => CallStatus::OnHold,
            S::Missed => CallStatus::Missed,
            S::Voicemail => CallStatus::Voicemail,
            _ => return None,
        })
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

    /// Folds all known events of one leg into its row, following the module's merge rule.
    /// Returns `None` for an empty slice. All events must share one `call_id`.
    pub fn fold(events: &[CallEvent]) -> Option<CallLeg> {
        let mut ordered: Vec<&CallEvent> = events.iter().collect();
        ordered.sort_by(|a, b| fold_order(a).cmp(&fold_order(b)));
        ordered.dedup_by(|a, b| a.content_key == b.content_key);
        let first = ordered.first()?;

        let mut leg = CallLeg {
            call_id: first.call_id(),
            ..CallLeg::default()
        };
        let mut ended = false;
        let mut voicemail_left = false;
        let mut live_status = CallStatus::Ringing;

        for event in &ordered {
            let phase = event.phase();
            ended |= phase >= Phase::Ended;
            if !(ended && phase == Phase::InCall) {
                event.state().clone_into(&mut leg.state);
            }
            if let Some(status) = event.state.as_ref().and_then(CallStatus::of_live_state) {
                live_status = status;
            }
            voicemail_left |= matches!(
                event.state,
                Some(CallState::Voicemail | CallState::VoicemailUploaded)
            ) || event.snapshot.as_ref().is_some_and(|s| s.voicemail_left);

            latest(&mut leg.master_call_id, event.master_call_id);
            latest(&mut leg.entry_point_call_id, event.entry_point_call_id);
            latest(&mut leg.operator_call_id, event.operator_call_id);
            latest(&mut leg.direction, event.direction.clone());
            latest(&mut leg.external_number, event.external_number.clone());
            latest(&mut leg.internal_number, event.internal_number.clone());
            latest(&mut leg.started_at, event.date_started.and_then(ms));
            latest(&mut leg.rang_at, event.date_rang.and_then(ms));
            latest(&mut leg.queued_at, event.date_queued.and_then(ms));
            latest(&mut leg.connected_at, event.date_connected.and_then(ms));
            // `date_ended` can appear on a late in-call event (`docs/dialpad.md` §10.14): only an ended leg
            // has an end time.
            if phase >= Phase::Ended {
                latest(&mut leg.ended_at, event.date_ended.and_then(ms));
            }
            latest(&mut leg.duration_ms, event.duration.filter(|d| *d != 0.0));
            latest(
                &mut leg.total_duration_ms,
                event.total_duration.filter(|d| *d != 0.0),
            );
            latest(
                &mut leg.talk_time_ms,
                event.talk_time.filter(|d| *d != 0.0).map(round),
            );
            latest(
                &mut leg.hold_time_ms,
                event.hold_time.filter(|d| *d != 0.0).map(round),
            );
            leg.was_recorded |= event.was_recorded.unwrap_or(false);
            leg.is_transferred |= event.is_transferred.unwrap_or(false);
            latest(&mut leg.mos_score, event.mos_score);
            latest(&mut leg.recording_url, event.recording_link());
            latest(&mut leg.voicemail_link, event.voicemail_recording_link());
            latest(
                &mut leg.transcription_text,
                event.transcription_text.clone(),
            );
            latest(
                &mut leg.contact,
                event.contact.clone().filter(|p| !p.is_empty()),
            );
            latest(
                &mut leg.target,
                event.target.clone().filter(|p| !p.is_empty()),
            );
            latest(&mut leg.custom_data, event.custom_data.clone());
            latest(
                &mut leg.recording_id,
                event.call_recording().and_then(|d| d.id.clone()),
            );
            latest(
                &mut leg.voicemail_recording_id,
                event
                    .voicemail_recording_id
                    .clone()
                    .or_else(|| event.voicemail_recording().and_then(|d| d.id.clone())),
            );
            latest(
                &mut leg.voicemail_duration_ms,
                event.voicemail_recording().and_then(|d| d.duration),
            );
            latest(
                &mut leg.transferred_from,
                event.transferred_from.clone().filter(|p| !p.is_empty()),
            );
            latest(&mut leg.recap_summary, event.recap_summary.clone());
            latest(&mut leg.recap_outcome, event.recap_outcome.clone());
            latest(
                &mut leg.recap_action_items,
                event.recap_action_items.clone().filter(is_present),
            );
            latest(
                &mut leg.recap_purposes,
                event.recap_purposes.clone().filter(is_present),
            );
            latest(&mut leg.last_event_at, event.event_timestamp.and_then(ms));
            leg.event_count = leg
                .event_count
                .saturating_add(event.snapshot.as_ref().map_or(1, |s| s.event_count));
        }

        voicemail_left |= leg.voicemail_link.is_some();
        leg.status = if ended {
            if leg.connected_at.is_some() {
                CallStatus::Completed
            } else if voicemail_left {
                CallStatus::Voicemail
            } else {
                CallStatus::Missed
            }
        } else {
            live_status
        };
        // Dialpad reports 0 for durations of a leg that never connected: keep that as a known 0.
        if ended {
            leg.duration_ms.get_or_insert(0.0);
            leg.talk_time_ms.get_or_insert(0);
            leg.hold_time_ms.get_or_insert(0);
        }
        Some(leg)
    }
}

/// The fold's total order: Dialpad's clock, then lifecycle phase, then state, then content.
fn fold_order(event: &CallEvent) -> (i64, Phase, &str, &str) {
    (
        event.event_timestamp.unwrap_or(i64::MIN),
        event.phase(),
        event.state(),
        &event.content_key,
    )
}

/// A call `state` as the tolerant reader reads a token ([`json::token`]).
fn call_state<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<CallState>, D::Error> {
    Ok(json::token(de)?.as_deref().map(CallState::from))
}

/// A JSON value that says something: not `null`, `[]`, `{}` or `""`.
fn is_present(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Array(items) => !items.is_empty(),
        Value::Object(fields) => !fields.is_empty(),
        Value::String(text) => !text.is_empty(),
        _ => true,
    }
}

/// A later event's value replaces the current one; a missing value never erases it.
pub(crate) fn latest<T>(current: &mut Option<T>, incoming: Option<T>) {
    if incoming.is_some() {
        *current = incoming;
    }
}

/// An epoch-milliseconds time (Dialpad's unit).
pub(crate) fn ms(epoch_ms: i64) -> Option<DateTime<Utc>> {
    json::storable_time(epoch_ms)
}

fn round(value: f64) -> i64 {
    // Real durations are far below 2^53 ms, so the cast is exact after rounding; an absurd one
    // (1e308) saturates, as `as` does, rather than failing the event.
    value.round() as i64
}

#[cfg(test)]
mod tests {
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
                let snapshot =
                    CallEvent::parse(&early.snapshot_event(), "snapshot").expect("parses");
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
}
