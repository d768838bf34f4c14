//! API keys of tenants: issue (and rotate), list, revoke, and the lookup that authenticates a
//! request. Keys are `raw_{key_id}_{secret}`; only the secret's bcrypt hash is stored.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use serde_json::json;

use crate::DbError;
use crate::audit::{self, Actor};
use crate::schema::{api_keys, apps};

/// A new API key: its public id and the bcrypt hash of the whole key.
#[derive(Debug, Insertable)]
#[diesel(table_name = api_keys)]
pub struct NewApiKey<'a> {
    pub app_id: Uuid,
    pub key_id: &'a str,
    pub key_hash: &'a str,
}

/// A usable API key found by its public id: not revoked, and its app active.
#[derive(Debug, Clone, Queryable)]
pub struct ActiveApiKey {
    pub api_key_id: Uuid,
    pub app_id: Uuid,
    /// bcrypt hash of the whole key, to verify the presented secret against.
    pub key_hash: String,
    pub last_used_at: Option<DateTime<Utc>>,
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
            .select((
                api_keys::id,
                api_keys::app_id,
                api_keys::key_hash,
                api_keys::last_used_at,
            ))
            .first(conn)
            .await
            .optional()?)
    }
}

/// An API key as admins see it: never its hash.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = api_keys)]
pub struct ApiKeyInfo {
    pub key_id: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiKeyInfo {
    /// Adds a key to an app, revoking its other keys first when `revoke_existing`; audited.
    /// Returns the key and how many keys were revoked; `None` for an unknown app.
    ///
    /// # Errors
    /// [`DbError`] from the queries; nothing changes on error.
    pub async fn issue(
        conn: &mut AsyncPgConnection,
        app_id: Uuid,
        key_id: &str,
        key_hash: &str,
        revoke_existing: bool,
        actor: &Actor,
    ) -> Result<Option<(ApiKeyInfo, usize)>, DbError> {
        conn.transaction(async |conn| {
            let exists = apps::table
                .find(app_id)
                .select(apps::id)
                .for_update()
                .first::<Uuid>(conn)
                .await
                .optional()?
                .is_some();
            if !exists {
                return Ok(None);
            }
            let mut revoked = 0;
            if revoke_existing {
                let revoked_ids: Vec<String> = diesel::update(
                    api_keys::table
                        .filter(api_keys::app_id.eq(app_id))
                        .filter(api_keys::revoked_at.is_null()),
                )
                .set(api_keys::revoked_at.eq(diesel::dsl::now))
                .returning(api_keys::key_id)
                .get_results(conn)
                .await?;
                for revoked_id in &revoked_ids {
                    audit::record(
                        conn,
                        app_id,
                        "api_key.revoked",
                        actor,
                        json!({ "key_id": revoked_id, "reason": "rotated" }),
                    )
                    .await?;
                }
                revoked = revoked_ids.len();
            }
            let key = diesel::insert_into(api_keys::table)
                .values(NewApiKey {
                    app_id,
                    key_id,
                    key_hash,
                })
                .returning(ApiKeyInfo::as_returning())
                .get_result(conn)
                .await?;
            audit::record(
                conn,
                app_id,
                "api_key.issued",
                actor,
                json!({ "key_id": key_id, "revoke_existing": revoke_existing }),
            )
            .await?;
            Ok::<_, DbError>(Some((key, revoked)))
        })
        .await
    }

    /// The app's keys, newest first.
    ///
    /// # Errors
    /// [`DbError`] from the query.
    pub async fn list(
        conn: &mut AsyncPgConnection,
        app_id: Uuid,
    ) -> Result<Vec<ApiKeyInfo>, DbError> {
        Ok(api_keys::table
            .filter(api_keys::app_id.eq(app_id))
            .order((api_keys::created_at.desc(), api_keys::key_id.asc()))
            .select(ApiKeyInfo::as_select())
            .load(conn)
            .await?)
    }

    /// Revokes one key of an app (already revoked: unchanged); audited. `None` if the app has
    /// no such key. Effective at once on every api replica: every request checks revocation
    /// in the database.
    ///
    /// # Errors
    /// [`DbError`] from the queries.
    pub async fn revoke(
        conn: &mut AsyncPgConnection,
        app_id: Uuid,
        key_id: &str,
        actor: &Actor,
    ) -> Result<Option<ApiKeyInfo>, DbError> {
        conn.transaction(async |conn| {
            let revoked: Option<ApiKeyInfo> = diesel::update(
                api_keys::table
                    .filter(api_keys::app_id.eq(app_id))
                    .filter(api_keys::key_id.eq(key_id))
                    .filter(api_keys::revoked_at.is_null()),
            )
            .set(api_keys::revoked_at.eq(diesel::dsl::now))
            .returning(ApiKeyInfo::as_returning())
            .get_result(conn)
            .await
            .optional()?;
            if let Some(key) = revoked {
                audit::record(
                    conn,
                    app_id,
                    "api_key.revoked",
                    actor,
                    json!({ "key_id": key_id }),
                )
                .await?;
                return Ok::<_, DbError>(Some(key));
            }
            Ok(api_keys::table
                .filter(api_keys::app_id.eq(app_id))
                .filter(api_keys::key_id.eq(key_id))
                .select(ApiKeyInfo::as_select())
                .first(conn)
                .await
                .optional()?)
        })
        .await
    }

    /// Records that a key was used, at most once a minute per key (a cheap, skippable write).
    ///
    /// # Errors
    /// [`DbError`] from the query.
    pub async fn touch(conn: &mut AsyncPgConnection, api_key_id: Uuid) -> Result<(), DbError> {
        diesel::update(
            api_keys::table.find(api_key_id).filter(
                api_keys::last_used_at
                    .is_null()
                    .or(api_keys::last_used_at.lt(Utc::now() - chrono::TimeDelta::minutes(1))),
            ),
        )
        .set(api_keys::last_used_at.eq(diesel::dsl::now))
        .execute(conn)
        .await?;
        Ok(())
    }
}
