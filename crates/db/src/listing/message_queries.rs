//! The lists of messages and voicemails, and their counts.

use super::*;

fn message_conditions(app_id: Uuid, filter: &MessageFilter) -> Vec<Condition<messages::table>> {
    use messages::dsl as m;
    let mut conditions: Vec<Condition<messages::table>> = vec![Box::new(m::app_id.eq(app_id))];
    if let Some(direction) = &filter.direction {
        conditions.push(Box::new(
            m::direction.eq(direction.clone()).assume_not_null(),
        ));
    }
    if let Some(status) = &filter.status {
        conditions.push(Box::new(
            m::message_status.eq(status.clone()).assume_not_null(),
        ));
    }
    if let Some(from) = filter.from {
        conditions.push(Box::new(m::sent_at.ge(from).assume_not_null()));
    }
    if let Some(to) = filter.to {
        conditions.push(Box::new(m::sent_at.lt(to).assume_not_null()));
    }
    if let Some(number) = &filter.number {
        conditions.push(Box::new(
            m::from_number
                .eq(number.clone())
                .assume_not_null()
                .or(m::to_numbers.contains(vec![number.clone()])),
        ));
    }
    conditions
}

/// An app's messages, newest first (`sent_at`).
///
/// # Errors
/// [`DbError`] from the queries.
pub async fn messages(
    conn: &mut AsyncPgConnection,
    app_id: Uuid,
    filter: &MessageFilter,
    window: Window,
) -> Result<Page<MessageRow>, DbError> {
    use messages::dsl as m;
    let mut rows = messages::table.into_boxed();
    for condition in message_conditions(app_id, filter) {
        rows = rows.filter(condition);
    }
    if let Some(position) = window.after {
        rows = rows.filter(after("messages.sent_at", "messages.message_id", position));
    }
    let rows = rows
        .order((newest_first("messages.sent_at"), m::message_id.desc()))
        .limit(window.limit)
        .offset(window.offset)
        .select(MessageRow::as_select())
        .load(conn)
        .await?;
    let total = window.known_total(rows.len());
    Ok(Page { rows, total })
}

/// How many of an app's messages match `filter`.
///
/// # Errors
/// [`DbError`] from the query.
pub async fn count_messages(
    conn: &mut AsyncPgConnection,
    app_id: Uuid,
    filter: &MessageFilter,
) -> Result<i64, DbError> {
    let mut count = messages::table.into_boxed();
    for condition in message_conditions(app_id, filter) {
        count = count.filter(condition);
    }
    Ok(count.select(count_star()).first(conn).await?)
}

fn voicemail_conditions(app_id: Uuid, filter: &MessageFilter) -> Vec<Condition<voicemails::table>> {
    use voicemails::dsl as v;
    let mut conditions: Vec<Condition<voicemails::table>> = vec![Box::new(v::app_id.eq(app_id))];
    if let Some(from) = filter.from {
        conditions.push(Box::new(v::left_at.ge(from).assume_not_null()));
    }
    if let Some(to) = filter.to {
        conditions.push(Box::new(v::left_at.lt(to).assume_not_null()));
    }
    if let Some(number) = &filter.number {
        conditions.push(Box::new(
            v::from_number
                .eq(number.clone())
                .or(v::to_number.eq(number.clone()))
                .assume_not_null(),
        ));
    }
    conditions
}

/// An app's voicemails, newest first (`left_at`).
///
/// # Errors
/// [`DbError`] from the queries.
pub async fn voicemails(
    conn: &mut AsyncPgConnection,
    app_id: Uuid,
    filter: &MessageFilter,
    window: Window,
) -> Result<Page<VoicemailRow>, DbError> {
    use voicemails::dsl as v;
    let mut rows = voicemails::table.into_boxed();
    for condition in voicemail_conditions(app_id, filter) {
        rows = rows.filter(condition);
    }
    if let Some(position) = window.after {
        rows = rows.filter(after("voicemails.left_at", "voicemails.call_id", position));
    }
    let rows = rows
        .order((newest_first("voicemails.left_at"), v::call_id.desc()))
        .limit(window.limit)
        .offset(window.offset)
        .select(VoicemailRow::as_select())
        .load(conn)
        .await?;
    let total = window.known_total(rows.len());
    Ok(Page { rows, total })
}

/// How many of an app's voicemails match `filter`.
///
/// # Errors
/// [`DbError`] from the query.
pub async fn count_voicemails(
    conn: &mut AsyncPgConnection,
    app_id: Uuid,
    filter: &MessageFilter,
) -> Result<i64, DbError> {
    let mut count = voicemails::table.into_boxed();
    for condition in voicemail_conditions(app_id, filter) {
        count = count.filter(condition);
    }
    Ok(count.select(count_star()).first(conn).await?)
}
