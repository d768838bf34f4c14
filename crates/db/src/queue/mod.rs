//! The `webhook_events` queue: how an event moves from ingest to done, in one place.
//!
//! # Life of an event
//!
//! ```text
//!   ingest ──enqueue──▶ pending ──claim+apply+complete (one transaction)──▶ done
//!      │                  │  ▲                                     └──────▶ ignored (kind we do not model)
//!      │                  │  └── failed (transient): attempts+1, last_error, run_at = now + backoff
//!      │                  ├───── failed WORKER_MAX_ATTEMPTS times ──────▶ dead (a dead letter)
//!      │                  └───── can never apply (identity unusable) ───▶ dead at once, with the reason
//!      └── unscoped route (no tenant) ─────────────────────────────────▶ unroutable
//! ```
//!
//! - **Enqueue** ([`enqueue_many`]) is idempotent by constraint: `(app_id, event_timestamp,
//!   dedupe_key)` is unique (NULLs not distinct), so a redelivered event is stored once and
//!   reported as a duplicate. Time and key are both read from the payload, so the time only
//!   orders the index: new events land at its right edge, not on a random leaf of the whole
//!   history as the SHA-256 key alone would put them. Ingest batches concurrent webhooks into
//!   one insert (one commit). Once that has committed, [`wake_workers`] sends `NOTIFY
//!   webhook_events` ([`NOTIFY_CHANNEL`]) in a transaction of its own: Postgres serialises the
//!   commits of notifying transactions, so a notification inside the insert would make
//!   concurrent inserts commit one at a time.
//! - **The hot queue.** Every pending event also has a row in `event_queue` (`event_id`,
//!   `app_id`, `run_at`), inserted and deleted by statement triggers on `webhook_events` as its
//!   status enters or leaves `pending`, so every writer keeps the two in step (ingest, the
//!   worker, operators, retention, a manual fix); their deletes probe its primary key once per
//!   changed event (`= ANY` of the ids), so completing a batch costs the batch whatever the
//!   backlog (a join with the transition table was planned as a scan of the whole queue once
//!   statistics knew of a backlog). Claims read only this table: it holds the
//!   backlog, not the history, so a claim after millions of processed events costs what it
//!   costs on an empty database. Its rows are deleted on completion, which leaves dead index
//!   entries at the head of each tenant's range until a vacuum: workers [`vacuum`] it every
//!   [`VACUUM_AFTER_EVENTS`] completed events (milliseconds on a table this small; per-table
//!   autovacuum settings are the fallback), and claims use plain index scans, which mark the
//!   entries they step over dead so the next claim skips them. Measured on a 1M-call tenant:
//!   right after a 400k-event drain with no vacuum, a one-row claim read 3,671 pages (11 ms);
//!   after the vacuum (143 ms), 0.24 ms. (The event log's own `status` changes touch no index
//!   the claim reads.)
//! - **Dead letters** have a table of their own too, `dead_letters` (`event_id`), kept by the
//!   same triggers, for the `queue_dead_events` gauge and `GET /internal/events?status=dead`.
//!   No index of `webhook_events` may name `status`: completing an event is then a HOT update
//!   (no index entry added; the table leaves room in each page for it), which an index on
//!   `status`, even a partial one, would rule out for every completion.
//! - **Claim** ([`claim_batch`]) locks due entries `FOR UPDATE SKIP LOCKED`: concurrent
//!   workers take disjoint batches and never wait on each other.
//! - **Apply and complete** happen in the claiming transaction ([`complete`], [`ignore`],
//!   [`fail`]): the domain rows and the event's new status commit together or not at all. A
//!   worker that dies mid-batch holds no lease to expire: its transaction is rolled back by
//!   Postgres when its connection drops, and the events are claimable again at once.
//! - The `locked_by`/`locked_until` lease columns are reserved for any future step that must run
//!   outside the claiming transaction (an outbound HTTP call); no such step exists today.
//! - **Operators** move `dead` and `unroutable` events back to `pending`, or replay an app's log
//!   ([`crate::operations`]); **retention** prunes old processed events, keeping a snapshot of
//!   each leg's and message's log ([`crate::retention`]).
//!
//! # Fairness
//! A batch is shared between the tenants with due events, not taken oldest-first from the whole
//! queue, so one tenant's backlog (an outage replay of 200k events) delays another tenant's new
//! events by the batch in progress and the next one, not by the backlog:
//! 1. The tenants with a due event are found by a loose index scan (one probe per tenant),
//!    ordered by their oldest due event; if there are more of them than places in the batch,
//!    the longest-waiting ones take part (the others' heads only grow older, so they come next).
//! 2. The places are split evenly between them (shares differ by at most one); each tenant
//!    gets its share of its own due events, oldest first (`run_at`, then id).
//! 3. Places left by tenants with fewer events than their share are split again among the
//!    tenants that filled theirs, continuing after what they already got; up to
//!    [`MAX_CLAIM_ROUNDS`] rounds. So a lone tenant still gets a full batch.
//!
//! # Lanes: a tenant behind does not hold up the tenants that are up to date
//! Splitting each batch evenly still makes a quiet tenant's new event wait for the batch in
//! progress and its own, and a batch of a tenant's backlog takes ~100 ms. So a worker serves
//! the queue in two [`Lane`]s at once, one transaction each: a tenant whose oldest due event
//! has waited longer than the lag threshold (`WORKER_BACKLOG_AFTER_MS`) is *backlogged* and
//! served by the backlog lane; every other tenant is *up to date* and served by the other lane,
//! whose batches are then small and quick (a quiet tenant's event is claimed as it arrives, not
//! after the backlog's batch). Which lane serves a tenant is decided at each claim from its
//! oldest due event, so a tenant moves to the backlog lane when it falls behind and back when it
//! has caught up; with no backlog anywhere every tenant is up to date, and the up-to-date lane
//! alone takes full batches, as a single lane would. A claim of [`Lane::Any`] serves every
//! tenant (tests, tools, the drain benchmark). Two lanes serving one tenant at the moment it
//! changes lane is harmless: claims skip each other's rows, and the leg and relink locks order
//! their writes. The worker wakes the up-to-date lane on each notification of new events and
//! runs the backlog lane on a timer of the lag threshold (no new event can be backlogged), so a
//! tenant that falls behind is picked up by the backlog lane within one more threshold.
//!
//! Within a tenant, events are taken by `run_at` then id (a retried event waits for its
//! backoff); across tenants, order is not kept, which is safe because every row is a fold of
//! its whole event log (the result does not depend on the order events are applied in).

mod claim;
mod complete;
mod enqueue;

pub use claim::{ClaimedEvent, Lane, MAX_CLAIM_ROUNDS, claim_batch};
pub use complete::{Failure, VACUUM_AFTER_EVENTS, complete, fail, ignore, vacuum};
pub use enqueue::{Enqueued, NewWebhookEvent, enqueue_many, wake_workers};

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use serde_json::Value;
use uuid::Uuid;

use domain::event::{EventSummary, replace_nul_characters};

use crate::DbError;
use crate::schema::webhook_events;

/// The channel [`wake_workers`] notifies after an insert commits; workers `LISTEN` on it (and
/// poll, so a notification lost to a crash between the two only delays).
pub const NOTIFY_CHANNEL: &str = "webhook_events";

/// Where an event is in its life (`webhook_events.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventStatus {
    /// Waiting to be claimed once `run_at` has passed.
    Pending,
    /// Applied to the domain tables.
    Done,
    /// Stored but not modelled (contact, agent status, unknown kinds); `last_error` says why.
    Ignored,
    /// Failed `WORKER_MAX_ATTEMPTS` times: a dead letter, kept for operators.
    Dead,
    /// Received on the unscoped route, so no tenant is known; kept for operators.
    Unroutable,
}

impl EventStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Pending => "pending",
            EventStatus::Done => "done",
            EventStatus::Ignored => "ignored",
            EventStatus::Dead => "dead",
            EventStatus::Unroutable => "unroutable",
        }
    }
}
