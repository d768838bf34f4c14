//! Raw SQL statements prepared once per connection.
//!
//! diesel prepares the statements of its query DSL once per connection, but never a
//! `sql_query`: `SqlQuery` marks itself unsafe to cache, as its text could be built from
//! anything. So each execution of one paid Parse and Describe (a round trip of its own) and a
//! fresh parse, analysis and plan in Postgres: ingest's profile showed ~7% of all samples there
//! before its insert was prepared (`queue::enqueue`). [`PrepareOnce::prepared`]
//! marks a statement whose text is fixed as safe to cache; diesel then keys its cache by that
//! text. Never wrap a statement whose text varies with its input (the cache is unbounded), nor
//! one whose result columns come from a `*` (a column added by a migration while the service
//! runs fails a prepared copy: "cached plan must not change result type").

use diesel::QueryResult;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};

/// A statement of fixed text, prepared on its first execution on a connection and reused after.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Prepared<Q>(Q);

/// `.prepared()` on any statement (in practice a `diesel::sql_query(...).bind(...)` chain).
pub(crate) trait PrepareOnce: Sized {
    /// This statement, prepared once per connection (see the module documentation).
    fn prepared(self) -> Prepared<Self> {
        Prepared(self)
    }
}

impl<Q> PrepareOnce for Q {}

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Prepared<Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &Pg) -> QueryResult<bool> {
        Ok(true)
    }
}

/// No static id: the cache is keyed by the statement's text and its bind types.
impl<Q> QueryId for Prepared<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for Prepared<Q> {
    type SqlType = Q::SqlType;
}
