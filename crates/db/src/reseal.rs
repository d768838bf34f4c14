//! Re-sealing every secret at rest under the current key (`api reseal`, `ingest reseal`), so a
//! former key can then be removed from `ENCRYPTION_PREVIOUS_KEYS`.
//!
//! Idempotent and resumable: only values sealed under another key than the current one are
//! read, in id order, batch by batch, and each is rewritten only if it is unchanged since it was
//! read (a concurrent rewrite, e.g. a token refresh, wins and is already current). Running it
//! again after an interruption continues where it stopped; after a complete run it finds
//! nothing. A value no key of the ring opens is skipped, logged by its row (never the value)
//! and counted, so it cannot stop the app's other secrets from being resealed.
//!
//! What is sealed: apps' inbound webhook secrets, Dialpad connections' tokens (or API key) and
//! Dialpad webhooks' and push subscriptions' secrets. OAuth states' PKCE verifiers are not resealed: they expire within
//! minutes of being sealed.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use secrecy::ExposeSecret;
use uuid::Uuid;

use crate::DbError;
use crate::apps::App;
use crate::crypto::Keyring;
use crate::dialpad::{Connection, DialpadWebhook};
use crate::push::PushSubscription;
use crate::schema::{apps, dialpad_connections, dialpad_webhooks};

/// A connection's app id, sealed access token (or API key), sealed refresh token, key id.
type SealedTokens = (Uuid, Vec<u8>, Option<Vec<u8>>, String);

/// Rows read per batch.
const BATCH: i64 = 500;

/// What a reseal did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resealed {
    /// Values rewritten under the current key.
    pub resealed: usize,
    /// Values no key of the ring opens (skipped, logged by row).
    pub unreadable: usize,
}

/// Reseals every value not sealed under the keyring's current key.
///
/// # Errors
/// [`DbError`] from the queries; what was resealed before stays resealed.
pub async fn reseal_all(
    conn: &mut AsyncPgConnection,
    keyring: &Keyring,
) -> Result<Resealed, DbError> {
    let mut total = Resealed::default();
    reseal_app_secrets(conn, keyring, &mut total).await?;
    reseal_connections(conn, keyring, &mut total).await?;
    reseal_webhook_secrets(conn, keyring, &mut total).await?;
    reseal_push_secrets(conn, keyring, PushSecret::Current, &mut total).await?;
    reseal_push_secrets(conn, keyring, PushSecret::Previous, &mut total).await?;
    Ok(total)
}

async fn reseal_app_secrets(
    conn: &mut AsyncPgConnection,
    keyring: &Keyring,
    total: &mut Resealed,
) -> Result<(), DbError> {
    let current = keyring.current_key_id().to_owned();
    let mut after = Uuid::nil();
    loop {
        let rows: Vec<(Uuid, Option<Vec<u8>>, Option<String>)> = apps::table
            .filter(apps::id.gt(after))
            .filter(apps::webhook_secret_key_id.ne(&current))
            .order(apps::id)
            .limit(BATCH)
            .select((
                apps::id,
                apps::webhook_secret_ciphertext,
                apps::webhook_secret_key_id,
            ))
            .load(conn)
            .await?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        after = last.0;
        for (app_id, ciphertext, key_id) in rows {
            let (Some(ciphertext), Some(key_id)) = (ciphertext, key_id) else {
                continue;
            };
            let place = App::webhook_secret_place(app_id);
            let Ok(secret) = keyring.open_str(&ciphertext, &key_id, &place) else {
                tracing::warn!(app.id = %app_id, key.id = %key_id, "An app's webhook secret cannot be opened by any key; skipped.");
                total.unreadable += 1;
                continue;
            };
            let sealed = keyring.seal_str(secret.expose_secret(), &place);
            total.resealed += diesel::update(
                apps::table
                    .find(app_id)
                    .filter(apps::webhook_secret_key_id.eq(&key_id))
                    .filter(apps::webhook_secret_ciphertext.eq(&ciphertext)),
            )
            .set((
                apps::webhook_secret_ciphertext.eq(&sealed.ciphertext),
                apps::webhook_secret_key_id.eq(&sealed.key_id),
            ))
            .execute(conn)
            .await?;
        }
    }
}

async fn reseal_connections(
    conn: &mut AsyncPgConnection,
    keyring: &Keyring,
    total: &mut Resealed,
) -> Result<(), DbError> {
    let current = keyring.current_key_id().to_owned();
    let mut after = Uuid::nil();
    loop {
        let rows: Vec<SealedTokens> = dialpad_connections::table
            .filter(dialpad_connections::app_id.gt(after))
            .filter(dialpad_connections::token_key_id.ne(&current))
            .order(dialpad_connections::app_id)
            .limit(BATCH)
            .select((
                dialpad_connections::app_id,
                dialpad_connections::access_token_ciphertext,
                dialpad_connections::refresh_token_ciphertext,
                dialpad_connections::token_key_id,
            ))
            .load(conn)
            .await?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        after = last.0;
        for (app_id, access, refresh, key_id) in rows {
            let access_place = Connection::access_place(app_id);
            let refresh_place = Connection::refresh_place(app_id);
            let opened = keyring
                .open_str(&access, &key_id, &access_place)
                .and_then(|access| {
                    let refresh = refresh
                        .as_ref()
                        .map(|refresh| keyring.open_str(refresh, &key_id, &refresh_place))
                        .transpose()?;
                    Ok((access, refresh))
                });
            let Ok((access_token, refresh_token)) = opened else {
                tracing::warn!(app.id = %app_id, key.id = %key_id, "A Dialpad connection's tokens cannot be opened by any key; skipped.");
                total.unreadable += 1;
                continue;
            };
            let sealed_access = keyring.seal_str(access_token.expose_secret(), &access_place);
            let sealed_refresh = refresh_token.map(|token| {
                keyring
                    .seal_str(token.expose_secret(), &refresh_place)
                    .ciphertext
            });
            total.resealed += diesel::update(
                dialpad_connections::table
                    .find(app_id)
                    .filter(dialpad_connections::token_key_id.eq(&key_id))
                    .filter(dialpad_connections::access_token_ciphertext.eq(&access)),
            )
            .set((
                dialpad_connections::access_token_ciphertext.eq(&sealed_access.ciphertext),
                dialpad_connections::refresh_token_ciphertext.eq(&sealed_refresh),
                dialpad_connections::token_key_id.eq(&sealed_access.key_id),
            ))
            .execute(conn)
            .await?;
        }
    }
}

async fn reseal_webhook_secrets(
    conn: &mut AsyncPgConnection,
    keyring: &Keyring,
    total: &mut Resealed,
) -> Result<(), DbError> {
    let current = keyring.current_key_id().to_owned();
    let mut after = 0_i64;
    loop {
        let rows: Vec<(i64, Uuid, i64, Vec<u8>, String)> = dialpad_webhooks::table
            .filter(dialpad_webhooks::id.gt(after))
            .filter(dialpad_webhooks::secret_key_id.ne(&current))
            .order(dialpad_webhooks::id)
            .limit(BATCH)
            .select((
                dialpad_webhooks::id,
                dialpad_webhooks::app_id,
                dialpad_webhooks::dialpad_webhook_id,
                dialpad_webhooks::secret_ciphertext,
                dialpad_webhooks::secret_key_id,
            ))
            .load(conn)
            .await?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        after = last.0;
        for (id, app_id, webhook_id, ciphertext, key_id) in rows {
            let place = DialpadWebhook::secret_place(app_id, webhook_id);
            let Ok(secret) = keyring.open_str(&ciphertext, &key_id, &place) else {
                tracing::warn!(dialpad_webhook.row = id, app.id = %app_id, key.id = %key_id, "A Dialpad webhook's secret cannot be opened by any key; skipped.");
                total.unreadable += 1;
                continue;
            };
            let sealed = keyring.seal_str(secret.expose_secret(), &place);
            total.resealed += diesel::update(
                dialpad_webhooks::table
                    .find(id)
                    .filter(dialpad_webhooks::secret_key_id.eq(&key_id))
                    .filter(dialpad_webhooks::secret_ciphertext.eq(&ciphertext)),
            )
            .set((
                dialpad_webhooks::secret_ciphertext.eq(&sealed.ciphertext),
                dialpad_webhooks::secret_key_id.eq(&sealed.key_id),
            ))
            .execute(conn)
            .await?;
        }
    }
}

/// Which secret of a push subscription a pass reseals: its columns' prefix.
#[derive(Debug, Clone, Copy)]
enum PushSecret {
    /// `secret_*`.
    Current,
    /// `previous_secret_*`: the former secret of a rotated subscription, still signing until it
    /// expires.
    Previous,
}

/// Reseals one secret of every push subscription (both are bound to the same place).
async fn reseal_push_secrets(
    conn: &mut AsyncPgConnection,
    keyring: &Keyring,
    which: PushSecret,
    total: &mut Resealed,
) -> Result<(), DbError> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        id: Uuid,
        #[diesel(sql_type = diesel::sql_types::Bytea)]
        ciphertext: Vec<u8>,
        #[diesel(sql_type = diesel::sql_types::Text)]
        key_id: String,
    }
    let column = match which {
        PushSecret::Current => "secret",
        PushSecret::Previous => "previous_secret",
    };
    let current = keyring.current_key_id().to_owned();
    let mut after = Uuid::nil();
    loop {
        // A NULL former secret fails `<>`, so only sealed values are read.
        let rows: Vec<Row> = diesel::sql_query(format!(
            "SELECT id, {column}_ciphertext AS ciphertext, {column}_key_id AS key_id \
             FROM push_subscriptions WHERE id > $1 AND {column}_key_id <> $2 \
             ORDER BY id LIMIT $3"
        ))
        .bind::<diesel::sql_types::Uuid, _>(after)
        .bind::<diesel::sql_types::Text, _>(&current)
        .bind::<diesel::sql_types::BigInt, _>(BATCH)
        .load(conn)
        .await?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        after = last.id;
        for Row {
            id,
            ciphertext,
            key_id,
        } in rows
        {
            let place = PushSubscription::secret_place(id);
            let Ok(secret) = keyring.open_str(&ciphertext, &key_id, &place) else {
                tracing::warn!(push_subscription.id = %id, key.id = %key_id, secret = ?which, "A push subscription's secret cannot be opened by any key; skipped.");
                total.unreadable += 1;
                continue;
            };
            let sealed = keyring.seal_str(secret.expose_secret(), &place);
            total.resealed += diesel::sql_query(format!(
                "UPDATE push_subscriptions SET {column}_ciphertext = $1, {column}_key_id = $2 \
                 WHERE id = $3 AND {column}_key_id = $4 AND {column}_ciphertext = $5"
            ))
            .bind::<diesel::sql_types::Bytea, _>(&sealed.ciphertext)
            .bind::<diesel::sql_types::Text, _>(&sealed.key_id)
            .bind::<diesel::sql_types::Uuid, _>(id)
            .bind::<diesel::sql_types::Text, _>(&key_id)
            .bind::<diesel::sql_types::Bytea, _>(&ciphertext)
            .execute(conn)
            .await?;
        }
    }
}
