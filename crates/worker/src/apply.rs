//! Turning a claimed batch into domain rows, set-wise: one lock statement, one event-log read
//! and one multi-row upsert per table per batch, not a round trip per event.
//!
//! A batch is split into *units*, each rebuilt from its whole event log: a call leg (then its
//! logical call and voicemail, `db::logical_calls::relink`) or an SMS message. Other kinds
//! (contact, agent status, unknown) are marked `ignored` with the reason. A unit whose lock
//! another batch holds (a concurrent batch loop or replica writing the same leg) is *deferred*:
//! its events stay pending, untouched, and the next claim takes them first (they are the
//! oldest), so concurrent batches never wait on each other's legs.
//!
//! A poison event never takes its batch down: reading and folding are pure and panic-guarded per
//! unit, and if the set-wise write itself fails (a constraint, a bad value), it is rolled back to
//! a savepoint and each unit is retried alone, so only the failing unit's events are failed.
//!
//! Failures are of two kinds. **Rejected**: the event can never apply (its identity is unusable,
//! or our pure code panicked on it): the same payload fails the same way every time, so it is a
//! dead letter at once, with the reason (an operator can replay it after a fix). **Failed**: the
//! database refused the write; that may pass, so it is retried with backoff.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

use diesel_async::{AsyncConnection, AsyncPgConnection};
use uuid::Uuid;

use db::DbError;
use db::calls::{self, LegRow};
use db::messages::{self, MessageRow};
use db::queue::ClaimedEvent;
use domain::call::{CallEvent, CallLeg};
use domain::event::EventKind;
use domain::sms::{Message, SmsEvent};

/// What one unit is rebuilt from: a call leg's or a message's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum UnitKind {
    Leg,
    Message,
}

/// A unit: `(kind, app_id, dialpad id)`: a leg's `call_id` or a message's `id`.
type UnitKey = (UnitKind, Uuid, i64);

/// A parsed event of a unit.
#[derive(Debug, Clone)]
enum UnitEvent {
    Call(Box<CallEvent>),
    Sms(Box<SmsEvent>),
}

type Units = BTreeMap<UnitKey, Vec<(EventRef, UnitEvent)>>;

/// A claimed event and how many attempts it had before this one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EventRef {
    pub(crate) id: i64,
    pub(crate) attempts: i32,
}

/// What to do with each event of a batch.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) done: Vec<i64>,
    pub(crate) ignored: BTreeMap<&'static str, Vec<i64>>,
    /// May succeed later: retried with backoff.
    pub(crate) failed: Vec<(EventRef, String)>,
    /// Can never apply: dead at once.
    pub(crate) rejected: Vec<(i64, String)>,
    /// Their leg (or message) is being written by another batch: left pending, untouched, for
    /// a later batch (`db::calls::try_lock_legs`).
    pub(crate) deferred: Vec<i64>,
}

/// A batch sorted by what it needs.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    units: Units,
    outcome: Outcome,
}

impl Plan {
    /// Reads every claimed event; unreadable ones are rejected, unmodelled kinds ignored.
    pub(crate) fn new(claimed: Vec<ClaimedEvent>) -> Plan {
        let mut plan = Plan::default();
        for event in claimed {
            let event_ref = EventRef {
                id: event.id,
                attempts: event.attempts,
            };
            let Some(app_id) = event.app_id else {
                plan.ignore(event.id, "no tenant: received on the unscoped route");
                continue;
            };
            let parsed = match EventKind::parse(&event.kind) {
                Some(EventKind::Call) => guarded(|| {
                    CallEvent::parse_text(event.payload.as_str(), &event.dedupe_key)
                        .map(|call| {
                            (
                                (UnitKind::Leg, app_id, call.call_id()),
                                UnitEvent::Call(Box::new(call)),
                            )
                        })
                        .map_err(|e| e.to_string())
                }),
                Some(EventKind::Sms) => guarded(|| {
                    SmsEvent::parse_text(event.payload.as_str(), &event.dedupe_key)
                        .map(|sms| {
                            let key = (UnitKind::Message, app_id, sms.message_id());
                            (key, UnitEvent::Sms(Box::new(sms)))
                        })
                        .map_err(|e| e.to_string())
                }),
                _ => {
                    plan.ignore(
                        event.id,
                        "contact, agent status and unknown events are stored, not modelled",
                    );
                    continue;
                }
            };
            match parsed {
                Ok(Ok((key, unit_event))) => {
                    plan.units
                        .entry(key)
                        .or_default()
                        .push((event_ref, unit_event));
                }
                Ok(Err(error)) | Err(error) => plan.outcome.rejected.push((event.id, error)),
            }
        }
        plan
    }

    fn ignore(&mut self, id: i64, reason: &'static str) {
        self.outcome.ignored.entry(reason).or_default().push(id);
    }

    /// Applies the plan on `conn` (inside the claiming transaction) and says what happened to
    /// each event. `max_graph_legs` bounds the call graph read per logical call
    /// (`db::logical_calls::relink`).
    ///
    /// # Errors
    /// Only [`DbError::Unavailable`]: the whole batch must be retried. Any other failure is
    /// confined to the legs it concerns and reported in the outcome.
    pub(crate) async fn apply(
        self,
        conn: &mut AsyncPgConnection,
        max_graph_legs: usize,
    ) -> Result<Outcome, DbError> {
        let Plan {
            mut units,
            mut outcome,
        } = self;
        if units.is_empty() {
            return Ok(outcome);
        }
        // Locked here, outside the savepoints below, so that the unit-by-unit retry keeps
        // them. A unit another batch holds is deferred, not waited for.
        let ids: Vec<i64> = units.keys().map(|(_, _, id)| *id).collect();
        let held: std::collections::HashSet<i64> = calls::try_lock_legs(conn, &ids)
            .await?
            .into_iter()
            .collect();
        if !held.is_empty() {
            units.retain(|(_, _, id), events| {
                let keep = !held.contains(id);
                if !keep {
                    outcome
                        .deferred
                        .extend(events.iter().map(|(event, _)| event.id));
                }
                keep
            });
            if units.is_empty() {
                return Ok(outcome);
            }
        }
        let all = conn
            .transaction(async |conn| write_units(conn, &units, max_graph_legs).await)
            .await;
        match all {
            Ok(failed_units) => record(&units, failed_units, &mut outcome),
            Err(error) if error.is_unavailable() => return Err(error),
            Err(error) => {
                tracing::warn!(error = %error, "Batch write failed; retrying unit by unit.");
                for (key, events) in &units {
                    let one = BTreeMap::from([(*key, events.clone())]);
                    match conn
                        .transaction(async |conn| write_units(conn, &one, max_graph_legs).await)
                        .await
                    {
                        Ok(failed) => record(&one, failed, &mut outcome),
                        Err(error) if error.is_unavailable() => return Err(error),
                        Err(error) => {
                            let message = format!("database rejected the write: {error}");
                            for (event_ref, _) in events {
                                outcome.failed.push((*event_ref, message.clone()));
                            }
                        }
                    }
                }
            }
        }
        Ok(outcome)
    }
}

/// Records the units written: done, except those whose fold panicked (`rejected_units`).
fn record(units: &Units, rejected_units: BTreeMap<UnitKey, String>, outcome: &mut Outcome) {
    for (key, events) in units {
        for (event_ref, _) in events {
            match rejected_units.get(key) {
                Some(error) => outcome.rejected.push((event_ref.id, error.clone())),
                None => outcome.done.push(event_ref.id),
            }
        }
    }
}

/// Folds each unit (whose lock the caller holds) from its applied events plus the new ones,
/// upserts them all, and relinks the logical calls of the legs. Returns the units whose fold
/// panicked (nothing was written for them).
async fn write_units(
    conn: &mut AsyncPgConnection,
    units: &Units,
    max_graph_legs: usize,
) -> Result<BTreeMap<UnitKey, String>, DbError> {
    let mut events: BTreeMap<UnitKey, Vec<UnitEvent>> = units
        .iter()
        .map(|(key, new)| (*key, new.iter().map(|(_, event)| event.clone()).collect()))
        .collect();
    for (kind, event_kind) in [
        (UnitKind::Leg, EventKind::Call),
        (UnitKind::Message, EventKind::Sms),
    ] {
        let pairs: Vec<(Uuid, i64)> = units
            .keys()
            .filter(|(unit_kind, _, _)| *unit_kind == kind)
            .map(|(_, app_id, id)| (*app_id, *id))
            .collect();
        if pairs.is_empty() {
            continue;
        }
        for stored in calls::applied_events(conn, event_kind, &pairs).await? {
            let Some(unit) = events.get_mut(&(kind, stored.app_id, stored.dialpad_id)) else {
                continue;
            };
            let parsed = match kind {
                UnitKind::Leg => CallEvent::parse_text(stored.payload.as_str(), &stored.dedupe_key)
                    .map(|call| UnitEvent::Call(Box::new(call)))
                    .map_err(|e| e.to_string()),
                UnitKind::Message => {
                    SmsEvent::parse_text(stored.payload.as_str(), &stored.dedupe_key)
                        .map(|sms| UnitEvent::Sms(Box::new(sms)))
                        .map_err(|e| e.to_string())
                }
            };
            match parsed {
                Ok(event) => unit.push(event),
                Err(error) => {
                    tracing::warn!(error = %error, "An applied event no longer parses; skipped.");
                }
            }
        }
    }

    let mut legs = Vec::new();
    let mut messages = Vec::new();
    let mut failed = BTreeMap::new();
    for (key, unit_events) in events {
        let (kind, app_id, _) = key;
        let folded = guarded(|| match kind {
            UnitKind::Leg => {
                let calls: Vec<CallEvent> = unit_events
                    .into_iter()
                    .filter_map(|e| match e {
                        UnitEvent::Call(call) => Some(*call),
                        UnitEvent::Sms(_) => None,
                    })
                    .collect();
                if let Some(leg) = CallLeg::fold(&calls) {
                    legs.push(LegRow::from_leg(app_id, leg));
                }
            }
            UnitKind::Message => {
                let sms: Vec<SmsEvent> = unit_events
                    .into_iter()
                    .filter_map(|e| match e {
                        UnitEvent::Sms(sms) => Some(*sms),
                        UnitEvent::Call(_) => None,
                    })
                    .collect();
                if let Some(message) = Message::fold(&sms) {
                    messages.push(MessageRow::new(app_id, message));
                }
            }
        });
        if let Err(panic) = folded {
            failed.insert(key, panic);
        }
    }
    let legs = calls::upsert_legs(conn, legs).await?;
    let mut announcements = messages::upsert(conn, &messages).await?;
    announcements.extend(db::logical_calls::relink(conn, legs, max_graph_legs).await?);
    // Last: it locks the apps' push feeds to commit (`db::push::announce`).
    db::push::announce(conn, &announcements).await?;
    Ok(failed)
}

/// Runs pure code, turning a panic into an error message (the event is rejected: the same
/// input panics again).
fn guarded<T>(work: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(work)).map_err(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        format!("panicked while processing: {message}")
    })
}

/// `reason: N retried, M dead (first event ID, request ID); ...`, one entry per distinct reason
/// (the request id ingest answered that event with, when it has one).
pub(crate) fn failure_summary(
    failures: &[db::queue::Failure],
    request_ids: &std::collections::HashMap<i64, String>,
) -> String {
    let mut by_reason: std::collections::BTreeMap<&str, (usize, usize, i64)> =
        std::collections::BTreeMap::new();
    for failure in failures {
        let entry = by_reason
            .entry(failure.error.as_str())
            .or_insert((0, 0, failure.id));
        match failure.retry_at {
            Some(_) => entry.0 += 1,
            None => entry.1 += 1,
        }
        entry.2 = entry.2.min(failure.id);
    }
    by_reason
        .into_iter()
        .map(|(reason, (retried, dead, first))| match request_ids.get(&first) {
            Some(request) => format!(
                "{reason}: {retried} retried, {dead} dead (first event {first}, request {request})"
            ),
            None => format!("{reason}: {retried} retried, {dead} dead (first event {first})"),
        })
        .collect::<Vec<_>>()
        .join("; ")
}
