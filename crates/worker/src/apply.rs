//! Turning a claimed batch into domain rows, set-wise: one lock statement, one event-log read
//! and one multi-row upsert per batch, not a round trip per event.
//!
//! A poison event never takes its batch down: reading and folding are pure and panic-guarded per
//! leg, and if the set-wise write itself fails (a constraint, a bad value), it is rolled back to
//! a savepoint and each leg is retried alone, so only the failing leg's events are failed.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

use diesel_async::{AsyncConnection, AsyncPgConnection};
use uuid::Uuid;

use db::DbError;
use db::calls::{self, NewCall};
use db::queue::ClaimedEvent;
use domain::call::{CallEvent, CallLeg};
use domain::event::EventKind;

/// A call leg: `(app_id, call_id)`.
type LegKey = (Uuid, i64);

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
    pub(crate) failed: Vec<(EventRef, String)>,
}

/// A batch sorted by what it needs.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    legs: BTreeMap<LegKey, Vec<(EventRef, CallEvent)>>,
    outcome: Outcome,
}

impl Plan {
    /// Reads every claimed event; unreadable ones are failed, unmodelled kinds ignored.
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
            match event.kind.as_str() {
                kind if kind == EventKind::Call.as_str() => {
                    match guarded(|| CallEvent::parse(&event.payload, &event.dedupe_key)) {
                        Ok(Ok(call)) => plan
                            .legs
                            .entry((app_id, call.call_id()))
                            .or_default()
                            .push((event_ref, call)),
                        Ok(Err(error)) => plan.outcome.failed.push((event_ref, error.to_string())),
                        Err(panic) => plan.outcome.failed.push((event_ref, panic)),
                    }
                }
                kind if kind == EventKind::Sms.as_str() => {
                    plan.ignore(event.id, "sms events are not modelled yet");
                }
                _ => plan.ignore(event.id, "event kind is not modelled"),
            }
        }
        plan
    }

    fn ignore(&mut self, id: i64, reason: &'static str) {
        self.outcome.ignored.entry(reason).or_default().push(id);
    }

    /// Applies the plan on `conn` (inside the claiming transaction) and says what happened to
    /// each event.
    ///
    /// # Errors
    /// Only [`DbError::Unavailable`]: the whole batch must be retried. Any other failure is
    /// confined to the legs it concerns and reported in the outcome.
    pub(crate) async fn apply(self, conn: &mut AsyncPgConnection) -> Result<Outcome, DbError> {
        let Plan { legs, mut outcome } = self;
        if legs.is_empty() {
            return Ok(outcome);
        }
        let all = conn
            .transaction(async |conn| write_legs(conn, &legs).await)
            .await;
        match all {
            Ok(failed_legs) => record(&legs, failed_legs, &mut outcome),
            Err(error) if error.is_unavailable() => return Err(error),
            Err(error) => {
                tracing::warn!(error = %error, "Batch write failed; retrying leg by leg.");
                for (key, events) in &legs {
                    let one = BTreeMap::from([(*key, events.clone())]);
                    match conn
                        .transaction(async |conn| write_legs(conn, &one).await)
                        .await
                    {
                        Ok(failed) => record(&one, failed, &mut outcome),
                        Err(error) if error.is_unavailable() => return Err(error),
                        Err(error) => {
                            let message = format!("database rejected the leg: {error}");
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

fn record(
    legs: &BTreeMap<LegKey, Vec<(EventRef, CallEvent)>>,
    failed_legs: BTreeMap<LegKey, String>,
    outcome: &mut Outcome,
) {
    for (key, events) in legs {
        for (event_ref, _) in events {
            match failed_legs.get(key) {
                Some(error) => outcome.failed.push((*event_ref, error.clone())),
                None => outcome.done.push(event_ref.id),
            }
        }
    }
}

/// Locks the legs, folds each from its applied events plus the new ones, and upserts them all.
/// Returns the legs whose fold failed (nothing was written for them).
async fn write_legs(
    conn: &mut AsyncPgConnection,
    legs: &BTreeMap<LegKey, Vec<(EventRef, CallEvent)>>,
) -> Result<BTreeMap<LegKey, String>, DbError> {
    let keys: Vec<LegKey> = legs.keys().copied().collect();
    let call_ids: Vec<i64> = keys.iter().map(|(_, call_id)| *call_id).collect();
    calls::lock_legs(conn, &call_ids).await?;

    let mut events: BTreeMap<LegKey, Vec<CallEvent>> = legs
        .iter()
        .map(|(key, new)| (*key, new.iter().map(|(_, event)| event.clone()).collect()))
        .collect();
    for stored in calls::applied_call_events(conn, &keys).await? {
        let Some(leg) = events.get_mut(&(stored.app_id, stored.dialpad_id)) else {
            continue;
        };
        match CallEvent::parse(&stored.payload, &stored.dedupe_key) {
            Ok(event) => leg.push(event),
            Err(error) => {
                tracing::warn!(error = %error, "An applied call event no longer parses; skipped.")
            }
        }
    }

    let mut rows = Vec::with_capacity(events.len());
    let mut failed = BTreeMap::new();
    for ((app_id, call_id), leg_events) in events {
        match guarded(|| CallLeg::fold(&leg_events)) {
            Ok(Some(leg)) => rows.push(NewCall::from_leg(app_id, leg)),
            Ok(None) => {}
            Err(panic) => {
                failed.insert((app_id, call_id), panic);
            }
        }
    }
    calls::upsert_legs(conn, &rows).await?;
    Ok(failed)
}

/// Runs pure code, turning a panic into an error message (counted as a failed attempt).
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
