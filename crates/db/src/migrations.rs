//! Embedded migrations, run only by an explicit `migrate` command.
//!
//! Two `migrate` runs at once are safe: each holds a Postgres advisory lock while it migrates.
//! Services call [`ensure_schema_current`] at start and refuse to run against a database whose
//! migrations are behind the binary.

use diesel::RunQueryDsl;
use diesel::sql_types::BigInt;
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

/// The workspace's `migrations/` directory, compiled into every binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

diesel::define_sql_function!(fn pg_try_advisory_lock(key: BigInt) -> diesel::sql_types::Bool);

/// Advisory lock key serialising concurrent `migrate` runs (an arbitrary constant: "cti-migr").
const MIGRATION_LOCK_KEY: i64 = 0x6374_692d_6d69_6772;

/// A migration step failed, or the schema is behind.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrationError {
    #[error(
        "database schema is behind this binary: {count} pending migration(s) ({names}); run the `migrate` command first"
    )]
    SchemaBehind { count: usize, names: String },
    /// The database could not be connected to (down, unreachable, or its certificate refused).
    #[error("cannot connect to the database: {0}")]
    Unreachable(String),
    #[error("migration failed: {0}")]
    Failed(String),
}

type Wrapper = AsyncConnectionWrapper<AsyncPgConnection>;

async fn with_sync_connection<T: Send + 'static>(
    database_url: &str,
    work: impl FnOnce(&mut Wrapper) -> Result<T, MigrationError> + Send + 'static,
) -> Result<T, MigrationError> {
    // Connected here, over TLS when `sslmode` asks; the migration harness is synchronous, so
    // it drives the connection from a blocking thread through the wrapper.
    let conn = crate::connect::establish(database_url)
        .await
        .map_err(|e| MigrationError::Unreachable(e.to_string()))?;
    tokio::task::spawn_blocking(move || work(&mut Wrapper::from(conn)))
        .await
        .map_err(|e| MigrationError::Failed(e.to_string()))?
}

/// Applies every pending migration under the advisory lock; returns the versions applied.
///
/// # Errors
/// [`MigrationError::Unreachable`] when the database cannot be connected to;
/// [`MigrationError::Failed`] when a migration fails (that migration is rolled back; earlier
/// ones stay applied).
pub async fn run_migrations(database_url: &str) -> Result<Vec<String>, MigrationError> {
    with_sync_connection(database_url, |conn| {
        let lock = |conn: &mut Wrapper, sql: &str| {
            diesel::sql_query(sql)
                .bind::<BigInt, _>(MIGRATION_LOCK_KEY)
                .execute(conn)
                .map_err(|e| MigrationError::Failed(e.to_string()))
        };
        // Polled, not waited for: a run blocked inside `pg_advisory_lock` holds a snapshot,
        // and a `CREATE INDEX CONCURRENTLY` of the run holding the lock waits for every older
        // snapshot: the two would deadlock.
        while !diesel::select(pg_try_advisory_lock(MIGRATION_LOCK_KEY))
            .get_result::<bool>(conn)
            .map_err(|e| MigrationError::Failed(e.to_string()))?
        {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let applied = conn
            .run_pending_migrations(MIGRATIONS)
            .map(|versions| versions.iter().map(ToString::to_string).collect())
            .map_err(|e| MigrationError::Failed(e.to_string()));
        let unlocked = lock(conn, "SELECT pg_advisory_unlock($1)");
        let applied = applied?;
        unlocked?;
        Ok(applied)
    })
    .await
}

/// Fails unless every embedded migration is applied.
///
/// # Errors
/// [`MigrationError::SchemaBehind`] naming the pending migrations,
/// [`MigrationError::Unreachable`] when the database cannot be connected to, or
/// [`MigrationError::Failed`] when it cannot be read.
pub async fn ensure_schema_current(database_url: &str) -> Result<(), MigrationError> {
    with_sync_connection(database_url, |conn| {
        let pending = conn
            .pending_migrations(MIGRATIONS)
            .map_err(|e| MigrationError::Failed(e.to_string()))?;
        if pending.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = pending.iter().map(|m| m.name().to_string()).collect();
        Err(MigrationError::SchemaBehind {
            count: names.len(),
            names: names.join(", "),
        })
    })
    .await
}
