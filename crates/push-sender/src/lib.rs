#![doc = include_str!("../README.md")]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest response body read from a receiver; the rest is ignored.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// The keys a delivery is signed with: the subscription's `whsec_...` secret and, during a
/// rotation's grace period, the former one (a second Standard Webhooks signature).
#[derive(Clone, Copy)]
pub struct Signing<'a> {
    pub secret: &'a str,
    pub previous: Option<&'a str>,
}

impl std::fmt::Debug for Signing<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signing")
            .field("secret", &"[redacted]")
            .field("previous", &self.previous.map(|_| "[redacted]"))
            .finish()
    }
}

/// What one POST came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The receiver's status code; `None` when no response came (refused address, connect
    /// error, timeout).
    pub status_code: Option<u16>,
    /// From the start of the request to the end of the (bounded) body read, in milliseconds.
    pub latency_ms: u32,
    /// Why it failed, for the attempt log (never holds a secret); `None` on a 2xx.
    pub error: Option<String>,
    /// The receiver's `Retry-After`, in seconds (the delta-seconds form only).
    pub retry_after_s: Option<u64>,
}

impl Outcome {
    /// A 2xx answer.
    #[must_use]
    pub fn is_success(&self) -> bool {
        self.error.is_none()
    }

    /// Failed before any request was made.
    fn refused(error: String) -> Outcome {
        Outcome {
            status_code: None,
            latency_ms: 0,
            error: Some(error),
            retry_after_s: None,
        }
    }
}

/// Sends push deliveries; cheap to clone (one connection pool).
#[derive(Debug, Clone)]
pub struct Sender {
    client: reqwest::Client,
    allow_private: bool,
}

impl Sender {
    /// A sender whose requests time out after `timeout_ms` milliseconds (connect and response
    /// together) and, unless `allow_private` (`ALLOW_PRIVATE_WEBHOOK_URLS`: development and
    /// tests only), connect to public addresses only.
    ///
    /// # Errors
    /// The HTTP client cannot be built (no TLS roots).
    pub fn new(timeout_ms: u64, allow_private: bool) -> Result<Sender, reqwest::Error> {
        let mut client = reqwest::Client::builder()
            .timeout(Duration::from_millis(timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("cti-server/", env!("CARGO_PKG_VERSION")));
        if !allow_private {
            client = client.dns_resolver(Arc::new(PublicOnly));
        }
        Ok(Sender {
            client: client.build()?,
            allow_private,
        })
    }

    /// POSTs `body` (JSON) to `url` as message `message_id` (the `webhook-id`, the same on
    /// every attempt of one event), signed with `signing` at the current time.
    pub async fn send(
        &self,
        url: &str,
        message_id: &str,
        body: Vec<u8>,
        signing: Signing<'_>,
    ) -> Outcome {
        let timestamp = chrono::Utc::now().timestamp();
        let standard = std::iter::once(signing.secret)
            .chain(signing.previous)
            .map(|key| domain::push::standard_signature(key, message_id, timestamp, &body))
            .collect::<Result<Vec<_>, _>>();
        let standard = match standard {
            Ok(signatures) => signatures.join(" "),
            Err(error) => return Outcome::refused(error.to_string()),
        };
        if let Err(refused) = self.check_literal_address(url) {
            return Outcome::refused(refused);
        }
        let started = Instant::now();
        let sent = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", message_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", standard)
            .header(
                "x-webhook-signature",
                domain::push::legacy_signature(signing.secret, &body),
            )
            .body(body)
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(error) => {
                let error = if error.is_timeout() {
                    "timed out".to_owned()
                } else {
                    format!("request failed: {}", error.without_url())
                };
                return Outcome {
                    latency_ms: elapsed_ms(started),
                    ..Outcome::refused(error)
                };
            }
        };
        let status = response.status();
        let retry_after_s = response
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
        Outcome {
            status_code: Some(status.as_u16()),
            latency_ms: elapsed_ms(started),
            error: (!status.is_success()).then(|| format!("the receiver answered {status}")),
            retry_after_s,
        }
    }

    /// Refuses a URL whose host is a non-public IP literal (host names are checked by
    /// [`PublicOnly`] as they are resolved; literals never reach a resolver).
    fn check_literal_address(&self, url: &str) -> Result<(), String> {
        if self.allow_private {
            return Ok(());
        }
        let literal = reqwest::Url::parse(url).ok().and_then(|u| {
            let host = u.host_str()?.trim_start_matches('[').trim_end_matches(']');
            host.parse::<IpAddr>().ok()
        });
        match literal {
            Some(ip) if !domain::push::is_public_address(ip) => {
                Err(format!("{ip} is not a public address"))
            }
            _ => Ok(()),
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

fn elapsed_ms(started: Instant) -> u32 {
    u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX)
}
