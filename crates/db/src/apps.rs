//! Tenants (`apps`): creation with a first API key, renames, (de)activation, and their sealed
//! webhook secrets.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use secrecy::{ExposeSecret, SecretString};

use serde_json::json;

use crate::DbError;
use crate::api_keys::NewApiKey;
use crate::audit::{self, Actor};
use crate::crypto::{CryptoError, Keyring};
use crate::schema::{api_keys, apps, dialpad_webhooks};

/// An `apps` row, without its secret (see [`App::verification_secrets`]).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = apps)]
pub struct App {
    pub id: Uuid,
    pub name: String,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Insertable)]
#[diesel(table_name = apps)]
struct NewApp<'a> {
    id: Uuid,
    name: &'a str,
    webhook_secret_ciphertext: &'a [u8],
    webhook_secret_key_id: &'a str,
}

/// How long a deleted Dialpad webhook's secret still verifies events: Dialpad may still deliver
/// retries signed with it (SMS retries span about 4 hours, `docs/dialpad.md` §6.3).
const DELETED_WEBHOOK_GRACE: chrono::TimeDelta = chrono::TimeDelta::days(1);

impl App {
    /// Where an app's inbound webhook secret is sealed (the associated data, see [`crate::crypto`]).
    pub fn webhook_secret_place(app_id: Uuid) -> String {
        format!("apps.webhook_secret:{app_id}")
    }

    /// Creates an app, its sealed inbound webhook secret and its first API key, in one
    /// transaction.
    ///
    /// # Errors
    /// [`DbError`] from the queries; nothing is written on error.
    pub async fn create_with_key(
        conn: &mut AsyncPgConnection,
        keyring: &Keyring,
        name: &str,
        webhook_secret: &str,
        key_id: &str,
        key_hash: &str,
        actor: &Actor,
    ) -> Result<App, DbError> {
        let id = Uuid::new_v4();
        let sealed = keyring.seal_str(webhook_secret, &Self::webhook_secret_place(id));
        conn.transaction(async |conn| {
            let app: App = diesel::insert_into(apps::table)
                .values(NewApp {
                    id,
                    name,
                    webhook_secret_ciphertext: &sealed.ciphertext,
                    webhook_secret_key_id: &sealed.key_id,
                })
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
            audit::record(
                conn,
                app.id,
                "app.created",
                actor,
                json!({ "name": name, "key_id": key_id }),
            )
            .await?;
            Ok::<_, DbError>(app)
        })
        .await
    }

    /// Apps, oldest first, `limit` at most, created after the app `after` (keyset).
    ///
    /// # Errors
    /// [`DbError`] from the query.
    pub async fn list(
        conn: &mut AsyncPgConnection,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: i64,
    ) -> Result<Vec<App>, DbError> {
        let mut query = apps::table
            .order((apps::created_at.asc(), apps::id.asc()))
            .limit(limit)
            .select(App::as_select())
            .into_boxed();
        if let Some((created_at, id)) = after {
            query = query.filter(
                apps::created_at
                    .gt(created_at)
                    .or(apps::created_at.eq(created_at).and(apps::id.gt(id))),
            );
        }
        Ok(query.load(conn).await?)
    }

    /// Renames and/or (de)activates an app, auditing each change. Deactivation takes effect
    /// at once: [`ActiveApiKey::find`] requires an active app on every request. Returns the
    /// updated app, `None` if unknown.
    ///
    /// # Errors
    /// [`DbError`] from the queries; nothing changes on error.
    pub async fn update(
        conn: &mut AsyncPgConnection,
        app_id: Uuid,
        name: Option<&str>,
        active: Option<bool>,
        actor: &Actor,
    ) -> Result<Option<App>, DbError> {
        conn.transaction(async |conn| {
            let Some(before) = apps::table
                .find(app_id)
                .select(App::as_select())
                .for_update()
                .first(conn)
                .await
                .optional()?
            else {
                return Ok(None);
            };
            if let Some(name) = name.filter(|name| *name != before.name) {
                diesel::update(apps::table.find(app_id))
                    .set((apps::name.eq(name), apps::updated_at.eq(diesel::dsl::now)))
                    .execute(conn)
                    .await?;
                audit::record(
                    conn,
                    app_id,
                    "app.renamed",
                    actor,
                    json!({ "from": before.name, "to": name }),
                )
                .await?;
            }
            if let Some(active) = active.filter(|active| *active != before.active) {
                diesel::update(apps::table.find(app_id))
                    .set((
                        apps::active.eq(active),
                        apps::updated_at.eq(diesel::dsl::now),
                    ))
                    .execute(conn)
                    .await?;
                let action = if active {
                    "app.reactivated"
                } else {
                    "app.deactivated"
                };
                audit::record(conn, app_id, action, actor, json!({})).await?;
            }
            Ok::<_, DbError>(Some(
                apps::table
                    .find(app_id)
                    .select(App::as_select())
                    .first(conn)
                    .await?,
            ))
        })
        .await
    }

    /// The app with this id, active or not.
    ///
    /// # Errors
    /// [`DbError`] from the query.
    pub async fn find(conn: &mut AsyncPgConnection, app_id: Uuid) -> Result<Option<App>, DbError> {
        Ok(apps::table
            .find(app_id)
            .select(App::as_select())
            .first(conn)
            .await
            .optional()?)
    }

    /// The app's inbound webhook secret.
    ///
    /// # Errors
    /// [`DbError::Secret`] when it cannot be opened (its key is not in the ring);
    /// [`DbError::Query`] with `NotFound` for an unknown app.
    pub async fn webhook_secret(
        conn: &mut AsyncPgConnection,
        keyring: &Keyring,
        app_id: Uuid,
    ) -> Result<SecretString, DbError> {
        let stored: StoredSecret = apps::table
            .find(app_id)
            .select((
                apps::legacy_webhook_secret,
                apps::webhook_secret_ciphertext,
                apps::webhook_secret_key_id,
            ))
            .first(conn)
            .await?;
        stored.open(keyring, app_id)
    }

    /// Replaces the app's inbound webhook secret (sealed with the current key).
    ///
    /// # Errors
    /// [`DbError`] from the query.
    pub async fn set_webhook_secret(
        conn: &mut AsyncPgConnection,
        keyring: &Keyring,
        app_id: Uuid,
        webhook_secret: &str,
    ) -> Result<(), DbError> {
        let sealed = keyring.seal_str(webhook_secret, &Self::webhook_secret_place(app_id));
        diesel::update(apps::table.find(app_id))
            .set((
                apps::legacy_webhook_secret.eq(None::<String>),
                apps::webhook_secret_ciphertext.eq(&sealed.ciphertext),
                apps::webhook_secret_key_id.eq(&sealed.key_id),
                apps::updated_at.eq(diesel::dsl::now),
            ))
            .execute(conn)
            .await?;
        Ok(())
    }

    /// Every secret an event for this app may be signed with: the app's inbound secret, then
    /// the secrets of its Dialpad webhooks that are live or were deleted less than a day ago.
    /// `None` for an unknown app.
    ///
    /// # Errors
    /// [`DbError::Secret`] when a secret cannot be opened; [`DbError`] from the queries.
    pub async fn verification_secrets(
        conn: &mut AsyncPgConnection,
        keyring: &Keyring,
        app_id: Uuid,
    ) -> Result<Option<Vec<SecretString>>, DbError> {
        let Some(stored) = apps::table
            .find(app_id)
            .select((
                apps::legacy_webhook_secret,
                apps::webhook_secret_ciphertext,
                apps::webhook_secret_key_id,
            ))
            .first::<StoredSecret>(conn)
            .await
            .optional()?
        else {
            return Ok(None);
        };
        let mut secrets = vec![stored.open(keyring, app_id)?];
        let webhooks: Vec<(i64, Vec<u8>, String)> = dialpad_webhooks::table
            .filter(dialpad_webhooks::app_id.eq(app_id))
            .filter(
                dialpad_webhooks::deleted_at
                    .is_null()
                    .or(dialpad_webhooks::deleted_at.gt(Utc::now() - DELETED_WEBHOOK_GRACE)),
            )
            .select((
                dialpad_webhooks::dialpad_webhook_id,
                dialpad_webhooks::secret_ciphertext,
                dialpad_webhooks::secret_key_id,
            ))
            .load(conn)
            .await?;
        for (webhook_id, ciphertext, key_id) in webhooks {
            let place = crate::dialpad::DialpadWebhook::secret_place(app_id, webhook_id);
            let secret = keyring.open_str(&ciphertext, &key_id, &place)?;
            if !secrets
                .iter()
                .any(|s| s.expose_secret() == secret.expose_secret())
            {
                secrets.push(secret);
            }
        }
        Ok(Some(secrets))
    }

    /// Seals the plaintext secrets of apps created before encryption at rest, and clears the
    /// plaintext; returns how many. Idempotent; the api runs it when it starts.
    ///
    /// # Errors
    /// [`DbError`] from the queries.
    pub async fn seal_legacy_secrets(
        conn: &mut AsyncPgConnection,
        keyring: &Keyring,
    ) -> Result<usize, DbError> {
        let legacy: Vec<(Uuid, Option<String>)> = apps::table
            .filter(apps::legacy_webhook_secret.is_not_null())
            .select((apps::id, apps::legacy_webhook_secret))
            .load(conn)
            .await?;
        let mut sealed_count = 0;
        for (app_id, secret) in legacy {
            let Some(secret) = secret else { continue };
            let sealed = keyring.seal_str(&secret, &Self::webhook_secret_place(app_id));
            // Only if still plaintext: a concurrent replica may have sealed it already.
            sealed_count += diesel::update(
                apps::table
                    .find(app_id)
                    .filter(apps::legacy_webhook_secret.eq(&secret)),
            )
            .set((
                apps::legacy_webhook_secret.eq(None::<String>),
                apps::webhook_secret_ciphertext.eq(&sealed.ciphertext),
                apps::webhook_secret_key_id.eq(&sealed.key_id),
            ))
            .execute(conn)
            .await?;
        }
        Ok(sealed_count)
    }
}

/// An app's secret as stored: legacy plaintext, or sealed.
#[derive(Queryable)]
struct StoredSecret {
    legacy: Option<String>,
    ciphertext: Option<Vec<u8>>,
    key_id: Option<String>,
}

impl StoredSecret {
    fn open(self, keyring: &Keyring, app_id: Uuid) -> Result<SecretString, DbError> {
        match (self.ciphertext, self.key_id, self.legacy) {
            (Some(ciphertext), Some(key_id), _) => {
                Ok(keyring.open_str(&ciphertext, &key_id, &App::webhook_secret_place(app_id))?)
            }
            (_, _, Some(legacy)) => Ok(SecretString::from(legacy)),
            // The table's CHECK constraints rule this out.
            _ => Err(DbError::Secret(CryptoError::Unauthentic)),
        }
    }
}
