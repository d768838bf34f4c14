//! Rate limiting: per client address, and per API key, stricter on `/internal` and `/auth`.
//! Answers `429 rate_limited` with `Retry-After` (seconds).
//!
//! The limits are GCRA buckets from the `governor` crate, kept per process: with N api
//! replicas a client gets up to N times the limit. The client address is the TCP peer, or the
//! first `X-Forwarded-For`/`Forwarded` address when `RATE_LIMIT_TRUST_PROXY` is set (behind
//! Render's or any load balancer; never set it when clients reach the service directly, or
//! they can pick their own address).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web::Data;
use actix_web::{HttpResponse, ResponseError};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::auth::API_KEY_HEADER;
use crate::error::ApiError;
use crate::keys::key_id_of;

/// Requests per minute allowed to one client or key.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Every route but health checks, per client address.
    pub(crate) per_ip: u32,
    /// Tenant routes, per API key.
    pub(crate) per_key: u32,
    /// `/internal/*` and `/auth/*`, per client address.
    pub(crate) admin_per_ip: u32,
    pub(crate) trust_proxy: bool,
}

/// The buckets of one process.
pub(crate) struct RateLimits {
    per_ip: DefaultKeyedRateLimiter<String>,
    per_key: DefaultKeyedRateLimiter<String>,
    admin_per_ip: DefaultKeyedRateLimiter<String>,
    trust_proxy: bool,
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
            trust_proxy: limits.trust_proxy,
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
                for limiter in [&buckets.per_ip, &buckets.per_key, &buckets.admin_per_ip] {
                    limiter.retain_recent();
                    limiter.shrink_to_fit();
                }
            }
        });
        buckets
    }

    /// `Err(seconds to wait)` when the request is over a limit.
    fn check(&self, request: &ServiceRequest) -> Result<(), u64> {
        let path = request.path();
        if path == "/healthz" || path == "/readyz" {
            return Ok(());
        }
        let info = request.connection_info();
        let client = if self.trust_proxy {
            info.realip_remote_addr()
        } else {
            info.peer_addr()
        }
        .unwrap_or("unknown")
        .to_owned();
        let admin = path.starts_with("/internal") || path.starts_with("/auth");
        let by_ip = if admin {
            &self.admin_per_ip
        } else {
            &self.per_ip
        };
        wait(by_ip.check_key(&client))?;
        if !admin
            && let Some(key_id) = request
                .headers()
                .get(API_KEY_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(|key| key_id_of(key.trim()))
        {
            wait(self.per_key.check_key(&key_id.to_owned()))?;
        }
        Ok(())
    }
}

fn wait<T>(
    outcome: Result<T, governor::NotUntil<<DefaultClock as Clock>::Instant>>,
) -> Result<(), u64> {
    outcome.map(drop).map_err(|not_until| {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
    })
}

/// The middleware (`actix_web::middleware::from_fn`).
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
            let mut response: HttpResponse = ApiError::RateLimited { retry_after }.error_response();
            if let Ok(value) = retry_after.to_string().parse() {
                response
                    .headers_mut()
                    .insert(actix_web::http::header::RETRY_AFTER, value);
            }
            Ok(request.into_response(response))
        }
    }
}
