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
    #[diesel(embed)]
    secrets: SealedSecrets,
}

impl LeasedDelivery {
    /// The subscription's secret (`whsec_...`) and, while a rotation's grace period lasts, the
    /// former one (deliveries then carry a second signature made with it).
    ///
    /// # Errors
    /// [`DbError::Secret`] when no key of `keyring` opens one.
    pub fn secrets(
        &self,
        keyring: &Keyring,
    ) -> Result<(SecretString, Option<SecretString>), DbError> {
        self.secrets.open(keyring, self.subscription_id)
    }
}

/// Leases up to `limit` due deliveries of active subscriptions for `lease_ms` milliseconds,
/// oldest due first, giving each subscription at most `per_subscription` requests in flight
/// counting those the caller already has (`in_flight`: `(subscription_id, requests)`), so a
/// hanging receiver holds at most `per_subscription` of a loop's requests.
///
/// # Plan
/// One probe of `push_deliveries_subscription_due_idx` per active subscription with room, each
/// reading at most its room of rows: a subscription with a deep backlog, or one whose requests
/// hang, costs the claim nothing beyond its own probe (a scan of the global due order would
/// step over every one of its due rows on every claim). The cost grows with the number of
/// active subscriptions (20 per app at most), not with the deliveries pending: `EXPLAIN
/// ANALYZE` with 2,000 active subscriptions and 1M pending deliveries (900k of one
/// subscription), 4.6–5.7 ms (a seq scan of `push_subscriptions`, a nested loop of index
/// scans on `push_deliveries_subscription_due_idx`). With Postgres' JIT on, the planner's
/// estimate of the `LATERAL … LIMIT` (a tenth of the table) made it compile for 150 ms: the
/// pool turns JIT off (`crate::pool`).
///
/// # Errors
/// [`DbError`] from the query.
pub async fn claim_deliveries(
    conn: &mut AsyncPgConnection,
    limit: usize,
    per_subscription: usize,
    in_flight: &[(Uuid, usize)],
    lease_ms: u64,
) -> Result<Vec<LeasedDelivery>, DbError> {
    let to_i64 = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    let (busy, requests): (Vec<Uuid>, Vec<i64>) =
        in_flight.iter().map(|(id, n)| (*id, to_i64(*n))).unzip();
    Ok(diesel::sql_query(
        "WITH room AS ( \
           SELECT s.id, $2 - coalesce(f.requests, 0) AS room FROM push_subscriptions s \
           LEFT JOIN unnest($4::uuid[], $5::bigint[]) AS f (id, requests) ON f.id = s.id \
           WHERE s.active AND $2 - coalesce(f.requests, 0) > 0 \
         ), due AS ( \
           SELECT d.id, d.next_attempt_at FROM room CROSS JOIN LATERAL ( \
             SELECT d.id, d.next_attempt_at FROM push_deliveries d \
             WHERE d.subscription_id = room.id AND d.status = 'pending' \
               AND d.next_attempt_at <= now() \
             ORDER BY d.next_attempt_at, d.id LIMIT room.room \
             FOR UPDATE SKIP LOCKED) d \
           ORDER BY d.next_attempt_at, d.id LIMIT $1 \
         ) \
         UPDATE push_deliveries d SET attempts = d.attempts + 1, lease_token = gen_random_uuid(), \
           next_attempt_at = now() + $3 * interval '1 millisecond', updated_at = now() \
         FROM due, push_events e, push_subscriptions s \
         WHERE d.id = due.id AND e.id = d.event_id AND s.id = d.subscription_id \
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
    .bind::<Array<BigInt>, _>(requests)
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

/// What a batch of attempts did to one subscription, in the order they ended.
#[derive(Debug, Default)]
struct SubscriptionOutcome {
    succeeded: bool,
    failed: bool,
    /// Failures after the batch's last success (all of them without one).
    trailing_failures: i32,
    disable: Option<String>,
}

/// Records attempts of leased deliveries, in the order they ended, in one transaction: logs
/// each, settles or reschedules each delivery, and tracks each subscription's failures
/// (deactivating it per `policy` or a result's `disable`). An attempt whose lease was lost
/// (expired and taken by another loop, or the delivery is gone) changes nothing. Returns how
/// many attempts were recorded.
///
/// # Errors
/// [`DbError`] from the queries; nothing is written on error.
pub async fn record_attempts(
    conn: &mut AsyncPgConnection,
    attempts: &[(LeasedDelivery, AttemptResult)],
    policy: FailurePolicy,
) -> Result<usize, DbError> {
    if attempts.is_empty() {
        return Ok(0);
    }
    let mut ids = Vec::new();
    let mut tokens = Vec::new();
    let mut statuses = Vec::new();
    let mut retries = Vec::new();
    let mut codes = Vec::new();
    let mut errors = Vec::new();
    for (delivery, result) in attempts {
        ids.push(delivery.id);
        tokens.push(delivery.lease_token);
        statuses.push(match (result.error.is_none(), result.retry_in_ms) {
            (true, _) => "delivered",
            (false, Some(_)) => "pending",
            (false, None) => "failed",
        });
        retries.push(i64::try_from(result.retry_in_ms.unwrap_or(0)).unwrap_or(i64::MAX));
        codes.push(result.status_code.map(i32::from));
        errors.push(result.error.as_deref());
    }
    conn.transaction(async |conn| {
        #[derive(QueryableByName)]
        struct Settled {
            #[diesel(sql_type = BigInt)]
            id: i64,
        }
        let settled: HashSet<i64> = diesel::sql_query(
            "UPDATE push_deliveries d SET status = k.status, lease_token = NULL, \
               next_attempt_at = now() + k.retry_ms * interval '1 millisecond', \
               last_status_code = k.code, last_error = k.error, updated_at = now() \
             FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::bigint[], $5::int[], \
               $6::text[]) AS k (id, lease_token, status, retry_ms, code, error) \
             WHERE d.id = k.id AND d.lease_token = k.lease_token \
             RETURNING d.id",
        )
        .bind::<Array<BigInt>, _>(&ids)
        .bind::<Array<diesel::sql_types::Uuid>, _>(&tokens)
        .bind::<Array<Text>, _>(&statuses)
        .bind::<Array<BigInt>, _>(&retries)
        .bind::<Array<Nullable<Integer>>, _>(&codes)
        .bind::<Array<Nullable<Text>>, _>(&errors)
        .load::<Settled>(conn)
        .await?
        .into_iter()
        .map(|s| s.id)
        .collect();
        let recorded: Vec<&(LeasedDelivery, AttemptResult)> = attempts
            .iter()
            .filter(|(delivery, _)| settled.contains(&delivery.id))
            .collect();
        if recorded.is_empty() {
            return Ok(0);
        }
        log_attempts(conn, &recorded).await?;
        let mut outcomes: std::collections::BTreeMap<Uuid, SubscriptionOutcome> =
            std::collections::BTreeMap::new();
        for (delivery, result) in &recorded {
            let outcome = outcomes.entry(delivery.subscription_id).or_default();
            if result.error.is_none() {
                outcome.succeeded = true;
                outcome.trailing_failures = 0;
            } else {
                outcome.failed = true;
                outcome.trailing_failures += 1;
            }
            if let Some(reason) = &result.disable {
                outcome.disable = Some(reason.clone());
            }
        }
        track_failures(conn, &outcomes, policy).await?;
        Ok(recorded.len())
    })
    .await
}

/// Appends attempts to the attempt log (one statement).
async fn log_attempts(
    conn: &mut AsyncPgConnection,
    recorded: &[&(LeasedDelivery, AttemptResult)],
) -> Result<(), DbError> {
    let ids: Vec<i64> = recorded.iter().map(|(d, _)| d.id).collect();
    let subscriptions: Vec<Uuid> = recorded.iter().map(|(d, _)| d.subscription_id).collect();
    let numbers: Vec<i32> = recorded.iter().map(|(d, _)| d.attempt).collect();
    let codes: Vec<Option<i32>> = recorded
        .iter()
        .map(|(_, r)| r.status_code.map(i32::from))
        .collect();
    let latencies: Vec<i32> = recorded
        .iter()
        .map(|(_, r)| i32::try_from(r.latency_ms).unwrap_or(i32::MAX))
        .collect();
    let errors: Vec<Option<&str>> = recorded.iter().map(|(_, r)| r.error.as_deref()).collect();
    diesel::sql_query(
        "INSERT INTO push_attempts \
           (delivery_id, subscription_id, attempt, status_code, latency_ms, error) \
         SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::int[], $4::int[], $5::int[], \
           $6::text[])",
    )
    .bind::<Array<BigInt>, _>(ids)
    .bind::<Array<diesel::sql_types::Uuid>, _>(subscriptions)
    .bind::<Array<Integer>, _>(numbers)
    .bind::<Array<Nullable<Integer>>, _>(codes)
    .bind::<Array<Integer>, _>(latencies)
    .bind::<Array<Nullable<Text>>, _>(errors)
    .execute(conn)
    .await?;
    Ok(())
}

/// Updates each subscription's failure tracking from a batch's outcomes, deactivating it after
/// `policy.max_consecutive_failures` failures in a row, after failing every attempt for
/// `policy.max_failing_s`, or at once with a `disable` reason. The rows are locked in id order
/// first (`outcomes` is sorted), so concurrent recorders cannot deadlock.
async fn track_failures(
    conn: &mut AsyncPgConnection,
    outcomes: &std::collections::BTreeMap<Uuid, SubscriptionOutcome>,
    policy: FailurePolicy,
) -> Result<(), DbError> {
    let ids: Vec<Uuid> = outcomes.keys().copied().collect();
    let succeeded: Vec<bool> = outcomes.values().map(|o| o.succeeded).collect();
    let failed: Vec<bool> = outcomes.values().map(|o| o.failed).collect();
    let trailing: Vec<i32> = outcomes.values().map(|o| o.trailing_failures).collect();
    let disable: Vec<Option<&str>> = outcomes.values().map(|o| o.disable.as_deref()).collect();
    diesel::sql_query(
        "SELECT count(*) FROM (SELECT 1 FROM push_subscriptions WHERE id = ANY ($1) \
           ORDER BY id FOR NO KEY UPDATE) AS locked",
    )
    .bind::<Array<diesel::sql_types::Uuid>, _>(&ids)
    .execute(conn)
    .await?;
    // `n`: the consecutive failures after this batch; `since`: when the failing began.
    diesel::sql_query(
        "UPDATE push_subscriptions s SET \
           consecutive_failures = n.failures, \
           last_success_at = CASE WHEN k.succeeded THEN now() ELSE s.last_success_at END, \
           last_failure_at = CASE WHEN k.failed THEN now() ELSE s.last_failure_at END, \
           failing_since = n.since, \
           active = s.active AND k.disable_reason IS NULL AND n.failures < $6 \
             AND coalesce(n.since, now()) > now() - $7 * interval '1 second', \
           disabled_reason = CASE \
             WHEN NOT s.active THEN s.disabled_reason \
             WHEN k.disable_reason IS NOT NULL THEN k.disable_reason \
             WHEN n.failures >= $6 THEN \
               'deactivated after ' || n.failures || ' failed attempts in a row' \
             WHEN coalesce(n.since, now()) <= now() - $7 * interval '1 second' THEN \
               'deactivated after failing every attempt since ' || n.since \
             ELSE s.disabled_reason END, \
           updated_at = now() \
         FROM unnest($1::uuid[], $2::bool[], $3::bool[], $4::int[], $5::text[]) \
           AS k (id, succeeded, failed, trailing_failures, disable_reason) \
         JOIN push_subscriptions o ON o.id = k.id \
         CROSS JOIN LATERAL (SELECT \
           CASE WHEN k.succeeded THEN k.trailing_failures ELSE o.consecutive_failures + k.trailing_failures END \
             AS failures, \
           CASE WHEN k.trailing_failures = 0 THEN NULL \
             WHEN k.succeeded THEN now() \
             ELSE coalesce(o.failing_since, now()) END AS since) n \
         WHERE s.id = k.id",
    )
    .bind::<Array<diesel::sql_types::Uuid>, _>(&ids)
    .bind::<Array<Bool>, _>(succeeded)
    .bind::<Array<Bool>, _>(failed)
    .bind::<Array<Integer>, _>(trailing)
    .bind::<Array<Nullable<Text>>, _>(disable)
    .bind::<Integer, _>(policy.max_consecutive_failures)
    .bind::<BigInt, _>(policy.max_failing_s)
    .execute(conn)
    .await?;
    Ok(())
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
