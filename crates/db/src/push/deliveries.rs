//! Deliveries: leased to a delivery loop, attempted outside any transaction, recorded (with
//! the subscription's failure tracking) only while the lease holds.

use super::*;

/// A leased delivery, with what sending it needs.
#[derive(Debug, Clone, QueryableByName)]
pub struct LeasedDelivery {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub event_id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub subscription_id: Uuid,
    /// This attempt's number, from 1.
    #[diesel(sql_type = Integer)]
    pub attempt: i32,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub lease_token: Uuid,
    #[diesel(sql_type = Text)]
    pub webhook_url: String,
    #[diesel(sql_type = Jsonb)]
    pub body: Value,
    #[diesel(sql_type = diesel::sql_types::Bytea)]
    secret_ciphertext: Vec<u8>,
    #[diesel(sql_type = Text)]
    secret_key_id: String,
    /// The former secret while a rotation's grace period lasts.
    #[diesel(sql_type = Nullable<diesel::sql_types::Bytea>)]
    previous_secret_ciphertext: Option<Vec<u8>>,
    #[diesel(sql_type = Nullable<Text>)]
    previous_secret_key_id: Option<String>,
}

impl LeasedDelivery {
    /// The subscription's secret (`whsec_...`).
    ///
    /// # Errors
    /// [`DbError::Secret`] when no key of `keyring` opens it.
    pub fn secret(&self, keyring: &Keyring) -> Result<SecretString, DbError> {
        Ok(keyring.open_str(
            &self.secret_ciphertext,
            &self.secret_key_id,
            &PushSubscription::secret_place(self.subscription_id),
        )?)
    }

    /// The former secret, while a rotation's grace period lasts: deliveries carry a second
    /// signature made with it.
    ///
    /// # Errors
    /// [`DbError::Secret`] when no key of `keyring` opens it.
    pub fn previous_secret(&self, keyring: &Keyring) -> Result<Option<SecretString>, DbError> {
        let (Some(ciphertext), Some(key_id)) = (
            &self.previous_secret_ciphertext,
            &self.previous_secret_key_id,
        ) else {
            return Ok(None);
        };
        Ok(Some(keyring.open_str(
            ciphertext,
            key_id,
            &PushSubscription::secret_place(self.subscription_id),
        )?))
    }
}

/// Leases up to `limit` due deliveries of active subscriptions for `lease_ms` milliseconds,
/// at most `per_subscription` of each subscription and none of `busy` (subscriptions this loop
/// already has requests in flight to: a hanging receiver holds no more of the loop). Oldest
/// due first.
///
/// # Errors
/// [`DbError`] from the query.
pub async fn claim_deliveries(
    conn: &mut AsyncPgConnection,
    limit: usize,
    per_subscription: usize,
    busy: &[Uuid],
    lease_ms: u64,
) -> Result<Vec<LeasedDelivery>, DbError> {
    let to_i64 = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    Ok(diesel::sql_query(
        "WITH due AS ( \
           SELECT d.id, d.subscription_id, d.next_attempt_at FROM push_deliveries d \
           JOIN push_subscriptions s ON s.id = d.subscription_id AND s.active \
           WHERE d.status = 'pending' AND d.next_attempt_at <= now() \
             AND d.subscription_id <> ALL ($4::uuid[]) \
           ORDER BY d.next_attempt_at, d.id LIMIT $1 * 4 \
           FOR UPDATE OF d SKIP LOCKED \
         ), chosen AS ( \
           SELECT id FROM ( \
             SELECT id, next_attempt_at, row_number() OVER ( \
               PARTITION BY subscription_id ORDER BY next_attempt_at, id) AS nth FROM due \
           ) ranked WHERE nth <= $2 ORDER BY next_attempt_at, id LIMIT $1 \
         ) \
         UPDATE push_deliveries d SET attempts = d.attempts + 1, lease_token = gen_random_uuid(), \
           next_attempt_at = now() + $3 * interval '1 millisecond', updated_at = now() \
         FROM chosen, push_events e, push_subscriptions s \
         WHERE d.id = chosen.id AND e.id = d.event_id AND s.id = d.subscription_id \
         RETURNING d.id, d.event_id, d.subscription_id, d.attempts AS attempt, d.lease_token, \
           s.webhook_url, e.body, s.secret_ciphertext, s.secret_key_id, \
           CASE WHEN s.previous_secret_expires_at > now() THEN s.previous_secret_ciphertext END \
             AS previous_secret_ciphertext, \
           CASE WHEN s.previous_secret_expires_at > now() THEN s.previous_secret_key_id END \
             AS previous_secret_key_id",
    )
    .bind::<BigInt, _>(to_i64(limit))
    .bind::<BigInt, _>(to_i64(per_subscription))
    .bind::<BigInt, _>(i64::try_from(lease_ms).unwrap_or(i64::MAX))
    .bind::<Array<diesel::sql_types::Uuid>, _>(busy)
    .load(conn)
    .await?)
}

/// How an attempt ended.
#[derive(Debug, Clone)]
pub struct AttemptResult {
    /// The receiver's status code; `None` when no response came.
    pub status_code: Option<u16>,
    pub latency_ms: u32,
    /// Why it failed (a connection error, a timeout, or a non-2xx status), if it did.
    pub error: Option<String>,
    /// When to try again after a failure; `None` after a success or the last attempt.
    pub retry_in_ms: Option<u64>,
    /// Deactivate the subscription with this reason (e.g. the receiver answered 410 Gone).
    pub disable: Option<String>,
}

/// Failure tracking that deactivates a subscription.
#[derive(Debug, Clone, Copy)]
pub struct FailurePolicy {
    /// Failed attempts in a row after which the subscription is deactivated.
    pub max_consecutive_failures: i32,
    /// How long, in seconds, a subscription may fail every attempt before it is deactivated.
    pub max_failing_s: i64,
}

/// Records an attempt of a leased delivery: logs it, settles or reschedules the delivery, and
/// tracks the subscription's failures (deactivating it per `policy` or `result.disable`).
/// Returns false, changing nothing, when the lease was lost (expired and taken by another
/// loop, or the delivery is gone).
///
/// # Errors
/// [`DbError`] from the queries; nothing is written on error.
pub async fn record_attempt(
    conn: &mut AsyncPgConnection,
    delivery: &LeasedDelivery,
    result: &AttemptResult,
    policy: FailurePolicy,
) -> Result<bool, DbError> {
    let succeeded = result.error.is_none();
    let status = match (succeeded, result.retry_in_ms) {
        (true, _) => "delivered",
        (false, Some(_)) => "pending",
        (false, None) => "failed",
    };
    let retry_ms = i64::try_from(result.retry_in_ms.unwrap_or(0)).unwrap_or(i64::MAX);
    let code = result.status_code.map(i32::from);
    let latency = i32::try_from(result.latency_ms).unwrap_or(i32::MAX);
    conn.transaction(async |conn| {
        let settled = diesel::sql_query(
            "UPDATE push_deliveries SET status = $3, lease_token = NULL, \
               next_attempt_at = now() + $4 * interval '1 millisecond', \
               last_status_code = $5, last_error = $6, updated_at = now() \
             WHERE id = $1 AND lease_token = $2",
        )
        .bind::<BigInt, _>(delivery.id)
        .bind::<diesel::sql_types::Uuid, _>(delivery.lease_token)
        .bind::<Text, _>(status)
        .bind::<BigInt, _>(retry_ms)
        .bind::<Nullable<Integer>, _>(code)
        .bind::<Nullable<Text>, _>(result.error.as_deref())
        .execute(conn)
        .await?;
        if settled == 0 {
            return Ok(false);
        }
        diesel::sql_query(
            "INSERT INTO push_attempts \
               (delivery_id, subscription_id, attempt, status_code, latency_ms, error) \
             VALUES ($1, $6, $2, $3, $4, $5)",
        )
        .bind::<BigInt, _>(delivery.id)
        .bind::<Integer, _>(delivery.attempt)
        .bind::<Nullable<Integer>, _>(code)
        .bind::<Integer, _>(latency)
        .bind::<Nullable<Text>, _>(result.error.as_deref())
        .bind::<diesel::sql_types::Uuid, _>(delivery.subscription_id)
        .execute(conn)
        .await?;
        if succeeded {
            diesel::sql_query(
                "UPDATE push_subscriptions SET consecutive_failures = 0, last_success_at = now(), \
                   failing_since = NULL, updated_at = now() WHERE id = $1",
            )
            .bind::<diesel::sql_types::Uuid, _>(delivery.subscription_id)
            .execute(conn)
            .await?;
        } else {
            diesel::sql_query(
                "UPDATE push_subscriptions SET consecutive_failures = consecutive_failures + 1, \
                   last_failure_at = now(), failing_since = coalesce(failing_since, now()), \
                   active = active AND $2::text IS NULL \
                     AND consecutive_failures + 1 < $3 \
                     AND coalesce(failing_since, now()) > now() - $4 * interval '1 second', \
                   disabled_reason = CASE \
                     WHEN NOT active THEN disabled_reason \
                     WHEN $2::text IS NOT NULL THEN $2 \
                     WHEN consecutive_failures + 1 >= $3 THEN \
                       'deactivated after ' || (consecutive_failures + 1) || ' failed attempts in a row' \
                     WHEN coalesce(failing_since, now()) <= now() - $4 * interval '1 second' THEN \
                       'deactivated after failing every attempt since ' || failing_since \
                     ELSE disabled_reason END, \
                   updated_at = now() \
                 WHERE id = $1",
            )
            .bind::<diesel::sql_types::Uuid, _>(delivery.subscription_id)
            .bind::<Nullable<Text>, _>(result.disable.as_deref())
            .bind::<Integer, _>(policy.max_consecutive_failures)
            .bind::<BigInt, _>(policy.max_failing_s)
            .execute(conn)
            .await?;
        }
        Ok(true)
    })
    .await
}

/// One attempt of a subscription's delivery, as its tenant sees it in the attempt log.
#[derive(Debug, Clone, QueryableByName)]
pub struct AttemptRecord {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = BigInt)]
    pub delivery_id: i64,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub event_id: Uuid,
    #[diesel(sql_type = Text)]
    pub event_type: String,
    #[diesel(sql_type = Integer)]
    pub attempt: i32,
    #[diesel(sql_type = Nullable<Integer>)]
    pub status_code: Option<i32>,
    /// Milliseconds.
    #[diesel(sql_type = Integer)]
    pub latency_ms: i32,
    #[diesel(sql_type = Nullable<Text>)]
    pub error: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    pub attempted_at: DateTime<Utc>,
    /// The delivery's state now: `pending`, `delivered` or `failed`.
    #[diesel(sql_type = Text)]
    pub delivery_status: String,
}

/// A page of a subscription's attempt log, newest first: at most `limit` attempts older than
/// `before` (an attempt id; `None`: the newest). One range of `push_attempts_subscription_idx`.
///
/// # Errors
/// [`DbError`] from the query.
pub async fn attempts(
    conn: &mut AsyncPgConnection,
    app_id: Uuid,
    subscription_id: Uuid,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<AttemptRecord>, DbError> {
    Ok(diesel::sql_query(
        "SELECT a.id, a.delivery_id, d.event_id, e.event_type, a.attempt, a.status_code, \
           a.latency_ms, a.error, a.attempted_at, d.status AS delivery_status \
         FROM push_attempts a \
         JOIN push_deliveries d ON d.id = a.delivery_id AND d.app_id = $1 \
         JOIN push_events e ON e.id = d.event_id \
         WHERE a.subscription_id = $2 AND a.id < coalesce($3, 9223372036854775807) \
         ORDER BY a.id DESC LIMIT $4",
    )
    .bind::<diesel::sql_types::Uuid, _>(app_id)
    .bind::<diesel::sql_types::Uuid, _>(subscription_id)
    .bind::<Nullable<BigInt>, _>(before)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await?)
}

/// Queues an app's delivery again, now, with a fresh retry schedule (`attempts` back to 0):
/// `false` for an unknown delivery or another app's.
///
/// # Errors
/// [`DbError`] from the query.
pub async fn resend(
    conn: &mut AsyncPgConnection,
    app_id: Uuid,
    delivery_id: i64,
) -> Result<bool, DbError> {
    let queued = diesel::sql_query(
        "UPDATE push_deliveries SET status = 'pending', attempts = 0, lease_token = NULL, \
           next_attempt_at = now(), updated_at = now() \
         WHERE id = $1 AND app_id = $2",
    )
    .bind::<BigInt, _>(delivery_id)
    .bind::<diesel::sql_types::Uuid, _>(app_id)
    .execute(conn)
    .await?;
    Ok(queued > 0)
}
