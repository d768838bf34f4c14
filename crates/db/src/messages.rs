//! SMS/MMS messages (`messages`), one row per Dialpad message id, folded from all of its
//! events by `domain::sms::Message::fold` under the same per-id advisory lock as call legs.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::AsyncPgConnection;
use domain::sms::Message;
use serde_json::Value;
use uuid::Uuid;

use crate::DbError;
use crate::calls::{party_from_json, party_json};
use crate::schema::messages;

/// A `messages` row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = messages)]
pub struct MessageRow {
    pub app_id: Uuid,
    pub message_id: i64,
    pub direction: Option<String>,
    pub from_number: Option<String>,
    pub to_numbers: Vec<String>,
    pub text: Option<String>,
    pub mms: bool,
    pub mms_url: Option<String>,
    pub message_status: Option<String>,
    pub delivery_result: Option<String>,
    pub is_internal: Option<bool>,
    pub sender_id: Option<String>,
    pub target: Option<Value>,
    pub contact: Option<Value>,
    pub sent_at: Option<DateTime<Utc>>,
    pub status_updated_at: Option<DateTime<Utc>>,
    pub last_event_at: Option<DateTime<Utc>>,
    pub event_count: i32,
}

impl MessageRow {
    /// The row for a folded message of `app_id`.
    pub fn new(app_id: Uuid, message: Message) -> Self {
        MessageRow {
            app_id,
            message_id: message.message_id,
            direction: message.direction,
            from_number: message.from_number,
            to_numbers: message.to_numbers,
            text: message.text,
            mms: message.mms,
            mms_url: message.mms_url,
            message_status: message.message_status,
            delivery_result: message.delivery_result,
            is_internal: message.is_internal,
            sender_id: message.sender_id,
            target: message.target.as_ref().map(party_json),
            contact: message.contact.as_ref().map(party_json),
            sent_at: message.sent_at,
            status_updated_at: message.status_updated_at,
            last_event_at: message.last_event_at,
            event_count: message.event_count,
        }
    }

    /// The message this row was written from (parties come back from their JSON form).
    pub fn to_message(&self) -> Message {
        let party = party_from_json;
        Message {
            message_id: self.message_id,
            direction: self.direction.clone(),
            from_number: self.from_number.clone(),
            to_numbers: self.to_numbers.clone(),
            text: self.text.clone(),
            mms: self.mms,
            mms_url: self.mms_url.clone(),
            message_status: self.message_status.clone(),
            delivery_result: self.delivery_result.clone(),
            is_internal: self.is_internal,
            sender_id: self.sender_id.clone(),
            target: party(&self.target),
            contact: party(&self.contact),
            sent_at: self.sent_at,
            status_updated_at: self.status_updated_at,
            last_event_at: self.last_event_at,
            event_count: self.event_count,
        }
    }
}

crate::unnest::values_upsert! {
    /// The `messages` upsert: every column it writes, declared once. On a conflict every one of
    /// them but the key is replaced, and `updated_at` set to `now()`. (`to_numbers` is an
    /// array, so this is a `VALUES` insert, not an `unnest` one.)
    struct MessageUpsert for MessageRow;
    table: messages,
    conflict: [app_id, message_id],
    replace: [
        direction,
        from_number,
        to_numbers,
        text,
        mms,
        mms_url,
        message_status,
        delivery_result,
        is_internal,
        sender_id,
        target,
        contact,
        sent_at,
        status_updated_at,
        last_event_at,
        event_count,
    ]
}

/// Inserts or replaces folded messages (one statement); returns what changed, as
/// announcements for `push::announce` (`crate::push`). Callers hold the messages' locks
/// (`calls::lock_legs`), and each row is the fold of every event, so replacing is correct.
///
/// # Errors
/// [`DbError`] from the queries.
#[must_use = "the announcements must be written with push::announce"]
pub async fn upsert(
    conn: &mut AsyncPgConnection,
    rows: &[MessageRow],
) -> Result<Vec<crate::push::Announcement>, DbError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let announced = crate::push::subscribed_rows(conn, rows, |row| row.app_id).await?;
    let keys: Vec<(Uuid, i64)> = announced.iter().map(|m| (m.app_id, m.message_id)).collect();
    let before = crate::push::messages_before(conn, &keys).await?;
    MessageUpsert::execute(conn, rows).await?;
    crate::push::message_change_announcements(conn, &before, &announced).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upsert_writes_every_column_of_messages() {
        let missing = crate::unnest::columns_missing_from(
            "messages",
            MessageUpsert::COLUMNS,
            &["created_at", "updated_at", "push_sequence"],
        );
        assert!(
            missing.is_empty(),
            "not in the messages upsert: {missing:?}"
        );
    }
}
