//! Change notifications: Postgres `LISTEN`/`NOTIFY` channels and the connections that listen.
//!
//! - [`queue::NOTIFY_CHANNEL`](crate::queue::NOTIFY_CHANNEL): an event was enqueued (wakes
//!   workers).
//! - [`TENANT_CHANGES_CHANNEL`]: a tenant's calls, legs, messages or voicemails changed; the
//!   payload is its app id. Statement triggers on those four tables send it, so every writer is
//!   covered, and it is delivered at commit. An empty payload is a [`heartbeat`].

use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::DbError;

/// The channel of tenant data changes (payload: the app id as a UUID string; empty: a
/// heartbeat).
pub const TENANT_CHANGES_CHANNEL: &str = "tenant_changes";

/// Opens a dedicated connection subscribed to `channel`; read it with
/// `AsyncPgConnection::notifications_stream`. Not pooled: the stream borrows it for its life.
///
/// # Errors
/// [`DbError::Unavailable`] when the database cannot be reached.
pub async fn listen_connection(
    database_url: &str,
    channel: &'static str,
) -> Result<AsyncPgConnection, DbError> {
    let mut conn = crate::connect::establish(database_url)
        .await
        .map_err(|e| DbError::Unavailable(e.to_string()))?;
    diesel::sql_query(format!("LISTEN {channel}"))
        .execute(&mut conn)
        .await?;
    Ok(conn)
}

/// Sends an empty notification on [`TENANT_CHANGES_CHANNEL`]: a listener that stops hearing
/// these knows its connection no longer delivers changes.
///
/// # Errors
/// [`DbError`] from the query.
pub async fn heartbeat(conn: &mut AsyncPgConnection) -> Result<(), DbError> {
    diesel::sql_query(format!("SELECT pg_notify('{TENANT_CHANGES_CHANNEL}', '')"))
        .execute(conn)
        .await?;
    Ok(())
}
