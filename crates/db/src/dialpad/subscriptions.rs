//! `dialpad_subscriptions`: the call and SMS event subscriptions we created at Dialpad.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;
use uuid::Uuid;

use crate::DbError;
use crate::schema::dialpad_subscriptions;

/// A `dialpad_subscriptions` row.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = dialpad_subscriptions)]
pub struct DialpadSubscription {
    pub id: i64,
    pub app_id: Uuid,
    /// `call` or `sms`.
    pub kind: String,
    pub dialpad_subscription_id: i64,
    pub dialpad_webhook_id: i64,
    /// What was asked of Dialpad (see the table comment).
    pub options: Value,
    pub created_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

impl DialpadSubscription {
    /// Records a subscription Dialpad just created.
    ///
    /// # Errors
    /// [`DbError`] from the query.
    pub async fn record(
        conn: &mut AsyncPgConnection,
        app_id: Uuid,
        kind: &str,
        dialpad_subscription_id: i64,
        dialpad_webhook_id: i64,
        options: &Value,
    ) -> Result<DialpadSubscription, DbError> {
        Ok(diesel::insert_into(dialpad_subscriptions::table)
            .values((
                dialpad_subscriptions::app_id.eq(app_id),
                dialpad_subscriptions::kind.eq(kind),
                dialpad_subscriptions::dialpad_subscription_id.eq(dialpad_subscription_id),
                dialpad_subscriptions::dialpad_webhook_id.eq(dialpad_webhook_id),
                dialpad_subscriptions::options.eq(options),
            ))
            .returning(DialpadSubscription::as_returning())
            .get_result(conn)
            .await?)
    }

    /// The app's live subscriptions, newest first.
    ///
    /// # Errors
    /// [`DbError`] from the query.
    pub async fn list_live(
        conn: &mut AsyncPgConnection,
        app_id: Uuid,
    ) -> Result<Vec<DialpadSubscription>, DbError> {
        Ok(dialpad_subscriptions::table
            .filter(dialpad_subscriptions::app_id.eq(app_id))
            .filter(dialpad_subscriptions::deleted_at.is_null())
            .order(dialpad_subscriptions::id.desc())
            .select(DialpadSubscription::as_select())
            .load(conn)
            .await?)
    }

    /// One of the app's live subscriptions, by Dialpad's id (unique per kind; ids of both
    /// kinds come from one Dialpad id space, so the first match is taken).
    ///
    /// # Errors
    /// [`DbError`] from the query.
    pub async fn find_live(
        conn: &mut AsyncPgConnection,
        app_id: Uuid,
        dialpad_subscription_id: i64,
    ) -> Result<Option<DialpadSubscription>, DbError> {
        Ok(dialpad_subscriptions::table
            .filter(dialpad_subscriptions::app_id.eq(app_id))
            .filter(dialpad_subscriptions::dialpad_subscription_id.eq(dialpad_subscription_id))
            .filter(dialpad_subscriptions::deleted_at.is_null())
            .select(DialpadSubscription::as_select())
            .first(conn)
            .await
            .optional()?)
    }

    /// Marks a subscription deleted.
    ///
    /// # Errors
    /// [`DbError`] from the query.
    pub async fn mark_deleted(conn: &mut AsyncPgConnection, id: i64) -> Result<(), DbError> {
        diesel::update(dialpad_subscriptions::table.find(id))
            .set(dialpad_subscriptions::deleted_at.eq(diesel::dsl::now))
            .execute(conn)
            .await?;
        Ok(())
    }
}
