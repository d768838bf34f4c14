//! The audit log (`audit_log`): app and API-key changes, each written in the transaction that
//! makes the change, so the log and the state never disagree.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;
use uuid::Uuid;

use crate::DbError;
use crate::schema::audit_log;

/// Who made a change: `"admin"` (the admin bearer secret) and, when known, the client address.
#[derive(Debug, Clone)]
pub struct Actor(pub String);

/// An `audit_log` row.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = audit_log)]
pub struct AuditEntry {
    pub id: i64,
    pub app_id: Uuid,
    /// `app.created`, `app.renamed`, `app.deactivated`, `app.reactivated`, `api_key.issued`,
    /// `api_key.revoked`.
    pub action: String,
    pub actor: String,
    /// What changed (never a secret): e.g. `{"key_id"}`, `{"from", "to"}`.
    pub details: Value,
    pub created_at: DateTime<Utc>,
}

/// Appends an entry (call it inside the change's transaction).
///
/// # Errors
/// [`DbError`] from the query.
pub async fn record(
    conn: &mut AsyncPgConnection,
    app_id: Uuid,
    action: &str,
    actor: &Actor,
    details: Value,
) -> Result<(), DbError> {
    diesel::insert_into(audit_log::table)
        .values((
            audit_log::app_id.eq(app_id),
            audit_log::action.eq(action),
            audit_log::actor.eq(&actor.0),
            audit_log::details.eq(details),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// The app's entries, newest first, `limit` at most, with ids below `before_id`.
///
/// # Errors
/// [`DbError`] from the query.
pub async fn list(
    conn: &mut AsyncPgConnection,
    app_id: Uuid,
    before_id: Option<i64>,
    limit: i64,
) -> Result<Vec<AuditEntry>, DbError> {
    let mut query = audit_log::table
        .filter(audit_log::app_id.eq(app_id))
        .order(audit_log::id.desc())
        .limit(limit)
        .select(AuditEntry::as_select())
        .into_boxed();
    if let Some(before_id) = before_id {
        query = query.filter(audit_log::id.lt(before_id));
    }
    Ok(query.load(conn).await?)
}
