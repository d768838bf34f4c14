//! Push to client apps: the catalogue of events they are told about (by their webhook
//! subscriptions), which events a change announces, and how a delivery is signed.
//!
//! # What a change announces
//! Announcements come from comparing a phone call (or a message) before and after a write, in
//! the worker's transaction: an event is announced when the change it names is seen, once. A
//! replayed or duplicate Dialpad event changes no row, so it announces nothing. Events that
//! arrive in one batch are seen as one change: a call that went from nothing to `connected` in
//! one batch announces `call.started`, `call.answered` and `call.status.changed`, not
//! `call.ringing`.
//!
//! # Signatures (both on every delivery; `docs/events.md`)
//! - `x-webhook-signature: sha256=<hex>`: HMAC-SHA256 of the raw body, keyed by the whole
//!   `secret_key` string as UTF-8 (what receivers of the Node server this replaces check).
//! - Standard Webhooks (<https://www.standardwebhooks.com/>, `spec/standard-webhooks.md`):
//!   `webhook-signature: v1,<base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}">`,
//!   keyed by the base64-decoded part of `whsec_<base64>`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Prefix of every subscription secret (Standard Webhooks' convention).
pub const SECRET_PREFIX: &str = "whsec_";

macro_rules! push_events {
    ($($variant:ident = $name:literal: $doc:literal),+ $(,)?) => {
        /// An event of the catalogue (`docs/events.md`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum PushEvent {
            $(#[doc = $doc] $variant),+
        }

        impl PushEvent {
            /// Every event, in catalogue order.
            pub const ALL: &'static [PushEvent] = &[$(PushEvent::$variant),+];

            /// The event's name, as subscriptions list it and bodies carry it (`event`).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(PushEvent::$variant => $name),+
                }
            }

            /// What the event means, for documentation.
            pub fn description(self) -> &'static str {
                match self {
                    $(PushEvent::$variant => $doc),+
                }
            }

            /// The event named `name`; `None` for a name outside the catalogue.
            pub fn parse(name: &str) -> Option<PushEvent> {
                match name {
                    $($name => Some(PushEvent::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

push_events! {
    CallStarted = "call.started": "A phone call appeared (its first event was processed).",
    CallRinging = "call.ringing": "A phone call is ringing.",
    CallAnswered = "call.answered": "A phone call was answered by a person.",
    CallStatusChanged = "call.status.changed": "A phone call's status changed (any change, `status` holds the new one).",
    CallRecordingReady = "call.recording.ready": "A phone call's recording link is available.",
    CallEnded = "call.ended": "A phone call ended, however it ended.",
    CallCompleted = "call.completed": "A phone call ended after being answered.",
    CallMissed = "call.missed": "An inbound phone call ended without being answered.",
    CallFailed = "call.failed": "An outbound phone call ended without being answered.",
    VoicemailCreated = "voicemail.created": "A voicemail was left (its recording link is available).",
    SmsReceived = "sms.received": "An inbound SMS/MMS was received.",
    SmsSent = "sms.sent": "An outbound SMS/MMS was sent.",
    SmsStatusChanged = "sms.status.changed": "A message's delivery status changed.",
}

/// Whether a subscription to `events` (names, or `*` for all) receives `event`.
pub fn subscribed(events: &[String], event: PushEvent) -> bool {
    events.iter().any(|e| e == "*" || e == event.as_str())
}

/// What the announcement rules read of a phone call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallFacts {
    /// `logical_calls.status`.
    pub status: String,
    pub inbound: bool,
    pub answered: bool,
    pub ended: bool,
    pub recorded: bool,
}

/// The events a phone call's change from `before` (`None`: it did not exist) to `after`
/// announces, in the order a receiver would expect them.
pub fn call_announcements(before: Option<&CallFacts>, after: &CallFacts) -> Vec<PushEvent> {
    let mut events = Vec::new();
    let newly = |now: bool, then: fn(&CallFacts) -> bool| now && !before.is_some_and(then);
    if before.is_none() {
        events.push(PushEvent::CallStarted);
    }
    let status_changed = before.is_none_or(|b| b.status != after.status);
    if status_changed && after.status == "ringing" {
        events.push(PushEvent::CallRinging);
    }
    if newly(after.answered, |b| b.answered) {
        events.push(PushEvent::CallAnswered);
    }
    if status_changed {
        events.push(PushEvent::CallStatusChanged);
    }
    if newly(after.recorded, |b| b.recorded) {
        events.push(PushEvent::CallRecordingReady);
    }
    if newly(after.ended, |b| b.ended) {
        events.push(PushEvent::CallEnded);
        events.push(if after.answered {
            PushEvent::CallCompleted
        } else if after.inbound {
            PushEvent::CallMissed
        } else {
            PushEvent::CallFailed
        });
    }
    events
}

/// What the announcement rules read of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageFacts {
    pub inbound: bool,
    /// Dialpad's `message_status`.
    pub status: Option<String>,
}

/// The events a message's change from `before` (`None`: it did not exist) to `after`
/// announces.
pub fn message_announcements(
    before: Option<&MessageFacts>,
    after: &MessageFacts,
) -> Vec<PushEvent> {
    let mut events = Vec::new();
    if before.is_none() {
        events.push(if after.inbound {
            PushEvent::SmsReceived
        } else {
            PushEvent::SmsSent
        });
    }
    if after.status.is_some() && before.is_none_or(|b| b.status != after.status) {
        events.push(PushEvent::SmsStatusChanged);
    }
    events
}

/// The delay before the next attempt after attempt `failed_attempt` (1-based) failed, in
/// milliseconds, or `None` when it was the last: `schedule_ms[failed_attempt - 1]` (the Standard
/// Webhooks/Svix schedule by default: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h after the first
/// immediate attempt), spread by ±20% (`jitter` in `[0, 1)`, clamped) so that deliveries
/// that failed together do not retry together, and never sooner than the receiver's
/// `Retry-After` (seconds).
pub fn retry_delay_ms(
    schedule_ms: &[u64],
    failed_attempt: u32,
    retry_after_s: Option<u64>,
    jitter: f64,
) -> Option<u64> {
    let index = usize::try_from(failed_attempt.checked_sub(1)?).ok()?;
    let base = *schedule_ms.get(index)?;
    let spread = 0.8 + 0.4 * jitter.clamp(0.0, 1.0);
    let jittered = (base as f64 * spread) as u64;
    Some(jittered.max(retry_after_s.unwrap_or(0).saturating_mul(1_000)))
}

/// Whether a push may be sent to `ip` (the SSRF guard): false for loopback, unspecified,
/// private (RFC 1918), shared/CGNAT (RFC 6598), link-local (which holds the cloud metadata
/// address 169.254.169.254), unique-local (RFC 4193, e.g. `fd00:ec2::254`), multicast,
/// broadcast, documentation, benchmarking (RFC 2544) and reserved addresses. An IPv4-mapped or
/// IPv4-compatible IPv6 address is judged as its IPv4 address.
pub fn is_public_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4() {
            Some(v4) if v6.segments()[..5] == [0; 5] => is_public_v4(v4),
            _ => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || first == 0x2001 && ip.segments()[1] == 0x0db8
        || first == 0x0064 && ip.segments()[1] == 0xff9b)
}

/// A subscription secret that is not `whsec_<base64>`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a subscription secret is whsec_ followed by base64")]
pub struct MalformedSecret;

/// A new subscription secret from 32 random bytes: `whsec_<base64>` (50 characters).
pub fn secret_from_bytes(bytes: &[u8; 32]) -> String {
    format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes))
}

/// `x-webhook-signature`'s value: `sha256=<hex HMAC-SHA256 of body>`, keyed by the whole
/// `secret` string as UTF-8.
pub fn legacy_signature(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hex::encode(hmac(secret.as_bytes(), &[body])))
}

/// One Standard Webhooks signature, `v1,<base64>`: HMAC-SHA256 of
/// `"{message_id}.{timestamp_s}.{body}"` keyed by the decoded part of `secret` (`whsec_...`).
/// A delivery signed with several secrets sends them space-separated in `webhook-signature`.
///
/// # Errors
/// [`MalformedSecret`] when `secret` is not `whsec_<base64>`.
pub fn standard_signature(
    secret: &str,
    message_id: &str,
    timestamp_s: i64,
    body: &[u8],
) -> Result<String, MalformedSecret> {
    let key = secret
        .strip_prefix(SECRET_PREFIX)
        .and_then(|b64| STANDARD.decode(b64).ok())
        .filter(|key| !key.is_empty())
        .ok_or(MalformedSecret)?;
    let signed = format!("{message_id}.{timestamp_s}.");
    Ok(format!(
        "v1,{}",
        STANDARD.encode(hmac(&key, &[signed.as_bytes(), body]))
    ))
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(status: &str, inbound: bool, answered: bool, ended: bool) -> CallFacts {
        CallFacts {
            status: status.into(),
            inbound,
            answered,
            ended,
            recorded: false,
        }
    }

    #[test]
    fn retries_follow_the_schedule_with_jitter_and_retry_after() {
        let schedule = [5_000, 300_000];
        assert_eq!(retry_delay_ms(&schedule, 1, None, 0.5), Some(5_000));
        assert_eq!(retry_delay_ms(&schedule, 1, None, 0.0), Some(4_000));
        assert_eq!(retry_delay_ms(&schedule, 2, None, 1.0), Some(360_000));
        assert_eq!(retry_delay_ms(&schedule, 1, Some(60), 0.5), Some(60_000));
        assert_eq!(retry_delay_ms(&schedule, 3, None, 0.5), None);
        assert_eq!(retry_delay_ms(&schedule, 0, None, 0.5), None);
    }

    #[test]
    fn only_public_addresses_may_receive_a_push() {
        for refused in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            let ip: IpAddr = refused.parse().expect("address");
            assert!(!is_public_address(ip), "{refused} is refused");
        }
        for allowed in [
            "8.8.8.8",
            "93.184.216.34",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            let ip: IpAddr = allowed.parse().expect("address");
            assert!(is_public_address(ip), "{allowed} is allowed");
        }
    }

    #[test]
    fn every_name_parses_back_and_star_subscribes_to_all() {
        for event in PushEvent::ALL {
            assert_eq!(PushEvent::parse(event.as_str()), Some(*event));
            assert!(subscribed(&["*".into()], *event));
        }
        assert_eq!(PushEvent::parse("call.unknown"), None);
        assert!(!subscribed(&["call.ended".into()], PushEvent::CallStarted));
    }

    #[test]
    fn a_call_announces_each_change_once() {
        use PushEvent::*;
        let ringing = call("ringing", true, false, false);
        assert_eq!(
            call_announcements(None, &ringing),
            [CallStarted, CallRinging, CallStatusChanged]
        );
        assert_eq!(call_announcements(Some(&ringing), &ringing), []);
        let connected = call("connected", true, true, false);
        assert_eq!(
            call_announcements(Some(&ringing), &connected),
            [CallAnswered, CallStatusChanged]
        );
        let mut completed = call("completed", true, true, true);
        completed.recorded = true;
        assert_eq!(
            call_announcements(Some(&connected), &completed),
            [
                CallStatusChanged,
                CallRecordingReady,
                CallEnded,
                CallCompleted
            ]
        );
        assert_eq!(
            call_announcements(Some(&ringing), &call("missed", true, false, true)),
            [CallStatusChanged, CallEnded, CallMissed]
        );
        assert_eq!(
            call_announcements(None, &call("missed", false, false, true)),
            [CallStarted, CallStatusChanged, CallEnded, CallFailed]
        );
    }

    #[test]
    fn a_message_announces_its_arrival_and_each_status() {
        use PushEvent::*;
        let pending = MessageFacts {
            inbound: false,
            status: Some("pending".into()),
        };
        assert_eq!(
            message_announcements(None, &pending),
            [SmsSent, SmsStatusChanged]
        );
        assert_eq!(message_announcements(Some(&pending), &pending), []);
        let delivered = MessageFacts {
            status: Some("delivered".into()),
            ..pending.clone()
        };
        assert_eq!(
            message_announcements(Some(&pending), &delivered),
            [SmsStatusChanged]
        );
        let received = MessageFacts {
            inbound: true,
            status: None,
        };
        assert_eq!(message_announcements(None, &received), [SmsReceived]);
    }

    /// The example of the Standard Webhooks specification and its reference libraries.
    #[test]
    fn the_standard_signature_matches_the_specifications_example() {
        let signature = standard_signature(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(
            signature.as_deref(),
            Ok("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
        assert_eq!(
            standard_signature("not-a-secret", "m", 1, b""),
            Err(MalformedSecret)
        );
    }

    #[test]
    fn the_legacy_signature_is_hex_hmac_of_the_body_keyed_by_the_whole_secret() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            legacy_signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let secret = secret_from_bytes(&[7; 32]);
        assert!(secret.starts_with(SECRET_PREFIX) && secret.len() == 50);
    }
}
