//! Our status of a call leg and how Dialpad's states map onto it.

use super::CallState;

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
    pub(super) fn of_live_state(state: &CallState) -> Option<CallStatus> {
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
