//! Push to client apps: their webhook subscriptions, the outbox of announced events, and the
//! deliveries (leased, attempted, retried) with their attempt log.
//!
//! # Outbox
//! [`announce`] writes the announced events (`push_events`) and one delivery per event and
//! matching active subscription (`push_deliveries`) in the caller's transaction: the worker's,
//! together with the domain change that caused them. Nothing is announced that did not commit,
//! and nothing that committed is left unannounced. The insert trigger notifies
//! [`DELIVERIES_CHANNEL`] at commit, which wakes the delivery loops.
//!
//! # Deliveries
//! [`claim_deliveries`] leases due deliveries: it sets a fresh `lease_token` and moves
//! `next_attempt_at` to the lease's end, so a loop that dies leaves them due again when the
//! lease runs out. The HTTP request happens outside any transaction; [`record_attempts`] then
//! logs a batch of attempts and settles each delivery only if its lease token still matches (a
//! loop that lost its lease is refused), and updates the subscriptions' failure tracking.

mod deliveries;
mod outbox;
mod samples;
mod streams;
mod subscriptions;

pub use deliveries::{
    AttemptRecord, AttemptResult, FailurePolicy, LeasedDelivery, attempts, claim_deliveries,
    record_attempts, resend,
};
pub use outbox::{
    Announcement, CallBefore, MessageBefore, announce, call_change_announcements, calls_before,
    message_change_announcements, messages_before, new_voicemails, prune_announcements,
    subscribed_apps, subscribed_rows,
};
pub use samples::{SAMPLE_SUBJECT_ID, sample_body};
pub use streams::{FeedEvent, STREAM_TOKEN_TTL_S, StreamToken};
use subscriptions::SealedSecrets;
pub use subscriptions::{NewSubscription, PushSubscription, SubscriptionChanges};

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Integer, Jsonb, Nullable, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use secrecy::SecretString;
use serde_json::{Value, json};
use uuid::Uuid;

use domain::push::{CallFacts, MessageFacts, PushEvent, call_announcements, message_announcements};

use crate::DbError;
use crate::crypto::Keyring;
use crate::logical_calls::{LogicalCallRow, VoicemailRow};
use crate::messages::MessageRow;
use crate::schema::{apps, push_subscriptions};
use crate::views::{MessageView, PhoneCallView, VoicemailView, timestamp};

/// The channel the deliveries' insert trigger notifies; delivery loops `LISTEN` on it.
pub const DELIVERIES_CHANNEL: &str = "push_deliveries";

/// The channel the outbox's insert trigger notifies at commit, once per app with new events
/// (payload: the app id); the api's stream hubs `LISTEN` on it.
pub const FEEDS_CHANNEL: &str = "push_events";
