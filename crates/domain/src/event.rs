//! Recognising a Dialpad event: its kind, type, Dialpad id, time, and the key it is stored under.
//!
//! Dialpad payloads carry no envelope, no event-type field and no company id (`docs/dialpad.md` §6.2,
//! <https://developers.dialpad.com/docs/event-subscriptions>): the kind is read from the shape of
//! the object, and the tenant comes from the URL the event was posted to, never from here.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::json;

/// What kind of Dialpad event a payload is, decided by its shape.
///
/// Stored in `webhook_events.kind` as [`EventKind::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum EventKind {
    /// Has the key `call_id` (<https://developers.dialpad.com/docs/call-events>). Whether it and
    /// `state` are usable is the worker's question: an unusable one is a dead letter with its
    /// reason, not an event silently classed as unknown.
    Call,
    /// Has the key `id`, no `call_id` or `state`, and `from_number`/`to_number`/`message_status`
    /// (<https://developers.dialpad.com/docs/sms-events>).
    Sms,
    /// Has `event` and `contact` (<https://developers.dialpad.com/docs/contact-events>).
    Contact,
    /// Has `availability_status`, `on_duty_status` or `call_center_ids`
    /// (<https://developers.dialpad.com/docs/agent-status-events>).
    AgentStatus,
    /// Anything else: stored and kept for operators, never an error.
    Unknown,
}

impl EventKind {
    /// Reads the kind from a payload's shape.
    pub fn classify(payload: &Map<String, Value>) -> Self {
        let has = |key: &str| payload.get(key).is_some_and(|v| !v.is_null());
        if payload.contains_key("call_id") {
            EventKind::Call
        } else if payload.contains_key("id")
            && !has("state")
            && (has("from_number") || has("to_number") || has("message_status"))
        {
            EventKind::Sms
        } else if has("event") && payload.contains_key("contact") {
            EventKind::Contact
        } else if has("availability_status") || has("on_duty_status") || has("call_center_ids") {
            EventKind::AgentStatus
        } else {
            EventKind::Unknown
        }
    }

    /// Every kind, for reading a stored name back ([`EventKind::parse`]).
    pub const ALL: [EventKind; 5] = [
        EventKind::Call,
        EventKind::Sms,
        EventKind::Contact,
        EventKind::AgentStatus,
        EventKind::Unknown,
    ];

    /// The kind named by [`EventKind::as_str`] (as stored in `webhook_events.kind`); `None` for
    /// any other name.
    pub fn parse(name: &str) -> Option<EventKind> {
        EventKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
    }

    /// The name stored in the database and shown to operators.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Call => "call",
            EventKind::Sms => "sms",
            EventKind::Contact => "contact",
            EventKind::AgentStatus => "agent_status",
            EventKind::Unknown => "unknown",
        }
    }
}

/// The queue-relevant facts of one event, read once at ingest.
#[derive(Debug, Clone, PartialEq)]
pub struct EventSummary {
    pub kind: EventKind,
    /// The call `state`, the SMS `message_status`, the contact `event`; `None` when absent or
    /// not a string of at most [`json::MAX_TOKEN_BYTES`].
    pub event_type: Option<String>,
    /// The Dialpad id the event is about: `call_id` for calls, `id` for SMS, read as the worker
    /// reads it ([`json::identity`]), so a leg's stored events are found by it.
    pub dialpad_id: Option<i64>,
    /// `event_timestamp`, epoch milliseconds UTC: Dialpad's clock for ordering events.
    pub event_timestamp_ms: Option<i64>,
    /// Hex SHA-256 of the canonical payload; see [`dedupe_key`].
    pub dedupe_key: String,
}

impl EventSummary {
    /// Summarises a verified payload.
    pub fn of(payload: &Map<String, Value>) -> Self {
        let kind = EventKind::classify(payload);
        let text = |key: &str| {
            payload
                .get(key)
                .and_then(Value::as_str)
                .filter(|text| text.len() <= json::MAX_TOKEN_BYTES)
                .map(str::to_owned)
        };
        let (event_type, id_field) = match kind {
            EventKind::Call => (text("state"), "call_id"),
            EventKind::Sms => (text("message_status"), "id"),
            EventKind::Contact => (text("event"), "id"),
            EventKind::AgentStatus => (text("availability_status"), "id"),
            EventKind::Unknown => (None, "id"),
        };
        EventSummary {
            kind,
            event_type,
            dialpad_id: payload.get(id_field).and_then(json::identity),
            event_timestamp_ms: payload.get("event_timestamp").and_then(json::int_of),
            dedupe_key: dedupe_key(payload),
        }
    }
}

/// The idempotency key of an event: hex SHA-256 of its canonical JSON (object keys sorted at
/// every level, no whitespace).
///
/// Content, not an id, because Dialpad has no event id and reuses ids across distinct events:
/// every state of a call shares its `call_id`, and SMS delivery updates reuse the message `id`
/// (`docs/dialpad.md` §5, §10.17). A retried delivery is byte-for-byte the same event, so it maps to the same
/// key; two distinct events differ at least in `event_timestamp` or state.
pub fn dedupe_key(payload: &Map<String, Value>) -> String {
    let mut canonical = Vec::with_capacity(1024);
    write_canonical(&mut canonical, &Value::Object(payload.clone()));
    hex::encode(Sha256::digest(&canonical))
}

/// Replaces U+0000 in every string and key with U+FFFD; returns whether anything changed.
///
/// Postgres cannot turn U+0000 into `text` or `jsonb` ("unsupported Unicode escape sequence"):
/// the domain rows (`jsonb` parties, text fields) would refuse an event carrying one on every
/// attempt. The character has no meaning in Dialpad's data; the dedupe key is computed before
/// this, from the event as signed.
pub fn replace_nul_characters(value: &mut Value) -> bool {
    const REPLACEMENT: &str = "\u{FFFD}";
    match value {
        Value::String(text) if text.contains('\0') => {
            *text = text.replace('\0', REPLACEMENT);
            true
        }
        Value::Array(items) => items.iter_mut().fold(false, |changed, item| {
            replace_nul_characters(item) | changed
        }),
        Value::Object(map) => {
            let mut changed = false;
            if map.keys().any(|key| key.contains('\0')) {
                *map = std::mem::take(map)
                    .into_iter()
                    .map(|(key, item)| (key.replace('\0', REPLACEMENT), item))
                    .collect();
                changed = true;
            }
            map.values_mut().fold(changed, |changed, item| {
                replace_nul_characters(item) | changed
            })
        }
        _ => false,
    }
}

fn write_canonical(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(Value::String(key.clone()).to_string().as_bytes());
                out.push(b':');
                write_canonical(out, item);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(out, item);
            }
            out.push(b']');
        }
        scalar => out.extend_from_slice(scalar.to_string().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!("test payloads are objects"),
        }
    }

    #[test]
    fn classifies_by_shape() {
        let call = object(json!({"call_id": 1, "state": "ringing"}));
        let sms = object(json!({"id": 2, "from_number": "+1", "message_status": "pending"}));
        let contact = object(json!({"event": "Created", "contact": {"id": 3}}));
        let agent = object(json!({"availability_status": "open", "id": 4}));
        let other = object(json!({"hello": "world"}));
        assert_eq!(EventKind::classify(&call), EventKind::Call);
        assert_eq!(EventKind::classify(&sms), EventKind::Sms);
        assert_eq!(EventKind::classify(&contact), EventKind::Contact);
        assert_eq!(EventKind::classify(&agent), EventKind::AgentStatus);
        assert_eq!(EventKind::classify(&other), EventKind::Unknown);
        // A call or message whose identity is broken is still one (a dead letter with its
        // reason), not an unknown event.
        let no_state = object(json!({"call_id": 1}));
        let null_id = object(json!({"call_id": null, "state": "hangup"}));
        let sms_null_id = object(json!({"id": null, "message_status": "pending"}));
        assert_eq!(EventKind::classify(&no_state), EventKind::Call);
        assert_eq!(EventKind::classify(&null_id), EventKind::Call);
        assert_eq!(EventKind::classify(&sms_null_id), EventKind::Sms);
    }

    #[test]
    fn summary_keeps_int64_ids_exact() {
        let payload = object(json!({
            "call_id": 9_007_199_254_740_993_i64, "state": "hangup", "event_timestamp": 1_795_115_471_700_i64
        }));
        let summary = EventSummary::of(&payload);
        assert_eq!(summary.kind, EventKind::Call);
        assert_eq!(summary.event_type.as_deref(), Some("hangup"));
        assert_eq!(summary.dialpad_id, Some(9_007_199_254_740_993));
        assert_eq!(summary.event_timestamp_ms, Some(1_795_115_471_700));
    }

    #[test]
    fn nul_characters_are_replaced_everywhere() {
        let mut value = json!({"a\u{0}": ["x\u{0}y", {"n": "\u{0}"}], "ok": "plain", "n": 1});
        assert!(replace_nul_characters(&mut value));
        assert_eq!(
            value,
            json!({"a\u{FFFD}": ["x\u{FFFD}y", {"n": "\u{FFFD}"}], "ok": "plain", "n": 1})
        );
        assert!(!replace_nul_characters(&mut value));
    }

    #[test]
    fn dedupe_key_ignores_key_order_but_not_content() {
        let a = object(json!({"id": 1, "message_status": "pending", "x": {"b": 1, "a": [1, 2]}}));
        let b = object(json!({"x": {"a": [1, 2], "b": 1}, "message_status": "pending", "id": 1}));
        let c = object(json!({"id": 1, "message_status": "success", "x": {"b": 1, "a": [1, 2]}}));
        assert_eq!(dedupe_key(&a), dedupe_key(&b));
        assert_ne!(dedupe_key(&a), dedupe_key(&c));
        assert_eq!(dedupe_key(&a).len(), 64);
    }
}
