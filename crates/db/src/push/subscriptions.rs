//! Tenants' webhook subscriptions: create (within a per-app limit, secret sealed), list, find,
//! update (reactivation resets failure tracking), delete.

use super::*;

/// A subscription as its tenant sees it: never its secret.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = push_subscriptions)]
pub struct PushSubscription {
    pub id: Uuid,
    pub app_id: Uuid,
    pub webhook_url: String,
    /// Event names (`domain::push::PushEvent`), or `*`.
    pub events: Vec<String>,
    pub description: Option<String>,
    pub active: bool,
    /// Failed attempts since the last success.
    pub consecutive_failures: i32,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_failure_at: Option<DateTime<Utc>>,
    pub failing_since: Option<DateTime<Utc>>,
    pub disabled_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A subscription's sealed signing secrets as a query selects them: the former one only
/// while its rotation's grace period lasts (the query selects it only while
/// `previous_secret_expires_at` is in the future).
#[derive(Debug, Clone, QueryableByName)]
pub(crate) struct SealedSecrets {
    #[diesel(sql_type = diesel::sql_types::Bytea)]
    secret_ciphertext: Vec<u8>,
    #[diesel(sql_type = Text)]
    secret_key_id: String,
    #[diesel(sql_type = Nullable<diesel::sql_types::Bytea>)]
    previous_secret_ciphertext: Option<Vec<u8>>,
    #[diesel(sql_type = Nullable<Text>)]
    previous_secret_key_id: Option<String>,
}

impl SealedSecrets {
    /// The secret and the former one, opened with `keyring`.
    pub(crate) fn open(
        &self,
        keyring: &Keyring,
        subscription_id: Uuid,
    ) -> Result<(SecretString, Option<SecretString>), DbError> {
        let place = PushSubscription::secret_place(subscription_id);
        let secret = keyring.open_str(&self.secret_ciphertext, &self.secret_key_id, &place)?;
        let previous = match (
            &self.previous_secret_ciphertext,
            &self.previous_secret_key_id,
        ) {
            (Some(ciphertext), Some(key_id)) => Some(keyring.open_str(ciphertext, key_id, &place)?),
            _ => None,
        };
        Ok((secret, previous))
    }
}

/// A new subscription's fields.
#[derive(Debug)]
pub struct NewSubscription<'a> {
    pub webhook_url: &'a str,
    pub events: &'a [String],
    pub description: Option<&'a str>,
}

/// Changes to a subscription; `None` leaves a field as it is. `active: Some(true)` reactivates
/// it and resets its failure tracking.
#[derive(Debug, Default)]
pub struct SubscriptionChanges {
    pub webhook_url: Option<String>,
    pub events: Option<Vec<String>>,
    pub description: Option<String>,
    pub active: Option<bool>,
}

impl PushSubscription {
    /// Where a subscription's secret is sealed (binds the ciphertext to its row).
    pub(crate) fn secret_place(id: Uuid) -> String {
        format!("push_subscriptions/{id}/secret")
    }

    /// Creates a subscription with `secret` (sealed); `Ok(None)` when the app already has
    /// `max_per_app` subscriptions (checked under a lock on the app, so concurrent creations
    /// cannot pass it).
    ///
    /// # Errors
    /// [`DbError`] from the queries; nothing is written on error.
    pub async fn create(
        conn: &mut AsyncPgConnection,
        keyring: &Keyring,
        app_id: Uuid,
        new: &NewSubscription<'_>,
        secret: &str,
        max_per_app: usize,
    ) -> Result<Option<PushSubscription>, DbError> {
        let id = Uuid::new_v4();
        let sealed = keyring.seal_str(secret, &Self::secret_place(id));
        conn.transaction(async |conn| {
            apps::table
                .filter(apps::id.eq(app_id))
                .select(apps::id)
                .for_update()
                .first::<Uuid>(conn)
                .await?;
            let count: i64 = push_subscriptions::table
                .filter(push_subscriptions::app_id.eq(app_id))
                .count()
                .get_result(conn)
                .await?;
            if usize::try_from(count).unwrap_or(usize::MAX) >= max_per_app {
                return Ok(None);
            }
            let created = diesel::insert_into(push_subscriptions::table)
                .values((
                    push_subscriptions::id.eq(id),
                    push_subscriptions::app_id.eq(app_id),
                    push_subscriptions::webhook_url.eq(new.webhook_url),
                    push_subscriptions::events.eq(new.events),
                    push_subscriptions::description.eq(new.description),
                    push_subscriptions::secret_ciphertext.eq(&sealed.ciphertext),
                    push_subscriptions::secret_key_id.eq(&sealed.key_id),
                ))
                .returning(PushSubscription::as_returning())
                .get_result(conn)
                .await?;
            Ok(Some(created))
        })
        .await
    }

    /// The app's subscriptions, oldest first.
    ///
    /// # Errors
    /// [`DbError`] from the query.
    pub async fn list(
        conn: &mut AsyncPgConnection,
        app_id: Uuid,
    ) -> Result<Vec<PushSubscription>, DbError> {
        Ok(push_subscriptions::table
            .filter(push_subscriptions::app_id.eq(app_id))
            .order((push_subscriptions::created_at, push_subscriptions::id))
            .select(PushSubscription::as_select())
            .load(conn)
            .await?)
    }

    /// One of the app's subscriptions; `None` for an unknown id or another app's.
    ///
    /// # Errors
    /// [`DbError`] from the query.
    pub async fn find(
        conn: &mut AsyncPgConnection,
        app_id: Uuid,
        id: Uuid,
    ) -> Result<Option<PushSubscription>, DbError> {
        Ok(push_subscriptions::table
            .filter(push_subscriptions::app_id.eq(app_id))
            .filter(push_subscriptions::id.eq(id))
            .select(PushSubscription::as_select())
            .first(conn)
            .await
            .optional()?)
    }

    /// The URL and signing secrets of one of the app's subscriptions (the former secret only
    /// while its rotation's grace period lasts): what a test send to it uses. `None` for an
    /// unknown id or another app's.
    ///
    /// # Errors
    /// [`DbError`] from the query; [`DbError::Secret`] when no key of `keyring` opens a secret.
    pub async fn signing(
        conn: &mut AsyncPgConnection,
        keyring: &Keyring,
        app_id: Uuid,
        id: Uuid,
    ) -> Result<Option<(String, SecretString, Option<SecretString>)>, DbError> {
        #[derive(QueryableByName)]
        struct Sealed {
            #[diesel(sql_type = Text)]
            webhook_url: String,
            #[diesel(embed)]
            secrets: SealedSecrets,
        }
        let sealed: Option<Sealed> = diesel::sql_query(
            "SELECT webhook_url, secret_ciphertext, secret_key_id, \
               CASE WHEN previous_secret_expires_at > now() THEN previous_secret_ciphertext END \
                 AS previous_secret_ciphertext, \
               CASE WHEN previous_secret_expires_at > now() THEN previous_secret_key_id END \
                 AS previous_secret_key_id \
             FROM push_subscriptions WHERE app_id = $1 AND id = $2",
        )
        .bind::<diesel::sql_types::Uuid, _>(app_id)
        .bind::<diesel::sql_types::Uuid, _>(id)
        .get_result(conn)
        .await
        .optional()?;
        let Some(sealed) = sealed else {
            return Ok(None);
        };
        let (secret, previous) = sealed.secrets.open(keyring, id)?;
        Ok(Some((sealed.webhook_url, secret, previous)))
    }

    /// Applies `changes`; `None` for an unknown id or another app's.
    ///
    /// # Errors
    /// [`DbError`] from the query.
    pub async fn update(
        conn: &mut AsyncPgConnection,
        app_id: Uuid,
        id: Uuid,
        changes: SubscriptionChanges,
    ) -> Result<Option<PushSubscription>, DbError> {
        use push_subscriptions::dsl as s;
        let reactivate = changes.active == Some(true);
        diesel::sql_query(
            "UPDATE push_subscriptions SET \
               webhook_url = coalesce($3, webhook_url), \
               events = coalesce($4, events), \
               description = coalesce($5, description), \
               active = coalesce($6, active), \
               consecutive_failures = CASE WHEN $7 THEN 0 ELSE consecutive_failures END, \
               failing_since = CASE WHEN $7 THEN NULL ELSE failing_since END, \
               disabled_reason = CASE WHEN $7 THEN NULL ELSE disabled_reason END, \
               updated_at = now() \
             WHERE app_id = $1 AND id = $2",
        )
        .bind::<diesel::sql_types::Uuid, _>(app_id)
        .bind::<diesel::sql_types::Uuid, _>(id)
        .bind::<Nullable<Text>, _>(changes.webhook_url)
        .bind::<Nullable<Array<Text>>, _>(changes.events)
        .bind::<Nullable<Text>, _>(changes.description)
        .bind::<Nullable<Bool>, _>(changes.active)
        .bind::<Bool, _>(reactivate)
        .execute(conn)
        .await?;
        Ok(s::push_subscriptions
            .filter(s::app_id.eq(app_id))
            .filter(s::id.eq(id))
            .select(PushSubscription::as_select())
            .first(conn)
            .await
            .optional()?)
    }

    /// Deletes the subscription and its pending deliveries; false for an unknown id or another
    /// app's.
    ///
    /// # Errors
    /// [`DbError`] from the query.
    pub async fn delete(
        conn: &mut AsyncPgConnection,
        app_id: Uuid,
        id: Uuid,
    ) -> Result<bool, DbError> {
        let deleted = diesel::delete(
            push_subscriptions::table
                .filter(push_subscriptions::app_id.eq(app_id))
                .filter(push_subscriptions::id.eq(id)),
        )
        .execute(conn)
        .await?;
        Ok(deleted > 0)
    }

    /// Replaces the secret by `new_secret` (sealed); the former one keeps signing, as a second
    /// signature, for `grace_s` seconds. `None` for an unknown id or another app's. Returns the
    /// subscription and when the former secret stops signing.
    ///
    /// # Errors
    /// [`DbError`] from the query.
    pub async fn rotate_secret(
        conn: &mut AsyncPgConnection,
        keyring: &Keyring,
        app_id: Uuid,
        id: Uuid,
        new_secret: &str,
        grace_s: i64,
    ) -> Result<Option<(PushSubscription, DateTime<Utc>)>, DbError> {
        use push_subscriptions::dsl as s;
        let sealed = keyring.seal_str(new_secret, &Self::secret_place(id));
        let rotated = diesel::sql_query(
            "UPDATE push_subscriptions SET \
               previous_secret_ciphertext = secret_ciphertext, \
               previous_secret_key_id = secret_key_id, \
               previous_secret_expires_at = now() + $5 * interval '1 second', \
               secret_ciphertext = $3, secret_key_id = $4, updated_at = now() \
             WHERE app_id = $1 AND id = $2",
        )
        .bind::<diesel::sql_types::Uuid, _>(app_id)
        .bind::<diesel::sql_types::Uuid, _>(id)
        .bind::<diesel::sql_types::Bytea, _>(&sealed.ciphertext)
        .bind::<Text, _>(&sealed.key_id)
        .bind::<BigInt, _>(grace_s)
        .execute(conn)
        .await?;
        if rotated == 0 {
            return Ok(None);
        }
        let (subscription, expires_at) = s::push_subscriptions
            .filter(s::id.eq(id))
            .select((PushSubscription::as_select(), s::previous_secret_expires_at))
            .first::<(PushSubscription, Option<DateTime<Utc>>)>(conn)
            .await?;
        Ok(Some((subscription, expires_at.unwrap_or_else(Utc::now))))
    }
}
