//! The connection pool (bb8 over diesel-async's `AsyncPgConnection`, no libpq).

use std::time::Duration;

use diesel::ConnectionError;
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};

use crate::DbError;

/// A pool of Postgres connections.
pub type Pool = bb8::Pool<AsyncDieselConnectionManager<AsyncPgConnection>>;
/// A connection checked out of the [`Pool`].
pub type PooledConn<'a> =
    bb8::PooledConnection<'a, AsyncDieselConnectionManager<AsyncPgConnection>>;

/// Pool sizing and timeouts.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Most connections open at once (`DATABASE_POOL_SIZE`).
    pub max_size: u32,
    /// How long a checkout waits for a connection before failing as unavailable
    /// (`DATABASE_CONNECT_TIMEOUT_MS`).
    pub connect_timeout: Duration,
    /// Postgres' `statement_timeout` on every connection of the pool
    /// (`DATABASE_STATEMENT_TIMEOUT_MS`): a statement running longer is cancelled with an error,
    /// so no request or batch holds a connection and its locks without bound. `None`: no limit.
    pub statement_timeout: Option<Duration>,
    /// Plan every execution of a prepared statement for its own parameters (Postgres'
    /// `plan_cache_mode = force_custom_plan`), never with a generic plan. For the worker, whose
    /// batch statements take arrays of ids (`crate::prepared`): their plans, checked with
    /// `EXPLAIN ANALYZE` at 1M calls, are custom plans for the batch's real arrays, and a
    /// generic plan estimates an array parameter's size blind. Preparing still saves the parse,
    /// the analysis and a round trip.
    pub custom_plans_only: bool,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            max_size: 10,
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Some(DEFAULT_STATEMENT_TIMEOUT),
            custom_plans_only: false,
        }
    }
}

/// The default `statement_timeout`: far above any query of a request or a worker batch
/// (milliseconds to tens of milliseconds), short enough that a runaway one is cut.
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Builds a pool that connects lazily: a database that is down at start-up is reported by the
/// first query, not here. Never runs migrations.
///
/// # Errors
/// [`DbError::Unavailable`] if the pool cannot be built.
pub async fn connect_pool(database_url: &str, settings: &PoolSettings) -> Result<Pool, DbError> {
    Ok(lazy_pool(database_url, settings))
}

/// [`connect_pool`] where no `.await` is possible (an HTTP worker's app factory). Connections
/// are opened by the first checkouts, and their tasks run on the runtime that made them.
pub fn lazy_pool(database_url: &str, settings: &PoolSettings) -> Pool {
    let mut config = ManagerConfig::default();
    let timeout_ms = settings.statement_timeout.map_or(0, |t| t.as_millis());
    let custom_plans_only = settings.custom_plans_only;
    config.custom_setup = Box::new(move |url| {
        let url = url.to_owned();
        Box::pin(async move {
            let mut conn = crate::connect::establish(&url).await?;
            // Set once per connection (a session setting), not per statement: no extra round
            // trip on the hot path. 0 is Postgres' "no limit". JIT off: every query here is
            // index-driven and takes milliseconds, but a plan the planner overestimates (a
            // LATERAL with a per-row LIMIT is costed at a tenth of its table, e.g. the push
            // delivery claim at 1M pending deliveries) crossed `jit_above_cost` and spent
            // 100-150 ms compiling before its first row.
            let plans = if custom_plans_only {
                "; SET plan_cache_mode = force_custom_plan"
            } else {
                ""
            };
            conn.batch_execute(&format!(
                "SET statement_timeout = {timeout_ms}; SET jit = off{plans}"
            ))
            .await
            .map_err(|e| ConnectionError::BadConnection(e.to_string()))?;
            Ok(conn)
        })
    });
    let manager =
        AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(database_url, config);
    bb8::Pool::builder()
        .max_size(settings.max_size)
        .connection_timeout(settings.connect_timeout)
        // A health query on every checkout would double round trips; broken connections are
        // detected by diesel-async on use and dropped by the pool instead.
        .test_on_check_out(false)
        .build_unchecked(manager)
}

/// Checks the database answers (`SELECT 1`), for readiness probes.
///
/// # Errors
/// [`DbError::Unavailable`] when no connection can be had or the query fails.
pub async fn ping(pool: &Pool) -> Result<(), DbError> {
    use diesel_async::RunQueryDsl;
    let mut conn = pool.get().await?;
    diesel::sql_query("SELECT 1")
        .execute(&mut conn)
        .await
        .map_err(|e| DbError::Unavailable(e.to_string()))?;
    Ok(())
}
