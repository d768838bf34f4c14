//! The tenant list queries: logical calls, legs, messages and voicemails, each filtered, newest
//! first by `(time DESC NULLS LAST, id DESC)`, paged by offset or by keyset.
//!
//! The order is `(coalesce(time, '-infinity') DESC, id DESC)`: newest first, rows without a
//! time last. Keyset paging ([`Position`]) continues after the last row of the previous page
//! with one row comparison on those keys, which the `(app_id, coalesce(time, ...) DESC, id
//! DESC)` indexes serve, so a deep page costs what the first does; offset paging is kept for
//! small jumps.

use std::marker::PhantomData;

use chrono::{DateTime, Utc};
use diesel::dsl::count_star;
use diesel::expression::{AppearsOnTable, Expression, SelectableExpression, ValidGrouping};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::sql_types::{BigInt, Bool, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::DbError;
use crate::calls::Call;
use crate::logical_calls::{LogicalCallRow, VoicemailRow};
use crate::messages::MessageRow;
use crate::schema::{calls, logical_calls, messages, voicemails};

/// Where the previous page ended: its last row's time (`None`: no time) and id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub at: Option<DateTime<Utc>>,
    pub id: i64,
}

/// Which rows of a list: at most `limit`, after skipping `offset`, after `after` (keyset).
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub limit: i64,
    pub offset: i64,
    pub after: Option<Position>,
}

impl Window {
    /// The total when the page tells it: an offset page that is not full ends the list (unless
    /// it is empty past the end).
    fn known_total(&self, rows: usize) -> Option<i64> {
        let rows = i64::try_from(rows).ok()?;
        (self.after.is_none() && rows < self.limit && (rows > 0 || self.offset == 0))
            .then_some(self.offset + rows)
    }
}

/// A page and, when the page itself tells it (an offset page that ends the list), how many
/// rows match in all; otherwise the `count_*` functions count them (a scan of every match).
#[derive(Debug)]
pub struct Page<T> {
    pub rows: Vec<T>,
    pub total: Option<i64>,
}

/// Filters of the call lists (all optional; they combine with AND).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct CallFilter {
    /// `inbound` or `outbound`.
    pub direction: Option<String>,
    /// Our status (`=`, which the `(app_id, direction, status, ...)` index serves; `= ANY`
    /// would not keep its order).
    pub status: Option<String>,
    /// A Dialpad state: of the leg, or (logical calls) of any of its legs.
    pub state: Option<String>,
    /// `started_at >= from`.
    pub from: Option<DateTime<Utc>>,
    /// `started_at < to`.
    pub to: Option<DateTime<Utc>>,
    /// Either party's number (E.164).
    pub number: Option<String>,
    /// The Dialpad target: of the leg, or (logical calls) of any of its legs.
    /// Canonical text (`domain::json::canonical_id`), as stored.
    pub target_id: Option<String>,
    /// Only calls that have not ended (`ringing`, `queued`, `connected`, `on_hold`).
    pub live: bool,
}

/// The statuses of a call or leg that has not ended, as SQL the partial index
/// `logical_calls_active_idx` is defined with (a bound array would not match it).
const LIVE_STATUSES_SQL: &str = "status IN ('ringing', 'queued', 'connected', 'on_hold')";

/// Filters of the message and voicemail lists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct MessageFilter {
    pub direction: Option<String>,
    /// `message_status` (messages only).
    pub status: Option<String>,
    /// Time `>= from` (`sent_at`, `left_at`).
    pub from: Option<DateTime<Utc>>,
    /// Time `< to`.
    pub to: Option<DateTime<Utc>>,
    /// Either party's number.
    pub number: Option<String>,
}

/// A boxed filter of a list query.
type Condition<QS> = Box<dyn BoxableExpression<QS, Pg, SqlType = Bool>>;

/// A piece of [`ShapeSql`]: text, or a value sent as a bind parameter.
#[derive(Debug, Clone)]
enum Piece {
    Sql(String),
    Time(Option<DateTime<Utc>>),
    BigInt(i64),
    Text(String),
}

/// SQL text with bind parameters, like `diesel::dsl::sql`, whose text depends only on the
/// query's shape, never on a value. Unlike `sql`, diesel may then keep the statement prepared
/// (its cache is keyed by the text): each list query skips Postgres' parse and plan and a round
/// trip to prepare it.
#[derive(Debug, Clone)]
struct ShapeSql<ST> {
    pieces: Vec<Piece>,
    sql_type: PhantomData<ST>,
}

impl<ST> ShapeSql<ST> {
    fn new(sql: impl Into<String>) -> Self {
        ShapeSql {
            pieces: vec![Piece::Sql(sql.into())],
            sql_type: PhantomData,
        }
    }

    fn then(mut self, piece: Piece) -> Self {
        self.pieces.push(piece);
        self
    }

    fn sql(self, sql: impl Into<String>) -> Self {
        self.then(Piece::Sql(sql.into()))
    }
}

impl<ST: diesel::sql_types::SqlType + diesel::expression::TypedExpressionType> Expression
    for ShapeSql<ST>
{
    type SqlType = ST;
}

impl<ST> QueryFragment<Pg> for ShapeSql<ST> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        for piece in &self.pieces {
            match piece {
                Piece::Sql(sql) => out.push_sql(sql),
                Piece::Time(at) => out.push_bind_param::<Nullable<Timestamptz>, _>(at)?,
                Piece::BigInt(n) => out.push_bind_param::<BigInt, _>(n)?,
                Piece::Text(text) => out.push_bind_param::<Text, _>(text)?,
            }
        }
        Ok(())
    }
}

impl<ST> QueryId for ShapeSql<ST> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<QS, ST> AppearsOnTable<QS> for ShapeSql<ST> where Self: Expression {}

impl<QS, ST> SelectableExpression<QS> for ShapeSql<ST> where Self: Expression {}

impl<ST, GB> ValidGrouping<GB> for ShapeSql<ST> {
    type IsAggregate = diesel::expression::is_aggregate::Never;
}

/// The list order's first key: the row's time, `-infinity` when it has none (listed last). It
/// matches the list indexes' expression, so the order and the keyset are index scans.
fn sort_time(time: &str) -> String {
    format!("coalesce({time}, '-infinity'::timestamptz)")
}

/// Rows after `position` in `(time DESC, id DESC)` order: one row comparison.
fn after<QS: 'static>(time: &str, id: &str, position: Position) -> Condition<QS> {
    Box::new(
        ShapeSql::<Bool>::new(format!("({}, {id}) < (coalesce(", sort_time(time)))
            .then(Piece::Time(position.at))
            .sql(", '-infinity'::timestamptz), ")
            .then(Piece::BigInt(position.id))
            .sql(")"),
    )
}

/// `ORDER BY` the list order's first key, newest first.
fn newest_first(time: &str) -> diesel::helper_types::Desc<ShapeSql<Timestamptz>> {
    ShapeSql::<Timestamptz>::new(sort_time(time)).desc()
}

/// A condition with no parameter, as SQL.
fn condition<QS: 'static>(sql: String) -> Condition<QS> {
    Box::new(ShapeSql::<Bool>::new(sql))
}

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
