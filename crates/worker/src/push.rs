//! The delivery loop: leases due push deliveries (`db::push`), POSTs each to its subscriber
//! outside any transaction, signed both ways (`push_sender`), and records every attempt.
//!
//! Isolation: at most `PUSH_CONCURRENCY` requests are in flight per worker, at most
//! `PUSH_PER_SUBSCRIPTION` of them to one subscription. So a receiver that hangs for the whole
//! timeout on every request holds `PUSH_PER_SUBSCRIPTION` slots, and every other receiver keeps
//! the rest; and the claim reads each subscription's due deliveries apart
//! (`db::push::claim_deliveries`), so one with a deep backlog slows no other's claim.
//!
//! Throughput: each subscription's next deliveries are leased ahead (up to three times its
//! concurrency), so a slot starts its next request as soon as one ends, without waiting for a
//! claim's round trip; the attempts are recorded by one task in batches (one transaction for
//! whatever has finished), not one transaction each.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use db::crypto::Keyring;
use db::push::{self, AttemptResult, FailurePolicy, LeasedDelivery};
use db::{DbError, Pool};
use push_sender::{Sender, Signing};

use crate::metrics::WorkerMetrics;
use crate::settings::PushSettings;

/// Attempts waiting to be recorded, in the order they ended.
type Finished = tokio::sync::mpsc::UnboundedSender<(LeasedDelivery, AttemptResult)>;

/// A subscription's deliveries a loop holds at most (waiting or in flight), in multiples of
/// `PUSH_PER_SUBSCRIPTION`: its next requests are at hand when one ends.
const LEASED_AHEAD: usize = 3;

/// Attempts recorded per transaction at most.
const RECORD_BATCH: usize = 500;

/// Sends deliveries; shared by the loop's tasks.
#[derive(Clone)]
pub(crate) struct Deliverer {
    pool: Pool,
    keyring: Arc<Keyring>,
    sender: Sender,
    settings: Arc<PushSettings>,
    metrics: WorkerMetrics,
}

/// The loop's deliveries of one subscription: leased and waiting, and requests in flight.
#[derive(Debug, Default)]
struct Lane {
    waiting: VecDeque<LeasedDelivery>,
    in_flight: usize,
}

impl Deliverer {
    pub(crate) fn new(
        pool: Pool,
        keyring: Keyring,
        settings: PushSettings,
        metrics: WorkerMetrics,
    ) -> anyhow::Result<Self> {
        let sender = Sender::new(
            settings.push_timeout_ms,
            settings.allow_private_webhook_urls,
        )?;
        Ok(Deliverer {
            pool,
            keyring: Arc::new(keyring),
            sender,
            settings: Arc::new(settings),
            metrics,
        })
    }

    /// Runs until `shutdown`. Claims due deliveries whenever one is written (`wake`), the poll
    /// interval passes, or a subscription's lane runs low: up to [`LEASED_AHEAD`] ×
    /// `PUSH_PER_SUBSCRIPTION` per subscription, counting the ones this loop holds, so each
    /// subscription has its next requests at hand and a claim's round trip never idles its
    /// slots. Sends them, at most `PUSH_PER_SUBSCRIPTION` per subscription and
    /// `PUSH_CONCURRENCY` in all at once, oldest first; hands each finished attempt to the
    /// recorder ([`Deliverer::record`]), which writes them in batches. Waits for the requests in flight and their recording before returning
    /// (deliveries still waiting are left to their leases, and sent again after them).
    pub(crate) async fn run(self, wake: Arc<Notify>, shutdown: CancellationToken) {
        let concurrency = self.settings.push_concurrency.max(1);
        let per_subscription = self.settings.push_per_subscription.max(1);
        let poll = Duration::from_millis(self.settings.push_poll_interval_ms.max(10));
        let (finished, to_record) = tokio::sync::mpsc::unbounded_channel();
        let recorder = tokio::spawn(self.clone().record(to_record));
        let mut lanes: HashMap<Uuid, Lane> = HashMap::new();
        let mut in_flight = JoinSet::new();
        // Claim on a wake-up (new deliveries), on the poll (retries falling due), and when a
        // lane runs low (its subscription may have more due); not after every request.
        let mut claim_due = true;
        while !shutdown.is_cancelled() {
            while let Some(ended) = in_flight.try_join_next() {
                claim_due |= self.ended(&mut lanes, ended, per_subscription);
            }
            let waiting: usize = lanes.values().map(|lane| lane.waiting.len()).sum();
            if claim_due && waiting < concurrency {
                claim_due = false;
                let held: Vec<(Uuid, usize)> = lanes
                    .iter()
                    .map(|(id, lane)| (*id, lane.waiting.len() + lane.in_flight))
                    .collect();
                match self
                    .claim(concurrency, LEASED_AHEAD * per_subscription, &held)
                    .await
                {
                    Ok(leased) => {
                        for delivery in leased {
                            lanes
                                .entry(delivery.subscription_id)
                                .or_default()
                                .waiting
                                .push_back(delivery);
                        }
                    }
                    Err(error) => {
                        tracing::warn!(error = %error, "Claiming push deliveries failed; will retry.")
                    }
                }
            }
            // Start what may start, oldest lease first within each subscription.
            for lane in lanes.values_mut() {
                while lane.in_flight < per_subscription && in_flight.len() < concurrency {
                    let Some(delivery) = lane.waiting.pop_front() else {
                        break;
                    };
                    lane.in_flight += 1;
                    let (deliverer, finished) = (self.clone(), finished.clone());
                    in_flight.spawn(async move { deliverer.deliver(delivery, finished).await });
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = wake.notified() => claim_due = true,
                Some(ended) = in_flight.join_next(), if !in_flight.is_empty() => {
                    claim_due |= self.ended(&mut lanes, ended, per_subscription);
                }
                () = tokio::time::sleep(poll) => claim_due = true,
            }
        }
        while let Some(ended) = in_flight.join_next().await {
            self.ended(&mut lanes, ended, per_subscription);
        }
        drop(finished);
        let _ = recorder.await;
    }

    /// A request ended: its subscription has one fewer in flight. Whether its lane runs low
    /// (at most `per_subscription` waiting): then claim again.
    fn ended(
        &self,
        lanes: &mut HashMap<Uuid, Lane>,
        ended: Result<Uuid, tokio::task::JoinError>,
        per_subscription: usize,
    ) -> bool {
        let Ok(subscription_id) = ended else {
            tracing::error!("A push request task failed.");
            return true;
        };
        let Some(lane) = lanes.get_mut(&subscription_id) else {
            return true;
        };
        lane.in_flight -= 1;
        let low = lane.waiting.len() <= per_subscription;
        if lane.in_flight == 0 && lane.waiting.is_empty() {
            lanes.remove(&subscription_id);
        }
        low
    }

    /// Leases up to `limit` deliveries, at most `per_subscription` per subscription counting
    /// those the loop holds (`held`).
    async fn claim(
        &self,
        limit: usize,
        per_subscription: usize,
        held: &[(Uuid, usize)],
    ) -> Result<Vec<LeasedDelivery>, DbError> {
        let mut conn = self.pool.get().await?;
        push::claim_deliveries(&mut conn, limit, per_subscription, held, self.lease_ms()).await
    }

    /// The lease covers the wait behind the requests leased before it in its lane (at most
    /// `LEASED_AHEAD - 1` rounds, each at most the timeout) and its own request, with room to
    /// record the attempt.
    fn lease_ms(&self) -> u64 {
        self.settings
            .push_timeout_ms
            .saturating_mul(LEASED_AHEAD as u64 + 1)
            .max(10_000)
    }

    /// Sends one delivery and hands its attempt to the recorder; its slot is free as soon as
    /// the request ends (the lease keeps the delivery from being taken again until recorded).
    /// Returns its subscription's id.
    async fn deliver(&self, delivery: LeasedDelivery, finished: Finished) -> Uuid {
        let result = match delivery.secrets(&self.keyring) {
            Ok((secret, previous)) => self.send(&delivery, &secret, previous.as_ref()).await,
            Err(error) => {
                tracing::error!(subscription.id = %delivery.subscription_id, error = %error, "A subscription's secret does not open.");
                failed(
                    &delivery,
                    None,
                    0,
                    "the subscription's secret cannot be opened".into(),
                    None,
                    &self.settings,
                )
            }
        };
        let subscription_id = delivery.subscription_id;
        // The recorder outlives every sender; a closed channel cannot happen.
        let _ = finished.send((delivery, result));
        subscription_id
    }

    /// Records finished attempts until every sender is gone: whatever has finished, up to
    /// [`RECORD_BATCH`], in one transaction (`db::push::record_attempts`). A database failure
    /// leaves their leases to expire, so those deliveries are sent again (at-least-once, same
    /// `webhook-id`).
    async fn record(
        self,
        mut finished: tokio::sync::mpsc::UnboundedReceiver<(LeasedDelivery, AttemptResult)>,
    ) {
        let policy = FailurePolicy {
            max_consecutive_failures: self.settings.push_max_consecutive_failures,
            max_failing_s: i64::from(self.settings.push_disable_after_hours) * 3_600,
        };
        let mut batch = Vec::with_capacity(RECORD_BATCH);
        while finished.recv_many(&mut batch, RECORD_BATCH).await > 0 {
            for (_, result) in &batch {
                let outcome = match (&result.error, result.retry_in_ms) {
                    (None, _) => "delivered",
                    (Some(_), Some(_)) => "retrying",
                    (Some(_), None) => "failed",
                };
                self.metrics.deliveries.with_label_values(&[outcome]).inc();
                self.metrics
                    .delivery_latency
                    .with_label_values(&[outcome])
                    .observe(f64::from(result.latency_ms) / 1_000.0);
            }
            let recorded = match self.pool.get().await {
                Ok(mut conn) => push::record_attempts(&mut conn, &batch, policy).await,
                Err(error) => Err(error.into()),
            };
            match recorded {
                Ok(n) if n < batch.len() => {
                    let lost = batch.len() - n;
                    self.metrics
                        .deliveries
                        .with_label_values(&["lease_lost"])
                        .inc_by(u64::try_from(lost).unwrap_or(u64::MAX));
                    tracing::info!(
                        lost,
                        "Push delivery leases lost; those attempts are not recorded."
                    );
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(
                    attempts = batch.len(),
                    error = %error,
                    "Recording push attempts failed; those deliveries will be sent again."
                ),
            }
            batch.clear();
        }
    }

    /// POSTs the body (`push_sender`) and turns what happened into the attempt's result:
    /// a retry per the schedule (or `Retry-After`) after a failure, none after `410 Gone`,
    /// which disables the subscription.
    async fn send(
        &self,
        delivery: &LeasedDelivery,
        secret: &SecretString,
        previous: Option<&SecretString>,
    ) -> AttemptResult {
        let body = serde_json::to_vec(&delivery.body).unwrap_or_default();
        let signing = Signing {
            secret: secret.expose_secret(),
            previous: previous.map(|p| p.expose_secret()),
        };
        let outcome = self
            .sender
            .send(
                &delivery.webhook_url,
                &delivery.event_id.to_string(),
                body,
                signing,
            )
            .await;
        let Some(error) = outcome.error else {
            return AttemptResult {
                status_code: outcome.status_code,
                latency_ms: outcome.latency_ms,
                error: None,
                retry_in_ms: None,
                disable: None,
            };
        };
        let mut result = failed(
            delivery,
            outcome.status_code,
            outcome.latency_ms,
            error,
            outcome.retry_after_s,
            &self.settings,
        );
        if outcome.status_code == Some(410) {
            result.retry_in_ms = None;
            result.disable = Some("the receiver answered 410 Gone".into());
        }
        result
    }
}

/// A failed attempt, with its retry per the schedule (none after the last).
fn failed(
    delivery: &LeasedDelivery,
    status_code: Option<u16>,
    latency_ms: u32,
    error: String,
    retry_after_s: Option<u64>,
    settings: &PushSettings,
) -> AttemptResult {
    let attempt = u32::try_from(delivery.attempt).unwrap_or(u32::MAX);
    let retry_in_ms = domain::push::retry_delay_ms(
        &settings.retry_schedule_ms(),
        attempt,
        retry_after_s,
        rand::rng().random::<f64>(),
    );
    AttemptResult {
        status_code,
        latency_ms,
        error: Some(error),
        retry_in_ms,
        disable: None,
    }
}
