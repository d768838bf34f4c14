//! `dialpad_webhooks`: the webhooks we registered at Dialpad for an app.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use crate::DbError;
use crate::apps::App;
use crate::crypto::Keyring;
use crate::schema::dialpad_webhooks;

/// A `dialpad_webhooks` row: a webhook we registered at Dialpad for an app.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = dialpad_webhooks)]
pub struct DialpadWebhook {
    pub id: i64,
    pub app_id: Uuid,
    pub dialpad_webhook_id: i64,
    pub hook_url: String,
    pub secret_ciphertext: Vec<u8>,
    pub secret_key_id: String,
    /// `HS256` (Dialpad's `signature.algo`).
    pub signature_algo: String,
    /// `jwt` (Dialpad's `signature.type`).
    pub signature_type: String,
    pub created_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// A webhook Dialpad just created, to record.
#[derive(Debug)]
pub struct NewDialpadWebhook<'a> {
    pub app_id: Uuid,
    pub dialpad_webhook_id: i64,
    pub hook_url: &'a str,
    /// The secret Dialpad signs its events with.
    pub secret: &'a SecretString,
    pub signature_algo: &'a str,
    pub signature_type: &'a str,
}

impl DialpadWebhook {
    /// Where a webhook's secret is sealed.
    pub fn secret_place(app_id: Uuid, dialpad_webhook_id: i64) -> String {
        format!("dialpad_webhooks.secret:{app_id}:{dialpad_webhook_id}")
    }

    /// Records a webhook created at Dialpad and, when `replaces_app_secret`, makes its secret
    /// the app's inbound secret, in one transaction.
    ///
    /// # Errors
    /// [`DbError`] from the queries; nothing is written on error.
    pub async fn record(
        conn: &mut AsyncPgConnection,
        keyring: &Keyring,
        webhook: &NewDialpadWebhook<'_>,
        replaces_app_secret: bool,
    ) -> Result<DialpadWebhook, DbError> {
        let sealed = keyring.seal_str(
            webhook.secret.expose_secret(),
            &Self::secret_place(webhook.app_id, webhook.dialpad_webhook_id),
        );
        conn.transaction(async |conn| {
            let row = diesel::insert_into(dialpad_webhooks::table)
                .values((
                    dialpad_webhooks::app_id.eq(webhook.app_id),
                    dialpad_webhooks::dialpad_webhook_id.eq(webhook.dialpad_webhook_id),
                    dialpad_webhooks::hook_url.eq(webhook.hook_url),
                    dialpad_webhooks::secret_ciphertext.eq(&sealed.ciphertext),
                    dialpad_webhooks::secret_key_id.eq(&sealed.key_id),
                    dialpad_webhooks::signature_algo.eq(webhook.signature_algo),
                    dialpad_webhooks::signature_type.eq(webhook.signature_type),
                ))
                .returning(DialpadWebhook::as_returning())
                .get_result(conn)
                .await?;
            if replaces_app_secret {
                App::set_webhook_secret(
                    conn,
                    keyring,
                    webhook.app_id,
                    webhook.secret.expose_secret(),
                )
                .await?;
            }
            Ok::<_, DbError>(row)
        })
        .await
    }

    /// The app's live (not deleted) webhooks, newest first.
    ///
    /// # Errors
    /// [`DbError`] from the query.
    pub async fn list_live(
        conn: &mut AsyncPgConnection,
        app_id: Uuid,
    ) -> Result<Vec<DialpadWebhook>, DbError> {
        Ok(dialpad_webhooks::table
            .filter(dialpad_webhooks::app_id.eq(app_id))
            .filter(dialpad_webhooks::deleted_at.is_null())
            .order(dialpad_webhooks::id.desc())
            .select(DialpadWebhook::as_select())
            .load(conn)
            .await?)
    }

    /// One of the app's live webhooks, by Dialpad's id.
    ///
    /// # Errors
    /// [`DbError`] from the query.
    pub async fn find_live(
        conn: &mut AsyncPgConnection,
        app_id: Uuid,
        dialpad_webhook_id: i64,
    ) -> Result<Option<DialpadWebhook>, DbError> {
        Ok(dialpad_webhooks::table
            .filter(dialpad_webhooks::app_id.eq(app_id))
            .filter(dialpad_webhooks::dialpad_webhook_id.eq(dialpad_webhook_id))
            .filter(dialpad_webhooks::deleted_at.is_null())
            .select(DialpadWebhook::as_select())
            .first(conn)
            .await
            .optional()?)
    }

    /// Marks a webhook deleted (its secret keeps verifying for a day, see
    /// [`App::verification_secrets`]).
    ///
    /// # Errors
    /// [`DbError`] from the query.
    pub async fn mark_deleted(
        conn: &mut AsyncPgConnection,
        app_id: Uuid,
        dialpad_webhook_id: i64,
    ) -> Result<(), DbError> {
        diesel::update(
            dialpad_webhooks::table
                .filter(dialpad_webhooks::app_id.eq(app_id))
                .filter(dialpad_webhooks::dialpad_webhook_id.eq(dialpad_webhook_id))
                .filter(dialpad_webhooks::deleted_at.is_null()),
        )
        .set(dialpad_webhooks::deleted_at.eq(diesel::dsl::now))
        .execute(conn)
        .await?;
        Ok(())
    }
}
