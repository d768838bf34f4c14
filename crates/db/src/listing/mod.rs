//! The tenant list queries: logical calls, legs, messages and voicemails, each filtered, newest
//! first by `(time DESC NULLS LAST, id DESC)`, paged by offset or by keyset.
//!
//! The order is `(coalesce(time, '-infinity') DESC, id DESC)`: newest first, rows without a
//! time last. Keyset paging ([`Position`]) continues after the last row of the previous page
//! with one row comparison on those keys, which the `(app_id, coalesce(time, ...) DESC, id
//! DESC)` indexes serve, so a deep page costs what the first does; offset paging is kept for
//! small jumps.

mod call_queries;
mod message_queries;

pub use call_queries::{
    call_events, count_legs, count_logical_calls, legs, logical_call_with_legs, logical_calls,
};
pub use message_queries::{count_messages, count_voicemails, messages, voicemails};

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
