//! The delivery loop: leases due push deliveries (`db::push`), POSTs each to its subscriber
//! outside any transaction, signed both ways (`domain::push`), and records every attempt.
//!
//! Isolation: at most `PUSH_CONCURRENCY` requests are in flight per worker, at most
//! `PUSH_PER_SUBSCRIPTION` of them to one subscription, and a subscription with requests in
//! flight gets no more until they end. So a receiver that hangs for the whole timeout on every
//! request holds `PUSH_PER_SUBSCRIPTION` slots, and every other receiver keeps the rest.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use db::crypto::Keyring;
use db::push::{self, AttemptResult, FailurePolicy, LeasedDelivery};
use db::{DbError, Pool};

use crate::settings::PushSettings;

/// Longest response body read from a receiver; the rest is ignored.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Sends deliveries; shared by the loop's tasks.
#[derive(Clone)]
pub(crate) struct Deliverer {
    pool: Pool,
    keyring: Arc<Keyring>,
    client: reqwest::Client,
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
        let mut client = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.push_timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("cti-server/", env!("CARGO_PKG_VERSION")));
        if !settings.allow_private_webhook_urls {
            client = client.dns_resolver(Arc::new(PublicOnly));
        }
        let client = client.build()?;
        Ok(Deliverer {
            pool,
            keyring: Arc::new(keyring),
            client,
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

    /// POSTs the body with both signatures (and, during a rotation, a second Standard Webhooks
    /// signature made with the former secret); the attempt's result.
    async fn send(
        &self,
        delivery: &LeasedDelivery,
        secret: &SecretString,
        previous: Option<&SecretString>,
    ) -> AttemptResult {
        let body = serde_json::to_vec(&delivery.body).unwrap_or_default();
        let message_id = delivery.event_id.to_string();
        let timestamp = chrono::Utc::now().timestamp();
        let secret = secret.expose_secret();
        let standard = std::iter::once(secret)
            .chain(previous.map(|p| p.expose_secret()))
            .map(|key| domain::push::standard_signature(key, &message_id, timestamp, &body))
            .collect::<Result<Vec<_>, _>>();
        let standard = match standard {
            Ok(signatures) => signatures.join(" "),
            Err(error) => {
                return failed(delivery, None, 0, error.to_string(), None, &self.settings);
            }
        };
        if let Err(refused) = self.check_literal_address(&delivery.webhook_url) {
            return AttemptResult {
                retry_in_ms: None,
                ..failed(delivery, None, 0, refused, None, &self.settings)
            };
        }
        let started = Instant::now();
        let sent = self
            .client
            .post(&delivery.webhook_url)
            .header("content-type", "application/json")
            .header("webhook-id", &message_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", standard)
            .header(
                "x-webhook-signature",
                domain::push::legacy_signature(secret, &body),
            )
            .body(body)
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(error) => {
                let latency = elapsed_ms(started);
                let reason = if error.is_timeout() {
                    "timed out".to_owned()
                } else {
                    format!("request failed: {}", error.without_url())
                };
                return failed(delivery, None, latency, reason, None, &self.settings);
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        // Read (and drop) at most 64 KB, so the connection can be reused.
        let mut read = 0;
        while read < MAX_RESPONSE_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => read += chunk.len(),
                _ => break,
            }
        }
        let latency = elapsed_ms(started);
        if status.is_success() {
            return AttemptResult {
                status_code: Some(status.as_u16()),
                latency_ms: latency,
                error: None,
                retry_in_ms: None,
                disable: None,
            };
        }
        let mut result = failed(
            delivery,
            Some(status.as_u16()),
            latency,
            format!("the receiver answered {status}"),
            retry_after,
            &self.settings,
        );
        if status == reqwest::StatusCode::GONE {
            result.retry_in_ms = None;
            result.disable = Some("the receiver answered 410 Gone".into());
        }
        result
    }
}

impl Deliverer {
    /// Refuses a URL whose host is a non-public IP literal (host names are checked by
    /// [`PublicOnly`] as they are resolved, literals never reach a resolver).
    fn check_literal_address(&self, url: &str) -> Result<(), String> {
        if self.settings.allow_private_webhook_urls {
            return Ok(());
        }
        let literal = reqwest::Url::parse(url).ok().and_then(|u| {
            let host = u.host_str()?.trim_start_matches('[').trim_end_matches(']');
            host.parse::<IpAddr>().ok()
        });
        let Some(ip) = literal else {
            return Ok(());
        };
        if domain::push::is_public_address(ip) {
            Ok(())
        } else {
            Err(format!("{ip} is not a public address"))
        }
    }
}

/// Resolves receivers' host names to their public addresses only
/// (`domain::push::is_public_address`): the address connected to is the one checked, with no
/// second lookup that DNS rebinding could change.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let public: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|address| domain::push::is_public_address(address.ip()))
                .collect();
            if public.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            let addresses: reqwest::dns::Addrs = Box::new(public.into_iter());
            Ok(addresses)
        })
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

fn elapsed_ms(started: Instant) -> u32 {
    u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX)
}
