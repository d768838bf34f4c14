//! The lists of logical calls and legs, their counts, one call with its legs, and its raw events.

use super::*;

fn call_conditions(app_id: Uuid, filter: &CallFilter) -> Vec<Condition<logical_calls::table>> {
    use logical_calls::dsl as l;
    let mut conditions: Vec<Condition<logical_calls::table>> = vec![Box::new(l::app_id.eq(app_id))];
    if filter.live {
        conditions.push(condition(format!("logical_calls.{LIVE_STATUSES_SQL}")));
    }
    if let Some(direction) = &filter.direction {
        conditions.push(Box::new(
            l::direction.eq(direction.clone()).assume_not_null(),
        ));
    }
    if let Some(status) = &filter.status {
        conditions.push(Box::new(l::status.eq(status.clone())));
    }
    if let Some(from) = filter.from {
        conditions.push(Box::new(l::started_at.ge(from).assume_not_null()));
    }
    if let Some(to) = filter.to {
        conditions.push(Box::new(l::started_at.lt(to).assume_not_null()));
    }
    if let Some(number) = &filter.number {
        conditions.push(Box::new(
            l::from_number
                .eq(number.clone())
                .or(l::to_number.eq(number.clone()))
                .assume_not_null(),
        ));
    }
    // A leg of the call in that state, or with that target.
    if let Some(state) = &filter.state {
        conditions.push(Box::new(
            ShapeSql::<Bool>::new(
                "EXISTS (SELECT 1 FROM calls c WHERE c.app_id = logical_calls.app_id \
                 AND c.logical_call_id = logical_calls.logical_call_id AND c.state = ",
            )
            .then(Piece::Text(state.clone()))
            .sql(")"),
        ));
    }
    if let Some(target_id) = &filter.target_id {
        conditions.push(Box::new(
            ShapeSql::<Bool>::new(
                "EXISTS (SELECT 1 FROM calls c WHERE c.app_id = logical_calls.app_id \
                 AND c.logical_call_id = logical_calls.logical_call_id AND c.target_id = ",
            )
            .then(Piece::Text(target_id.clone()))
            .sql(")"),
        ));
    }
    conditions
}

fn leg_conditions(app_id: Uuid, filter: &CallFilter) -> Vec<Condition<calls::table>> {
    use calls::dsl as c;
    let mut conditions: Vec<Condition<calls::table>> = vec![Box::new(c::app_id.eq(app_id))];
    if filter.live {
        conditions.push(condition(format!("calls.{LIVE_STATUSES_SQL}")));
    }
    if let Some(direction) = &filter.direction {
        conditions.push(Box::new(
            c::direction.eq(direction.clone()).assume_not_null(),
        ));
    }
    if let Some(status) = &filter.status {
        conditions.push(Box::new(c::status.eq(status.clone())));
    }
    if let Some(state) = &filter.state {
        conditions.push(Box::new(c::state.eq(state.clone())));
    }
    if let Some(from) = filter.from {
        conditions.push(Box::new(c::started_at.ge(from).assume_not_null()));
    }
    if let Some(to) = filter.to {
        conditions.push(Box::new(c::started_at.lt(to).assume_not_null()));
    }
    if let Some(number) = &filter.number {
        conditions.push(Box::new(
            c::from_number
                .eq(number.clone())
                .or(c::to_number.eq(number.clone()))
                .assume_not_null(),
        ));
    }
    if let Some(target_id) = &filter.target_id {
        conditions.push(Box::new(
            c::target_id.eq(target_id.clone()).assume_not_null(),
        ));
    }
    conditions
}

/// An app's logical calls (phone calls), newest first.
///
/// # Errors
/// [`DbError`] from the queries.
pub async fn logical_calls(
    conn: &mut AsyncPgConnection,
    app_id: Uuid,
    filter: &CallFilter,
    window: Window,
) -> Result<Page<LogicalCallRow>, DbError> {
    use logical_calls::dsl as l;
    let mut rows = logical_calls::table.into_boxed();
    for condition in call_conditions(app_id, filter) {
        rows = rows.filter(condition);
    }
    if let Some(position) = window.after {
        rows = rows.filter(after(
            "logical_calls.started_at",
            "logical_calls.logical_call_id",
            position,
        ));
    }
    let rows = rows
        .order((
            newest_first("logical_calls.started_at"),
            l::logical_call_id.desc(),
        ))
        .limit(window.limit)
        .offset(window.offset)
        .select(LogicalCallRow::as_select())
        .load(conn)
        .await?;
    let total = window.known_total(rows.len());
    Ok(Page { rows, total })
}

/// An app's call legs, newest first.
///
/// # Errors
/// [`DbError`] from the queries.
pub async fn legs(
    conn: &mut AsyncPgConnection,
    app_id: Uuid,
    filter: &CallFilter,
    window: Window,
) -> Result<Page<Call>, DbError> {
    use calls::dsl as c;
    let mut rows = calls::table.into_boxed();
    for condition in leg_conditions(app_id, filter) {
        rows = rows.filter(condition);
    }
    if let Some(position) = window.after {
        rows = rows.filter(after("calls.started_at", "calls.call_id", position));
    }
    let rows = rows
        .order((newest_first("calls.started_at"), c::call_id.desc()))
        .limit(window.limit)
        .offset(window.offset)
        .select(Call::as_select())
        .load(conn)
        .await?;
    let total = window.known_total(rows.len());
    Ok(Page { rows, total })
}

/// How many of an app's logical calls match `filter`.
///
/// # Errors
/// [`DbError`] from the query.
pub async fn count_logical_calls(
    conn: &mut AsyncPgConnection,
    app_id: Uuid,
    filter: &CallFilter,
) -> Result<i64, DbError> {
    let mut count = logical_calls::table.into_boxed();
    for condition in call_conditions(app_id, filter) {
        count = count.filter(condition);
    }
    Ok(count.select(count_star()).first(conn).await?)
}

/// How many of an app's call legs match `filter`.
///
/// # Errors
/// [`DbError`] from the query.
pub async fn count_legs(
    conn: &mut AsyncPgConnection,
    app_id: Uuid,
    filter: &CallFilter,
) -> Result<i64, DbError> {
    let mut count = calls::table.into_boxed();
    for condition in leg_conditions(app_id, filter) {
        count = count.filter(condition);
    }
    Ok(count.select(count_star()).first(conn).await?)
}

/// The logical call a leg id (or a logical call id) belongs to, with its legs (oldest first).
/// `None` when the app has no such call.
///
/// # Errors
/// [`DbError`] from the queries.
pub async fn logical_call_with_legs(
    conn: &mut AsyncPgConnection,
    app_id: Uuid,
    call_id: i64,
) -> Result<Option<(LogicalCallRow, Vec<Call>)>, DbError> {
    use calls::dsl as c;
    use logical_calls::dsl as l;
    let via_leg: Option<Option<i64>> = calls::table
        .filter(c::app_id.eq(app_id))
        .filter(c::call_id.eq(call_id))
        .select(c::logical_call_id)
        .first(conn)
        .await
        .optional()?;
    let logical_call_id = via_leg.flatten().unwrap_or(call_id);
    let Some(call) = logical_calls::table
        .filter(l::app_id.eq(app_id))
        .filter(l::logical_call_id.eq(logical_call_id))
        .select(LogicalCallRow::as_select())
        .first(conn)
        .await
        .optional()?
    else {
        return Ok(None);
    };
    let legs = calls::table
        .filter(c::app_id.eq(app_id))
        .filter(c::logical_call_id.eq(logical_call_id))
        .order((c::started_at.asc().nulls_last(), c::call_id.asc()))
        .select(Call::as_select())
        .load(conn)
        .await?;
    Ok(Some((call, legs)))
}

/// Every stored event of the given legs (the raw timeline of a call), in Dialpad's order
/// (`event_timestamp`, then arrival). Retention snapshots are included: they stand for the
/// events they replaced.
///
/// # Errors
/// [`DbError`] from the query.
pub async fn call_events(
    conn: &mut AsyncPgConnection,
    app_id: Uuid,
    call_ids: &[i64],
) -> Result<Vec<crate::operations::EventRecord>, DbError> {
    use crate::schema::webhook_events::dsl as e;
    Ok(crate::schema::webhook_events::table
        .filter(e::app_id.eq(app_id))
        .filter(e::kind.eq("call"))
        .filter(e::dialpad_id.eq_any(call_ids))
        .order((e::event_timestamp.asc().nulls_last(), e::id.asc()))
        .select(crate::operations::EventRecord::as_select())
        .load(conn)
        .await?)
}
