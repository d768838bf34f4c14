//! The connection pool (bb8 over diesel-async's `AsyncPgConnection`, no libpq).

use std::time::Duration;

use diesel_async::AsyncPgConnection;
use diesel_async::pooled_connection::AsyncDieselConnectionManager;

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
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            max_size: 10,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Builds a pool that connects lazily: a database that is down at start-up is reported by the
/// first query, not here. Never runs migrations.
///
/// # Errors
/// [`DbError::Unavailable`] if the pool cannot be built.
pub async fn connect_pool(database_url: &str, settings: &PoolSettings) -> Result<Pool, DbError> {
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new(database_url);
    Ok(bb8::Pool::builder()
        .max_size(settings.max_size)
        .connection_timeout(settings.connect_timeout)
        // A health query on every checkout would double round trips; broken connections are
        // detected by diesel-async on use and dropped by the pool instead.
        .test_on_check_out(false)
        .build_unchecked(manager))
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
