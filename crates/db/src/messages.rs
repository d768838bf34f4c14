//! SMS/MMS messages (`messages`), one row per Dialpad message id, folded from all of its
//! events by `domain::sms::Message::fold` under the same per-id advisory lock as call legs.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
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

/// Inserts or replaces folded messages (one statement). Callers hold the messages' locks
/// (`calls::lock_legs`), and each row is the fold of every event, so replacing is correct.
///
/// # Errors
/// [`DbError`] from the query.
pub async fn upsert(conn: &mut AsyncPgConnection, rows: &[MessageRow]) -> Result<(), DbError> {
    use messages::dsl as m;
    if rows.is_empty() {
        return Ok(());
    }
    diesel::insert_into(messages::table)
        .values(rows)
        .on_conflict((m::app_id, m::message_id))
        .do_update()
        .set((
            m::direction.eq(excluded(m::direction)),
            m::from_number.eq(excluded(m::from_number)),
            m::to_numbers.eq(excluded(m::to_numbers)),
            m::text.eq(excluded(m::text)),
            m::mms.eq(excluded(m::mms)),
            m::mms_url.eq(excluded(m::mms_url)),
            m::message_status.eq(excluded(m::message_status)),
            m::delivery_result.eq(excluded(m::delivery_result)),
            m::is_internal.eq(excluded(m::is_internal)),
            m::sender_id.eq(excluded(m::sender_id)),
            m::target.eq(excluded(m::target)),
            m::contact.eq(excluded(m::contact)),
            m::sent_at.eq(excluded(m::sent_at)),
            m::status_updated_at.eq(excluded(m::status_updated_at)),
            m::last_event_at.eq(excluded(m::last_event_at)),
            m::event_count.eq(excluded(m::event_count)),
            m::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}
