//! Dialpad's call vocabularies, typed: the call `state`, the leg `direction` and the
//! subscription `target_type`. Each is declared once, in a table that yields the enum, its
//! Dialpad spelling ([`CallState::as_str`]) and the list of known values, in Dialpad's order.
//! A value Dialpad adds later is kept as `Other(text)`, never refused.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Declares a Dialpad vocabulary: an enum with one variant per known value plus
/// `Other(String)`, `as_str`, `From<&str>`, the `KNOWN` list (in the order given) and serde as
/// the Dialpad string.
macro_rules! vocabulary {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )* }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )*
            /// A value this list does not know (one Dialpad added later), kept as sent.
            Other(String),
        }

        impl $name {
            /// Every known value, in Dialpad's documented order.
            pub const KNOWN: &'static [$name] = &[$($name::$variant),*];

            /// The Dialpad spelling, as stored and returned.
            pub const fn as_str(&self) -> &str {
                match self {
                    $( $name::$variant => $text, )*
                    $name::Other(text) => text.as_str(),
                }
            }

            /// Whether the value is one of [`Self::KNOWN`].
            pub fn is_known(&self) -> bool {
                !matches!(self, $name::Other(_))
            }
        }

        impl From<&str> for $name {
            fn from(text: &str) -> Self {
                match text {
                    $( $text => $name::$variant, )*
                    other => $name::Other(other.to_owned()),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
                Ok($name::from(String::deserialize(de)?.as_str()))
            }
        }
    };
}

vocabulary! {
    /// A Dialpad call state: every value of the `call_states` enum of Dialpad's `OpenAPI` spec
    /// (`docs/dialpad.md` §4.2, <https://developers.dialpad.com/docs/call-events>), in its
    /// (alphabetical) order. What each does to a leg is the table on
    /// [`CallStatus`](super::CallStatus). `All` is the subscription wildcard, not a payload
    /// state.
    pub enum CallState {
        Admin = "admin",
        AdminRecording = "admin_recording",
        AiPlaybook = "ai_playbook",
        All = "all",
        Barge = "barge",
        Blocked = "blocked",
        CallTranscription = "call_transcription",
        Calling = "calling",
        Connected = "connected",
        Csat = "csat",
        Dispositions = "dispositions",
        Eavesdrop = "eavesdrop",
        Hangup = "hangup",
        Hold = "hold",
        Merged = "merged",
        Missed = "missed",
        Monitor = "monitor",
        Parked = "parked",
        Pcsat = "pcsat",
        Postcall = "postcall",
        Preanswer = "preanswer",
        Queued = "queued",
        RecapActionItems = "recap_action_items",
        RecapOutcome = "recap_outcome",
        RecapPurposes = "recap_purposes",
        RecapSummary = "recap_summary",
        Recording = "recording",
        Ringing = "ringing",
        Takeover = "takeover",
        Transcription = "transcription",
        Voicemail = "voicemail",
        VoicemailUploaded = "voicemail_uploaded",
    }
}

vocabulary! {
    /// A call leg's `direction`.
    pub enum Direction {
        Inbound = "inbound",
        Outbound = "outbound",
    }
}

vocabulary! {
    /// Dialpad's subscription `target_type` enum (`docs/dialpad.md` §3.2), also the `type` of a
    /// call's `target`.
    pub enum TargetType {
        Callcenter = "callcenter",
        Callrouter = "callrouter",
        Channel = "channel",
        Coachinggroup = "coachinggroup",
        Coachingteam = "coachingteam",
        Department = "department",
        Office = "office",
        Room = "room",
        Staffgroup = "staffgroup",
        User = "user",
    }
}

/// The Dialpad spellings of `states`, at compile time (for `&[&str]` constants).
const fn names<const N: usize>(states: &'static [CallState; N]) -> [&'static str; N] {
    let mut out = [""; N];
    let mut i = 0;
    while i < N {
        out[i] = states[i].as_str();
        i += 1;
    }
    out
}

/// The call states we subscribe to by default (`POST /internal/subscriptions`): every state
/// whose meaning the status table and the leg fold use, from the enum of Dialpad's
/// `CreateCallEventSubscription.call_states` (`docs/dialpad.md` §4.2,
/// <https://developers.dialpad.com/reference/webhook_call_event_subscriptioncreate>).
/// Supervisor and admin states (`admin`, `barge`, `eavesdrop`, `monitor`, `takeover`,
/// `ai_playbook`) are left out: they say nothing about the call itself.
pub const SUBSCRIBED: &[CallState; 25] = &[
    CallState::Preanswer,
    CallState::Calling,
    CallState::Ringing,
    CallState::Queued,
    CallState::Connected,
    CallState::Hold,
    CallState::Merged,
    CallState::Parked,
    CallState::Blocked,
    CallState::Missed,
    CallState::Voicemail,
    CallState::Hangup,
    CallState::VoicemailUploaded,
    CallState::Recording,
    CallState::AdminRecording,
    CallState::CallTranscription,
    CallState::Transcription,
    CallState::RecapSummary,
    CallState::RecapActionItems,
    CallState::RecapOutcome,
    CallState::RecapPurposes,
    CallState::Postcall,
    CallState::Csat,
    CallState::Pcsat,
    CallState::Dispositions,
];

/// [`SUBSCRIBED`] as Dialpad spells it, for request bodies and docs.
pub const SUBSCRIBED_CALL_STATES: &[&str] = &names(SUBSCRIBED);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_reads_and_writes_as_dialpads_string() {
        for state in CallState::KNOWN {
            assert_eq!(&CallState::from(state.as_str()), state);
            assert_eq!(
                serde_json::to_value(state).expect("json"),
                serde_json::json!(state.as_str())
            );
        }
        let later = CallState::from("future_state");
        assert_eq!(later, CallState::Other("future_state".into()));
        assert_eq!(later.as_str(), "future_state");
        let read: CallState = serde_json::from_str("\"hangup\"").expect("json");
        assert_eq!(read, CallState::Hangup);
    }

    #[test]
    fn subscribed_states_are_known_and_spelled_alike() {
        assert!(SUBSCRIBED.iter().all(CallState::is_known));
        let spelled: Vec<&str> = SUBSCRIBED.iter().map(CallState::as_str).collect();
        assert_eq!(spelled, SUBSCRIBED_CALL_STATES);
    }
}
