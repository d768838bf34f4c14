//! The delivery loop: leases due push deliveries (`db::push`), POSTs each to its subscriber
//! outside any transaction, signed both ways (`push_sender`), and records every attempt.
//!
//! Isolation: at most `PUSH_CONCURRENCY` requests are in flight per worker, at most
//! `PUSH_PER_SUBSCRIPTION` of them to one subscription, and a subscription with requests in
//! flight gets no more until they end. So a receiver that hangs for the whole timeout on every
//! request holds `PUSH_PER_SUBSCRIPTION` slots, and every other receiver keeps the rest.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
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

use crate::settings::PushSettings;

/// Sends deliveries; shared by the loop's tasks.
#[derive(Clone)]
pub(crate) struct Deliverer {
    pool: Pool,
    keyring: Arc<Keyring>,
    sender: Sender,
    settings: Arc<PushSettings>,
    /// Requests in flight, by subscription.
    busy: Arc<Mutex<HashMap<Uuid, usize>>>,
}

impl Deliverer {
    pub(crate) fn new(
        pool: Pool,
        keyring: Keyring,
        settings: PushSettings,
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
            busy: Arc::default(),
        })
    }

    /// Runs until `shutdown`: claims as many due deliveries as there are free slots whenever a
    /// delivery is written (`wake`), a request ends, or the poll interval passes; waits for
    /// the requests in flight before returning.
    pub(crate) async fn run(self, wake: Arc<Notify>, shutdown: CancellationToken) {
        let concurrency = self.settings.push_concurrency.max(1);
        let poll = Duration::from_millis(self.settings.push_poll_interval_ms.max(10));
        let mut in_flight = JoinSet::new();
        while !shutdown.is_cancelled() {
            let free = concurrency.saturating_sub(in_flight.len());
            if free > 0 {
                match self.claim(free).await {
                    Ok(leased) => {
                        for delivery in leased {
                            let deliverer = self.clone();
                            in_flight.spawn(async move { deliverer.deliver(delivery).await });
                        }
                    }
                    Err(error) => {
                        tracing::warn!(error = %error, "Claiming push deliveries failed; will retry.")
                    }
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = wake.notified() => {}
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
                () = tokio::time::sleep(poll) => {}
            }
        }
        while in_flight.join_next().await.is_some() {}
    }

    /// Leases up to `free` deliveries of subscriptions with no request in flight, and marks
    /// their subscriptions busy.
    async fn claim(&self, free: usize) -> Result<Vec<LeasedDelivery>, DbError> {
        let busy: Vec<Uuid> = self
            .busy
            .lock()
            .expect("not poisoned")
            .keys()
            .copied()
            .collect();
        let mut conn = self.pool.get().await?;
        let leased = push::claim_deliveries(
            &mut conn,
            free,
            self.settings.push_per_subscription.max(1),
            &busy,
            self.lease_ms(),
        )
        .await?;
        let mut busy = self.busy.lock().expect("not poisoned");
        for delivery in &leased {
            *busy.entry(delivery.subscription_id).or_default() += 1;
        }
        Ok(leased)
    }

    /// The lease outlives the request's timeout with room to record the attempt.
    fn lease_ms(&self) -> u64 {
        self.settings.push_timeout_ms.saturating_mul(2).max(10_000)
    }

    /// Sends one delivery and records the attempt; a database failure leaves the lease to
    /// expire, so the delivery is sent again (at-least-once, same `webhook-id`).
    async fn deliver(&self, delivery: LeasedDelivery) {
        let secrets = delivery
            .secret(&self.keyring)
            .and_then(|secret| Ok((secret, delivery.previous_secret(&self.keyring)?)));
        let result = match secrets {
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
        let policy = FailurePolicy {
            max_consecutive_failures: self.settings.push_max_consecutive_failures,
            max_failing_s: i64::from(self.settings.push_disable_after_hours) * 3_600,
        };
        let recorded = match self.pool.get().await {
            Ok(mut conn) => push::record_attempt(&mut conn, &delivery, &result, policy).await,
            Err(error) => Err(error.into()),
        };
        match recorded {
            Ok(true) => {}
            Ok(false) => tracing::info!(
                delivery.id = delivery.id,
                "Push delivery lease lost; its attempt is not recorded."
            ),
            Err(error) => {
                tracing::warn!(delivery.id = delivery.id, error = %error, "Recording a push attempt failed; the delivery will be sent again.")
            }
        }
        let mut busy = self.busy.lock().expect("not poisoned");
        if let Some(count) = busy.get_mut(&delivery.subscription_id) {
            *count -= 1;
            if *count == 0 {
                busy.remove(&delivery.subscription_id);
            }
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
