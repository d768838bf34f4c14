//! SMS events and the message fold.
//!
//! Dialpad sends an event when a message is sent or received and, with `status: true` on the
//! subscription, another on each delivery-status change, **reusing the message `id`** (`docs/dialpad.md`
//! §5, §10.17, <https://developers.dialpad.com/docs/sms-events>). Field names differ from call
//! events: `contact.phone_number`, and `to_number` is an array.
//!
//! The merge rule is the call fold's: a message row is a pure function of the set of its
//! events, ordered by `event_timestamp`, then delivery progress (`pending` before a final
//! status), then content; a field takes the latest value that is present. So a status update
//! that arrives before the message itself still ends as the final status.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use crate::call::{Party, latest, ms};
use crate::json;

/// An SMS event could not be read.
/// Permanent, like [`crate::call::CallEventError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SmsEventError {
    #[error("SMS event is not a JSON object")]
    NotAnObject,
    #[error("SMS event has no usable id (an int64, or a string of digits)")]
    UnusableId,
}

/// One SMS event, as Dialpad sends it (epoch-ms times, int64 ids).
#[derive(Debug, Clone, Deserialize)]
pub struct SmsEvent {
    /// Dialpad's message `id` ([`json::identity_field`]): always `Some` once
    /// [`SmsEvent::parse`] or [`SmsEvent::parse_text`] has returned the event.
    #[serde(default, deserialize_with = "json::identity_field")]
    id: Option<i64>,
    #[serde(default, deserialize_with = "json::token")]
    pub direction: Option<String>,
    #[serde(default, deserialize_with = "json::text")]
    pub from_number: Option<String>,
    /// An array in Dialpad's payloads; a single string is accepted too.
    #[serde(default, deserialize_with = "json::texts")]
    pub to_number: Vec<String>,
    #[serde(default, deserialize_with = "json::text")]
    pub text: Option<String>,
    #[serde(default, deserialize_with = "json::text")]
    pub text_content: Option<String>,
    #[serde(default, deserialize_with = "json::flag")]
    pub mms: Option<bool>,
    #[serde(default, deserialize_with = "json::text")]
    pub mms_url: Option<String>,
    /// `pending`, `success` or `failed`.
    #[serde(default, deserialize_with = "json::token")]
    pub message_status: Option<String>,
    #[serde(default, deserialize_with = "json::text")]
    pub message_delivery_result: Option<String>,
    #[serde(default, deserialize_with = "json::flag")]
    pub is_internal: Option<bool>,
    /// Kept as text, like a party's id ([`json::id_text`]).
    #[serde(default, deserialize_with = "json::id_text")]
    pub sender_id: Option<String>,
    #[serde(default, deserialize_with = "json::object")]
    pub target: Option<Party>,
    #[serde(default, deserialize_with = "json::object")]
    pub contact: Option<Party>,
    #[serde(default, deserialize_with = "json::int")]
    pub created_date: Option<i64>,
    #[serde(default, deserialize_with = "json::int")]
    pub event_timestamp: Option<i64>,
    /// Only in retention snapshots ([`Message::snapshot_event`]).
    #[serde(default, rename = "x_cti_snapshot", deserialize_with = "json::object")]
    snapshot: Option<SnapshotFacts>,
    #[serde(skip)]
    content_key: String,
}

/// What a retention snapshot adds to Dialpad's fields.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
struct SnapshotFacts {
    event_count: i32,
    /// Epoch ms of the event that set the status.
    status_updated_at: Option<i64>,
}

impl SmsEvent {
    /// Reads an SMS event from a verified payload with the tolerant reader (`crate::json`):
    /// only `id` must be usable. `content_key` is the event's dedupe key.
    ///
    /// # Errors
    /// [`SmsEventError`] when the payload is not an object or `id` is not an int64 (or a
    /// string of digits).
    pub fn parse(payload: &Value, content_key: &str) -> Result<Self, SmsEventError> {
        if !payload.is_object() {
            return Err(SmsEventError::NotAnObject);
        }
        // Every field is read leniently, so an object always reads.
        let event = SmsEvent::deserialize(payload).map_err(|_| SmsEventError::NotAnObject)?;
        event.identified(content_key)
    }

    /// [`SmsEvent::parse`] straight from the payload's JSON text, without a `serde_json::Value`
    /// tree in between (as [`crate::call::CallEvent::parse_text`]).
    ///
    /// # Errors
    /// As [`SmsEvent::parse`]; text that is not JSON is [`SmsEventError::NotAnObject`].
    pub fn parse_text(payload: &str, content_key: &str) -> Result<Self, SmsEventError> {
        match json::object_text::<SmsEvent>(payload) {
            Some(json::ObjectText::Typed(event)) => event.identified(content_key),
            Some(json::ObjectText::Value(value)) => SmsEvent::parse(&value, content_key),
            None => Err(SmsEventError::NotAnObject),
        }
    }

    /// Checks the identity of a read event and sets its content key.
    fn identified(mut self, content_key: &str) -> Result<Self, SmsEventError> {
        if self.id.is_none() {
            return Err(SmsEventError::UnusableId);
        }
        content_key.clone_into(&mut self.content_key);
        Ok(self)
    }

    /// Dialpad's message id.
    pub fn message_id(&self) -> i64 {
        // Always `Some` in an event the parsers returned.
        self.id.unwrap_or_default()
    }

    /// Delivery progress: a final status sorts after `pending` at the same instant.
    fn progress(&self) -> u8 {
        match self.message_status.as_deref() {
            None | Some("pending") => 0,
            Some(_) => 1,
        }
    }
}

/// A message after all of its events: one `messages` row.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub message_id: i64,
    pub direction: Option<String>,
    pub from_number: Option<String>,
    pub to_numbers: Vec<String>,
    /// `text`, else `text_content` (absent without the `message_content_export` scope).
    pub text: Option<String>,
    pub mms: bool,
    pub mms_url: Option<String>,
    pub message_status: Option<String>,
    pub delivery_result: Option<String>,
    pub is_internal: Option<bool>,
    pub sender_id: Option<String>,
    pub target: Option<Party>,
    pub contact: Option<Party>,
    /// Dialpad's `created_date`.
    pub sent_at: Option<DateTime<Utc>>,
    /// `event_timestamp` of the event that set `message_status`.
    pub status_updated_at: Option<DateTime<Utc>>,
    /// `event_timestamp` of the newest event folded in.
    pub last_event_at: Option<DateTime<Utc>>,
    pub event_count: i32,
}

impl Message {
    /// The message as one SMS event, for retention (see `CallLeg::snapshot_event`):
    /// `fold([snapshot])` gives it back, and later events fold onto it as onto its log.
    pub fn snapshot_event(&self) -> Value {
        let ms = |t: Option<DateTime<Utc>>| t.map(|t| t.timestamp_millis());
        let party = |p: &Option<Party>| {
            p.as_ref().map(|p| {
                serde_json::json!({
                    "id": p.id, "type": p.kind, "name": p.name, "phone_number": p.phone,
                })
            })
        };
        serde_json::json!({
            "id": self.message_id,
            "direction": self.direction,
            "from_number": self.from_number,
            "to_number": self.to_numbers,
            "text": self.text,
            "mms": self.mms,
            "mms_url": self.mms_url,
            "message_status": self.message_status,
            "message_delivery_result": self.delivery_result,
            "is_internal": self.is_internal,
            "sender_id": self.sender_id,
            "target": party(&self.target),
            "contact": party(&self.contact),
            "created_date": ms(self.sent_at),
            "event_timestamp": ms(self.last_event_at),
            "x_cti_snapshot": SnapshotFacts {
                event_count: self.event_count,
                status_updated_at: ms(self.status_updated_at),
            },
        })
    }

    /// Folds all known events of one message (see the module docs); `None` for none.
    pub fn fold(events: &[SmsEvent]) -> Option<Message> {
        let mut ordered: Vec<&SmsEvent> = events.iter().collect();
        ordered.sort_by(|a, b| {
            (a.event_timestamp, a.progress(), &a.content_key).cmp(&(
                b.event_timestamp,
                b.progress(),
                &b.content_key,
            ))
        });
        ordered.dedup_by(|a, b| a.content_key == b.content_key);
        let first = ordered.first()?;
        let mut message = Message {
            message_id: first.message_id(),
            direction: None,
            from_number: None,
            to_numbers: Vec::new(),
            text: None,
            mms: false,
            mms_url: None,
            message_status: None,
            delivery_result: None,
            is_internal: None,
            sender_id: None,
            target: None,
            contact: None,
            sent_at: None,
            status_updated_at: None,
            last_event_at: None,
            event_count: 0,
        };
        for event in ordered {
            latest(&mut message.direction, event.direction.clone());
            latest(&mut message.from_number, event.from_number.clone());
            if !event.to_number.is_empty() {
                message.to_numbers.clone_from(&event.to_number);
            }
            latest(
                &mut message.text,
                event.text.clone().or_else(|| event.text_content.clone()),
            );
            message.mms |= event.mms.unwrap_or(false);
            latest(&mut message.mms_url, event.mms_url.clone());
            if event.message_status.is_some() {
                message.message_status.clone_from(&event.message_status);
                let set_at = match &event.snapshot {
                    Some(snapshot) => snapshot.status_updated_at,
                    None => event.event_timestamp,
                };
                message.status_updated_at = set_at.and_then(ms);
            }
            latest(
                &mut message.delivery_result,
                event.message_delivery_result.clone(),
            );
            latest(&mut message.is_internal, event.is_internal);
            latest(&mut message.sender_id, event.sender_id.clone());
            latest(
                &mut message.target,
                event.target.clone().filter(|p| !p.is_empty()),
            );
            latest(
                &mut message.contact,
                event.contact.clone().filter(|p| !p.is_empty()),
            );
            latest(&mut message.sent_at, event.created_date.and_then(ms));
            latest(
                &mut message.last_event_at,
                event.event_timestamp.and_then(ms),
            );
            message.event_count = message
                .event_count
                .saturating_add(event.snapshot.as_ref().map_or(1, |s| s.event_count));
        }
        Some(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::dedupe_key;

    fn event(json: &str) -> SmsEvent {
        let value: Value = serde_json::from_str(json).expect("JSON");
        let key = dedupe_key(value.as_object().expect("object"));
        SmsEvent::parse(&value, &key).expect("SMS event")
    }

    #[test]
    fn a_status_update_updates_its_message_in_any_order() {
        let pending = event(include_str!(
            "../../../testdata/dialpad/sms_outbound_01_pending.json"
        ));
        let success = event(include_str!(
            "../../../testdata/dialpad/sms_outbound_02_status_success.json"
        ));
        let message = Message::fold(&[pending.clone(), success.clone()]).expect("events");
        assert_eq!(message.message_id, 4_749_132_898_713_600);
        assert_eq!(message.message_status.as_deref(), Some("success"));
        assert_eq!(message.delivery_result.as_deref(), Some("accepted"));
        assert_eq!(message.to_numbers, ["+17185550164"]);
        assert_eq!(
            message.sent_at,
            DateTime::from_timestamp_millis(1_795_111_990_012)
        );
        assert_eq!(
            message.status_updated_at,
            DateTime::from_timestamp_millis(1_795_111_993_904)
        );
        assert_eq!(message.event_count, 2);
        assert_eq!(
            Message::fold(&[success.clone(), pending.clone(), success]),
            Some(message)
        );
    }

    #[test]
    fn a_snapshot_stands_for_its_log() {
        let pending = event(include_str!(
            "../../../testdata/dialpad/sms_outbound_01_pending.json"
        ));
        let success = event(include_str!(
            "../../../testdata/dialpad/sms_outbound_02_status_success.json"
        ));
        let whole = Message::fold(&[pending.clone(), success.clone()]).expect("events");
        let snapshot =
            |m: &Message| SmsEvent::parse(&m.snapshot_event(), "snapshot").expect("parses");
        assert_eq!(Message::fold(&[snapshot(&whole)]), Some(whole.clone()));
        let early = Message::fold(&[pending]).expect("event");
        assert_eq!(Message::fold(&[snapshot(&early), success]), Some(whole));
    }

    #[test]
    fn mms_text_and_names_are_kept_exactly() {
        let mms = event(include_str!(
            "../../../testdata/dialpad/sms_edge_04_unicode_mms.json"
        ));
        let message = Message::fold(&[mms]).expect("event");
        assert!(message.mms && message.mms_url.is_some());
        assert_eq!(
            message.text.as_deref(),
            Some("¡Gracias! 😊 Aquí está la foto del formulario — ¿está bien así?")
        );
        let name = message.contact.and_then(|c| c.name);
        assert_eq!(name.as_deref(), Some("Ana María Pérez 👩‍⚕️"));
        assert!(SmsEvent::parse(&serde_json::json!({"text": "no id"}), "k").is_err());
    }
}
