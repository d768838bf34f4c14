//! The fold: a leg's events, in any order and multiplicity, into its row (the module's merge
//! rule on [`super`]).

use serde_json::Value;

use super::{CallEvent, CallLeg, CallState, CallStatus, Phase, ms};

impl CallLeg {
    /// Folds all known events of one leg into its row, following the module's merge rule.
    /// Returns `None` for an empty slice. All events must share one `call_id`.
    pub fn fold(events: &[CallEvent]) -> Option<CallLeg> {
        let mut ordered: Vec<&CallEvent> = events.iter().collect();
        ordered.sort_by(|a, b| fold_order(a).cmp(&fold_order(b)));
        ordered.dedup_by(|a, b| a.content_key == b.content_key);
        let first = ordered.first()?;

        let mut leg = CallLeg {
            call_id: first.call_id(),
            ..CallLeg::default()
        };
        let mut ended = false;
        let mut voicemail_left = false;
        let mut live_status = CallStatus::Ringing;

        for event in &ordered {
            let phase = event.phase();
            ended |= phase >= Phase::Ended;
            if !(ended && phase == Phase::InCall) {
                event.state().clone_into(&mut leg.state);
            }
            if let Some(status) = event.state.as_ref().and_then(CallStatus::of_live_state) {
                live_status = status;
            }
            voicemail_left |= matches!(
                event.state,
                Some(CallState::Voicemail | CallState::VoicemailUploaded)
            ) || event.snapshot.as_ref().is_some_and(|s| s.voicemail_left);

            latest(&mut leg.master_call_id, event.master_call_id);
            latest(&mut leg.entry_point_call_id, event.entry_point_call_id);
            latest(&mut leg.operator_call_id, event.operator_call_id);
            latest(&mut leg.direction, event.direction.clone());
            latest(&mut leg.external_number, event.external_number.clone());
            latest(&mut leg.internal_number, event.internal_number.clone());
            latest(&mut leg.started_at, event.date_started.and_then(ms));
            latest(&mut leg.rang_at, event.date_rang.and_then(ms));
            latest(&mut leg.queued_at, event.date_queued.and_then(ms));
            latest(&mut leg.connected_at, event.date_connected.and_then(ms));
            // `date_ended` can appear on a late in-call event (`docs/dialpad.md` §10.14): only an ended leg
            // has an end time.
            if phase >= Phase::Ended {
                latest(&mut leg.ended_at, event.date_ended.and_then(ms));
            }
            latest(&mut leg.duration_ms, event.duration.filter(|d| *d != 0.0));
            latest(
                &mut leg.total_duration_ms,
                event.total_duration.filter(|d| *d != 0.0),
            );
            latest(
                &mut leg.talk_time_ms,
                event.talk_time.filter(|d| *d != 0.0).map(round),
            );
            latest(
                &mut leg.hold_time_ms,
                event.hold_time.filter(|d| *d != 0.0).map(round),
            );
            leg.was_recorded |= event.was_recorded.unwrap_or(false);
            leg.is_transferred |= event.is_transferred.unwrap_or(false);
            latest(&mut leg.mos_score, event.mos_score);
            latest(&mut leg.recording_url, event.recording_link());
            latest(&mut leg.voicemail_link, event.voicemail_recording_link());
            latest(
                &mut leg.transcription_text,
                event.transcription_text.clone(),
            );
            latest(
                &mut leg.contact,
                event.contact.clone().filter(|p| !p.is_empty()),
            );
            latest(
                &mut leg.target,
                event.target.clone().filter(|p| !p.is_empty()),
            );
            latest(&mut leg.custom_data, event.custom_data.clone());
            latest(
                &mut leg.recording_id,
                event.call_recording().and_then(|d| d.id.clone()),
            );
            latest(
                &mut leg.voicemail_recording_id,
                event
                    .voicemail_recording_id
                    .clone()
                    .or_else(|| event.voicemail_recording().and_then(|d| d.id.clone())),
            );
            latest(
                &mut leg.voicemail_duration_ms,
                event.voicemail_recording().and_then(|d| d.duration),
            );
            latest(
                &mut leg.transferred_from,
                event.transferred_from.clone().filter(|p| !p.is_empty()),
            );
            latest(&mut leg.recap_summary, event.recap_summary.clone());
            latest(&mut leg.recap_outcome, event.recap_outcome.clone());
            latest(
                &mut leg.recap_action_items,
                event.recap_action_items.clone().filter(is_present),
            );
            latest(
                &mut leg.recap_purposes,
                event.recap_purposes.clone().filter(is_present),
            );
            latest(&mut leg.last_event_at, event.event_timestamp.and_then(ms));
            leg.event_count = leg
                .event_count
                .saturating_add(event.snapshot.as_ref().map_or(1, |s| s.event_count));
        }

        voicemail_left |= leg.voicemail_link.is_some();
        leg.status = if ended {
            if leg.connected_at.is_some() {
                CallStatus::Completed
            } else if voicemail_left {
                CallStatus::Voicemail
            } else {
                CallStatus::Missed
            }
        } else {
            live_status
        };
        // Dialpad reports 0 for durations of a leg that never connected: keep that as a known 0.
        if ended {
            leg.duration_ms.get_or_insert(0.0);
            leg.talk_time_ms.get_or_insert(0);
            leg.hold_time_ms.get_or_insert(0);
        }
        Some(leg)
    }
}

/// The fold's total order: Dialpad's clock, then lifecycle phase, then state, then content.
fn fold_order(event: &CallEvent) -> (i64, Phase, &str, &str) {
    (
        event.event_timestamp.unwrap_or(i64::MIN),
        event.phase(),
        event.state(),
        &event.content_key,
    )
}

/// A JSON value that says something: not `null`, `[]`, `{}` or `""`.
fn is_present(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Array(items) => !items.is_empty(),
        Value::Object(fields) => !fields.is_empty(),
        Value::String(text) => !text.is_empty(),
        _ => true,
    }
}

/// A later event's value replaces the current one; a missing value never erases it.
pub(crate) fn latest<T>(current: &mut Option<T>, incoming: Option<T>) {
    if incoming.is_some() {
        *current = incoming;
    }
}

fn round(value: f64) -> i64 {
    // Real durations are far below 2^53 ms, so the cast is exact after rounding; an absurd one
    // (1e308) saturates, as `as` does, rather than failing the event.
    value.round() as i64
}
