//! Rate limiting: per client address, per API key, stricter on `/internal` and `/auth`, and a
//! bound on bcrypt verifications per client address. Answers `429 rate_limited` with
//! `Retry-After` (seconds).
//!
//! The limits are GCRA buckets from the `governor` crate, kept per process: with N api
//! replicas a client gets up to N times the limit.
//!
//! - **Which bucket**: by the path as routed, percent-decoded (`/%69nternal/apps` is
//!   `/internal/apps` to the router, so it is to the limiter too).
//! - **Whose address**: the TCP peer, or, behind `TRUSTED_PROXY_HOPS` proxies, the address the
//!   outermost trusted proxy saw: that many entries from the right of `X-Forwarded-For`, since
//!   each proxy appends the address it received from and everything left of that was written by
//!   the client (`bootstrap::http::client_address`). The audit log names admins by the same
//!   rule.
//! - **Per key, only once verified**: a tenant key's bucket is charged after the key verified
//!   (`crate::auth`), so a `key_id` (it is not secret: it is logged) does not let anyone spend
//!   a tenant's allowance. A verification that needs bcrypt (a key not verified recently)
//!   is charged to the client address ([`RateLimits::charge_verification`]), so guessing
//!   secrets costs the guesser, not the tenant, and at most that many bcrypt runs per minute.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::HeaderMap;
use actix_web::middleware::Next;
use actix_web::web::Data;
use actix_web::{HttpResponse, ResponseError};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::ApiError;

/// Requests per minute allowed to one client or key.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Every route but health checks, per client address.
    pub(crate) per_ip: u32,
    /// Tenant routes, per verified API key.
    pub(crate) per_key: u32,
    /// `/internal/*` and `/auth/*`, per client address.
    pub(crate) admin_per_ip: u32,
    /// bcrypt verifications of API keys (keys not verified recently), per client address.
    pub(crate) verifications_per_ip: u32,
    /// Proxies in front of the api that append to `X-Forwarded-For` (`TRUSTED_PROXY_HOPS`).
    pub(crate) trusted_proxy_hops: usize,
}

/// The buckets of one process.
pub(crate) struct RateLimits {
    per_ip: DefaultKeyedRateLimiter<String>,
    per_key: DefaultKeyedRateLimiter<String>,
    admin_per_ip: DefaultKeyedRateLimiter<String>,
    verifications_per_ip: DefaultKeyedRateLimiter<String>,
    trusted_proxy_hops: usize,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits").finish_non_exhaustive()
    }
}

fn per_minute(requests: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(requests.max(1)).unwrap_or(NonZeroU32::MIN))
}

impl RateLimits {
    pub(crate) fn new(limits: Limits) -> Arc<RateLimits> {
        let buckets = Arc::new(RateLimits {
            per_ip: RateLimiter::keyed(per_minute(limits.per_ip)),
            per_key: RateLimiter::keyed(per_minute(limits.per_key)),
            admin_per_ip: RateLimiter::keyed(per_minute(limits.admin_per_ip)),
            verifications_per_ip: RateLimiter::keyed(per_minute(limits.verifications_per_ip)),
            trusted_proxy_hops: limits.trusted_proxy_hops,
        });
        // Forget idle clients now and then, so the maps do not grow without bound.
        let weak = Arc::downgrade(&buckets);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                let Some(buckets) = weak.upgrade() else {
                    return;
                };
                for limiter in [
                    &buckets.per_ip,
                    &buckets.per_key,
                    &buckets.admin_per_ip,
                    &buckets.verifications_per_ip,
                ] {
                    limiter.retain_recent();
                    limiter.shrink_to_fit();
                }
            }
        });
        buckets
    }

    /// The client's address by this deployment's proxy rule (`bootstrap::http::client_address`).
    pub(crate) fn client(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> String {
        bootstrap::http::client_address(headers, peer, self.trusted_proxy_hops)
    }

    /// Charges a verified key's bucket.
    ///
    /// # Errors
    /// [`ApiError::RateLimited`] when the key is over its limit.
    pub(crate) fn charge_key(&self, key_id: &str) -> Result<(), ApiError> {
        wait(self.per_key.check_key(&key_id.to_owned()))
            .map_err(|retry_after| ApiError::RateLimited { retry_after })
    }

    /// Charges one bcrypt verification to `client`, before it runs.
    ///
    /// # Errors
    /// [`ApiError::RateLimited`] when the client is over its limit: no bcrypt runs.
    pub(crate) fn charge_verification(&self, client: &str) -> Result<(), ApiError> {
        wait(self.verifications_per_ip.check_key(&client.to_owned()))
            .map_err(|retry_after| ApiError::RateLimited { retry_after })
    }

    /// `Err(seconds to wait)` when the request is over its address's limit.
    fn check(&self, request: &ServiceRequest) -> Result<(), u64> {
        // The router matches the percent-decoded path; so must the choice of bucket.
        let path = percent_encoding::percent_decode_str(request.path()).decode_utf8_lossy();
        if path == "/healthz" || path == "/readyz" {
            return Ok(());
        }
        let client = self.client(request.headers(), request.peer_addr());
        let admin = path.starts_with("/internal") || path.starts_with("/auth");
        let by_ip = if admin {
            &self.admin_per_ip
        } else {
            &self.per_ip
        };
        wait(by_ip.check_key(&client))
    }
}

fn wait<T>(
    outcome: Result<T, governor::NotUntil<<DefaultClock as Clock>::Instant>>,
) -> Result<(), u64> {
    outcome.map(drop).map_err(|not_until| {
        bootstrap::http::retry_after_secs(not_until.wait_time_from(DefaultClock::default().now()))
    })
}

/// The middleware (`actix_web::middleware::from_fn`): the per-address buckets.
pub(crate) async fn limit(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let verdict = request
        .app_data::<Data<Arc<RateLimits>>>()
        .map_or(Ok(()), |limits| limits.check(&request));
    match verdict {
        Ok(()) => Ok(next.call(request).await?.map_into_boxed_body()),
        Err(retry_after) => {
            let response: HttpResponse = ApiError::RateLimited { retry_after }.error_response();
            Ok(request.into_response(response))
        }
    }
}
