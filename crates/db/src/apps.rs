//! Tenants (`apps`) and their API keys.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::DbError;
use crate::schema::{api_keys, apps};

/// An `apps` row.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = apps)]
pub struct App {
    pub id: Uuid,
    pub name: String,
    pub webhook_secret: String,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A new app.
#[derive(Debug, Insertable)]
#[diesel(table_name = apps)]
pub struct NewApp<'a> {
    pub name: &'a str,
    /// The inbound webhook secret (HS256 key of `/webhooks/dialpad/{app_id}`).
    pub webhook_secret: &'a str,
}

/// A new API key: its public id and the bcrypt hash of the whole key.
#[derive(Debug, Insertable)]
#[diesel(table_name = api_keys)]
pub struct NewApiKey<'a> {
    pub app_id: Uuid,
    pub key_id: &'a str,
    pub key_hash: &'a str,
}

impl App {
    /// Creates an app and its first API key in one transaction.
    ///
    /// `key` is given without `app_id`, which is filled in here.
    ///
    /// # Errors
    /// [`DbError`] from the queries; nothing is written on error.
    pub async fn create_with_key(
        conn: &mut AsyncPgConnection,
        new_app: &NewApp<'_>,
        key_id: &str,
        key_hash: &str,
    ) -> Result<App, DbError> {
        conn.transaction(async |conn| {
            let app: App = diesel::insert_into(apps::table)
                .values(new_app)
                .returning(App::as_returning())
                .get_result(conn)
                .await?;
            diesel::insert_into(api_keys::table)
                .values(NewApiKey {
                    app_id: app.id,
                    key_id,
                    key_hash,
                })
                .execute(conn)
                .await?;
            Ok::<_, DbError>(app)
        })
        .await
    }

    /// The inbound webhook secret of an app, or `None` if there is no such app.
    ///
    /// # Errors
    /// [`DbError`] from the query.
    pub async fn webhook_secret(
        conn: &mut AsyncPgConnection,
        app_id: Uuid,
    ) -> Result<Option<String>, DbError> {
        Ok(apps::table
            .find(app_id)
            .select(apps::webhook_secret)
            .first(conn)
            .await
            .optional()?)
    }
}

/// A usable API key found by its public id: not revoked, and its app active.
#[derive(Debug, Clone, Queryable)]
pub struct ActiveApiKey {
    pub api_key_id: Uuid,
    pub app_id: Uuid,
    /// bcrypt hash of the whole key, to verify the presented secret against.
    pub key_hash: String,
}

impl ActiveApiKey {
    /// Looks up a key by its public id; `None` if unknown, revoked, or its app is inactive.
    ///
    /// # Errors
    /// [`DbError`] from the query.
    pub async fn find(
        conn: &mut AsyncPgConnection,
        key_id: &str,
    ) -> Result<Option<ActiveApiKey>, DbError> {
        Ok(api_keys::table
            .inner_join(apps::table)
            .filter(api_keys::key_id.eq(key_id))
            .filter(api_keys::revoked_at.is_null())
            .filter(apps::active.eq(true))
            .select((api_keys::id, api_keys::app_id, api_keys::key_hash))
            .first(conn)
            .await
            .optional()?)
    }
}
