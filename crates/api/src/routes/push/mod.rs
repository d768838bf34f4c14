//! `/api/webhooks/*`: a tenant's own webhook subscriptions, to which the worker pushes signed
//! events (`domain::push`, `docs/events.md`), their attempt logs, and test sends. Field names are those the Node
//! server's clients send, so they switch with the path prefix as the only change.

mod deliveries;
mod subscriptions;
mod test_send;

use actix_web::web::{Data, Json, Path};
use actix_web::{HttpResponse, delete, get, patch, post};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use db::push::{NewSubscription, PushSubscription, SubscriptionChanges};
use domain::push::PushEvent;

use crate::auth::Tenant;
use crate::error::{ApiError, ErrorBody};
use crate::routes::{JsonObject, rfc3339, timestamp};
use crate::startup::ApiState;

/// This module's routes (`routes::configure`).
pub(crate) fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(subscriptions::create_subscription)
        .service(subscriptions::list_subscriptions)
        .service(subscriptions::get_subscription)
        .service(subscriptions::update_subscription)
        .service(subscriptions::delete_subscription)
        .service(subscriptions::rotate_secret)
        .service(deliveries::list_attempts)
        .service(deliveries::resend_delivery)
        .service(test_send::send_test);
}

/// Longest `webhook_url` accepted, in bytes.
const MAX_URL_LEN: usize = 2_048;
/// Longest `description` accepted, in characters.
const MAX_DESCRIPTION_LEN: usize = 500;

/// Which webhook URLs subscriptions may name (the SSRF guard at subscribe time; the worker
/// checks again at every send).
#[derive(Debug, Clone, Copy)]
pub(crate) struct WebhookUrlPolicy {
    /// `ALLOW_PRIVATE_WEBHOOK_URLS`: development and tests only.
    pub(crate) allow_private: bool,
    /// `https` only (`DIALPAD_ENV=production`).
    pub(crate) require_https: bool,
}

/// Checks `webhook_url`: an absolute `http(s)` URL with a host and no credentials, at most
/// 2,048 bytes, whose host resolves only to public addresses
/// (`domain::push::is_public_address`) unless private ones are allowed.
async fn checked_url(url: &str, policy: WebhookUrlPolicy) -> Result<String, ApiError> {
    let invalid = |why: &str| ApiError::InvalidRequest(format!("webhook_url {why}"));
    if url.len() > MAX_URL_LEN {
        return Err(invalid("is longer than 2048 bytes"));
    }
    let parsed = reqwest::Url::parse(url).map_err(|_| invalid("is not an absolute URL"))?;
    let Some(host) = parsed.host_str() else {
        return Err(invalid("must be an http or https URL with a host"));
    };
    match parsed.scheme() {
        "https" => {}
        "http" if !policy.require_https => {}
        "http" => return Err(invalid("must be https")),
        _ => return Err(invalid("must be an http or https URL with a host")),
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid("must not hold credentials"));
    }
    if !policy.allow_private {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = parsed.port_or_known_default().unwrap_or(443);
        let addresses: Vec<std::net::IpAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|_| invalid("names a host that does not resolve"))?
            .map(|address| address.ip())
            .collect();
        if addresses.is_empty() || !addresses.into_iter().all(domain::push::is_public_address) {
            return Err(invalid(
                "must resolve to public addresses only (not loopback, private, link-local, shared, \
                 unique-local, multicast or reserved)",
            ));
        }
    }
    Ok(parsed.to_string())
}

/// Checks `events`: not empty, each a catalogue name or `*`; duplicates dropped.
fn checked_events(events: Vec<String>) -> Result<Vec<String>, ApiError> {
    if events.is_empty() {
        return Err(ApiError::InvalidRequest(
            "events must name at least one event, or \"*\" for all".into(),
        ));
    }
    let mut checked: Vec<String> = Vec::new();
    for event in events {
        if event != "*" && PushEvent::parse(&event).is_none() {
            let mut known = event_names();
            known.push("*");
            let shown: String = event.chars().take(64).collect();
            return Err(ApiError::InvalidRequest(format!(
                "events: unknown event {shown:?}; known: {}",
                known.join(", ")
            )));
        }
        if !checked.contains(&event) {
            checked.push(event);
        }
    }
    Ok(checked)
}

/// The catalogue's event names, in order (for error messages).
fn event_names() -> Vec<&'static str> {
    PushEvent::ALL.iter().map(|e| e.as_str()).collect()
}

fn checked_description(description: Option<String>) -> Result<Option<String>, ApiError> {
    match description {
        Some(d) if d.chars().count() > MAX_DESCRIPTION_LEN || d.contains('\0') => {
            Err(ApiError::InvalidRequest(
                "description must be at most 500 characters, without NUL".into(),
            ))
        }
        other => Ok(other),
    }
}

fn subscription_id(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound)
}

/// `Debug` of each type here that holds a secret, filled with `secret` (for the redaction test).
#[cfg(test)]
pub(super) fn debug_samples(secret: &str) -> Vec<String> {
    let mut samples = subscriptions::debug_samples(secret);
    samples.push(test_send::debug_sample(secret));
    samples
}
