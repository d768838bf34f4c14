//! One phone call is one *logical call*: its legs linked and aggregated.
//!
//! Dialpad gives every leg its own `call_id` (the department or call-center leg, one leg per
//! person rung, one per transfer) and no single field names the call (`docs/dialpad.md` §4.4, §10.4). Legs
//! are linked through `entry_point_call_id`, `master_call_id` (a child names its parent) and
//! `operator_call_id` (a call-center leg names its answering agent's leg).
//!
//! # Linking
//! [`link`] puts legs that name each other in one group, and gives the group the id of its
//! *root*: following each leg's parent ([`CallLeg::parent_call_id`]) until an id with no known
//! parent; if a group has several roots (inconsistent data), the smallest. The root's id may be
//! one we have not seen a leg of yet (it arrives later, or is never sent): the logical call id
//! stays the same when it arrives. Like the leg fold, the result depends only on the set of
//! legs, never on arrival order.
//!
//! # Aggregation ([`LogicalCall::aggregate`])
//! What a person means by "the call", following the fixtures' ground truth
//! (`testdata/dialpad/README.md`, "Ground truth"):
//! - `status`: while any leg is live, the most advanced live status (`connected` > `on_hold` >
//!   `voicemail` > `queued` > `ringing` > `missed`); once every leg ended: `completed` if a
//!   person (user) leg was answered, else `voicemail` if one was left, else `abandoned` for an
//!   inbound call that was queued (the caller gave up in a call-center queue), else `missed`;
//! - `direction`, `from`/`to`, `target`: the root leg's (else the earliest leg's);
//! - `started_at` the earliest start; `answered_at` the earliest connect on a person leg;
//!   `ended_at` the latest end, once every leg ended;
//! - `talk_time_ms` / `hold_time_ms`: summed over person legs (a group leg repeats its agent's);
//! - `duration_ms` = `ended_at - answered_at` (the conversation), `total_duration_ms` =
//!   `ended_at - started_at`;
//! - `transferred`: two or more person legs answered, or a leg names `transferred_from`
//!   (Dialpad's `is_transferred` is not trusted alone: it was seen true on a plain call);
//! - `first_answered_by` / `final_handler`: the target of the first / last answered person leg;
//! - `recording_url`: the first recording link of a leg that recorded (root first, then by
//!   start); `mos_score`: the call quality of the first answered person leg that reports one
//!   (what the Node CTI server's call objects carried).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::call::{CallLeg, CallStatus, Direction, Party};

/// A leg as the linker sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegLinks {
    pub call_id: i64,
    /// [`CallLeg::parent_call_id`].
    pub parent_call_id: Option<i64>,
    pub operator_call_id: Option<i64>,
}

impl From<&CallLeg> for LegLinks {
    fn from(leg: &CallLeg) -> Self {
        LegLinks {
            call_id: leg.call_id,
            parent_call_id: leg.parent_call_id(),
            operator_call_id: leg.operator_call_id,
        }
    }
}

/// Each leg's logical call id (see the module docs). Ids named by a leg but never seen join
/// the groups without getting an entry.
pub fn link(legs: &[LegLinks]) -> BTreeMap<i64, i64> {
    let parents: BTreeMap<i64, i64> = legs
        .iter()
        .filter_map(|leg| leg.parent_call_id.map(|parent| (leg.call_id, parent)))
        .collect();
    let mut groups = UnionFind::default();
    for leg in legs {
        groups.add(leg.call_id);
        for other in [leg.parent_call_id, leg.operator_call_id]
            .into_iter()
            .flatten()
        {
            groups.union(leg.call_id, other);
        }
    }
    let root_of = |mut id: i64| {
        // Parent chains are short (department → call center → agent); the bound guards cycles.
        for _ in 0..legs.len() + 1 {
            match parents.get(&id) {
                Some(parent) => id = *parent,
                None => break,
            }
        }
        id
    };
    let mut group_root: BTreeMap<i64, i64> = BTreeMap::new();
    for leg in legs {
        let group = groups.find(leg.call_id);
        let root = root_of(leg.call_id);
        group_root
            .entry(group)
            .and_modify(|current| *current = (*current).min(root))
            .or_insert(root);
    }
    legs.iter()
        .map(|leg| (leg.call_id, group_root[&groups.find(leg.call_id)]))
        .collect()
}

#[derive(Debug, Default)]
struct UnionFind {
    parent: BTreeMap<i64, i64>,
}

impl UnionFind {
    fn add(&mut self, id: i64) {
        self.parent.entry(id).or_insert(id);
    }

    fn find(&mut self, id: i64) -> i64 {
        self.add(id);
        let mut root = id;
        while self.parent[&root] != root {
            root = self.parent[&root];
        }
        let mut node = id;
        while node != root {
            let next = self.parent[&node];
            self.parent.insert(node, root);
            node = next;
        }
        root
    }

    fn union(&mut self, a: i64, b: i64) {
        let (a, b) = (self.find(a), self.find(b));
        // Smallest id as representative: deterministic whatever the insertion order.
        let (low, high) = if a < b { (a, b) } else { (b, a) };
        self.parent.insert(high, low);
    }
}

/// The status of a logical call. Legs use the [`CallStatus`] values; a logical call can also
/// be `abandoned`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LogicalStatus {
    Leg(CallStatus),
    /// Inbound, queued, never answered, no voicemail: the caller gave up waiting.
    Abandoned,
}

impl LogicalStatus {
    /// The name stored in `logical_calls.status` and returned by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            LogicalStatus::Leg(status) => status.as_str(),
            LogicalStatus::Abandoned => "abandoned",
        }
    }
}

/// A phone call: its legs aggregated (see the module docs). One `logical_calls` row.
#[derive(Debug, Clone, PartialEq)]
pub struct LogicalCall {
    pub logical_call_id: i64,
    pub status: LogicalStatus,
    pub direction: Option<String>,
    pub from_number: Option<String>,
    pub to_number: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub answered_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    /// Milliseconds, summed over person legs.
    pub talk_time_ms: i64,
    /// Milliseconds, summed over person legs.
    pub hold_time_ms: i64,
    /// `ended_at - answered_at`, milliseconds.
    pub duration_ms: Option<i64>,
    /// `ended_at - started_at`, milliseconds.
    pub total_duration_ms: Option<i64>,
    pub transferred: bool,
    pub first_answered_by: Option<Party>,
    pub final_handler: Option<Party>,
    pub voicemail: bool,
    pub was_recorded: bool,
    pub contact: Option<Party>,
    pub target: Option<Party>,
    pub leg_count: i32,
    pub last_event_at: Option<DateTime<Utc>>,
    /// Dialpad's recording link, from the leg that recorded.
    pub recording_url: Option<String>,
    /// Dialpad's MOS call-quality score (1-5), from the answered person leg.
    pub mos_score: Option<f64>,
}

impl LogicalCall {
    /// Aggregates the legs of one logical call; `None` for no legs.
    pub fn aggregate(logical_call_id: i64, legs: &[&CallLeg]) -> Option<LogicalCall> {
        let mut legs: Vec<&CallLeg> = legs.to_vec();
        // Root first, then by start: the order "the call's own" fields are read in.
        legs.sort_by_key(|leg| (leg.call_id != logical_call_id, leg.started_at, leg.call_id));
        let main = *legs.first()?;
        let ended = legs.iter().all(|leg| leg.status.is_terminal());
        let mut answered: Vec<&CallLeg> = legs
            .iter()
            .copied()
            .filter(|leg| leg.is_person_leg() && leg.connected_at.is_some())
            .collect();
        answered.sort_by_key(|leg| (leg.connected_at, leg.call_id));
        let voicemail = legs
            .iter()
            .any(|leg| leg.voicemail_link.is_some() || leg.status == CallStatus::Voicemail);
        let started_at = legs.iter().filter_map(|leg| leg.started_at).min();
        let answered_at = answered.first().and_then(|leg| leg.connected_at);
        let ended_at = ended
            .then(|| legs.iter().filter_map(|leg| leg.ended_at).max())
            .flatten();
        let inbound = main.direction() == Some(Direction::Inbound);
        let status = if ended {
            if answered_at.is_some() {
                LogicalStatus::Leg(CallStatus::Completed)
            } else if voicemail {
                LogicalStatus::Leg(CallStatus::Voicemail)
            } else if inbound && legs.iter().any(|leg| leg.queued_at.is_some()) {
                LogicalStatus::Abandoned
            } else {
                LogicalStatus::Leg(CallStatus::Missed)
            }
        } else {
            let live = legs.iter().filter(|leg| !leg.status.is_terminal());
            LogicalStatus::Leg(
                live.map(|leg| leg.status)
                    .max_by_key(|status| live_rank(*status))
                    .unwrap_or(CallStatus::Ringing),
            )
        };
        let person_sum = |value: fn(&CallLeg) -> Option<i64>| -> i64 {
            legs.iter()
                .filter(|leg| leg.is_person_leg())
                .filter_map(|leg| value(leg))
                .fold(0_i64, i64::saturating_add)
        };
        let span = |from: Option<DateTime<Utc>>| {
            from.zip(ended_at)
                .map(|(from, to)| (to - from).num_milliseconds())
        };
        Some(LogicalCall {
            logical_call_id,
            status,
            direction: main.direction.clone(),
            from_number: main.from_number().map(str::to_owned),
            to_number: main.to_number().map(str::to_owned),
            started_at,
            answered_at,
            ended_at,
            talk_time_ms: person_sum(|leg| leg.talk_time_ms),
            hold_time_ms: person_sum(|leg| leg.hold_time_ms),
            duration_ms: span(answered_at),
            total_duration_ms: span(started_at),
            transferred: answered.len() >= 2
                || legs.iter().any(|leg| leg.transferred_from.is_some()),
            first_answered_by: answered.first().and_then(|leg| leg.target.clone()),
            final_handler: answered.last().and_then(|leg| leg.target.clone()),
            voicemail,
            was_recorded: legs.iter().any(|leg| leg.was_recorded),
            contact: legs.iter().find_map(|leg| leg.contact.clone()),
            target: main.target.clone(),
            leg_count: i32::try_from(legs.len()).unwrap_or(i32::MAX),
            last_event_at: legs.iter().filter_map(|leg| leg.last_event_at).max(),
            recording_url: legs
                .iter()
                .filter(|leg| leg.was_recorded)
                .chain(legs.iter().filter(|leg| !leg.was_recorded))
                .find_map(|leg| leg.recording_url.clone()),
            mos_score: answered.iter().find_map(|leg| leg.mos_score),
        })
    }
}

fn live_rank(status: CallStatus) -> u8 {
    match status {
        CallStatus::Connected => 6,
        CallStatus::OnHold => 5,
        CallStatus::Voicemail => 4,
        CallStatus::Queued => 3,
        CallStatus::Ringing => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::call::CallEvent;
    use crate::event::dedupe_key;

    macro_rules! fixtures {
        ($($name:literal),* $(,)?) => {
            vec![$(include_str!(concat!("../../../testdata/dialpad/", $name))),*]
        };
    }

    /// Folds each leg of the given events, links them, and aggregates every logical call.
    fn calls_of(jsons: &[&str]) -> Vec<LogicalCall> {
        let mut by_leg: BTreeMap<i64, Vec<CallEvent>> = BTreeMap::new();
        for json in jsons {
            let value: Value = serde_json::from_str(json).expect("JSON");
            let key = dedupe_key(value.as_object().expect("object"));
            let event = CallEvent::parse(&value, &key).expect("call event");
            by_leg.entry(event.call_id()).or_default().push(event);
        }
        let legs: Vec<CallLeg> = by_leg
            .values()
            .filter_map(|events| CallLeg::fold(events))
            .collect();
        let links = link(&legs.iter().map(LegLinks::from).collect::<Vec<_>>());
        let mut groups: BTreeMap<i64, Vec<&CallLeg>> = BTreeMap::new();
        for leg in &legs {
            groups.entry(links[&leg.call_id]).or_default().push(leg);
        }
        groups
            .iter()
            .filter_map(|(id, legs)| LogicalCall::aggregate(*id, legs))
            .collect()
    }

    fn at(epoch_ms: i64) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp_millis(epoch_ms)
    }

    #[test]
    fn call_center_legs_are_one_answered_call() {
        let mut events = fixtures!(
            "call_inbound_cc_01_queued.json",
            "call_inbound_cc_02_ringing.json",
            "call_inbound_cc_03_connected.json",
            "call_inbound_cc_04_hangup_agent_leg.json",
            "call_inbound_cc_05_hangup_callcenter_leg.json",
        );
        let expected = calls_of(&events);
        assert_eq!(expected.len(), 1);
        let call = &expected[0];
        assert_eq!(call.logical_call_id, 6_517_261_180_346_368);
        assert_eq!(call.status.as_str(), "completed");
        assert_eq!(call.direction.as_deref(), Some("inbound"));
        assert_eq!(call.from_number.as_deref(), Some("+13125550187"));
        assert_eq!(call.to_number.as_deref(), Some("+14155550120"));
        assert_eq!(call.started_at, at(1_795_105_200_048));
        assert_eq!(call.answered_at, at(1_795_105_213_398));
        assert_eq!(call.ended_at, at(1_795_105_401_314));
        assert_eq!(call.talk_time_ms, 187_604);
        assert_eq!(call.total_duration_ms, Some(201_266));
        assert_eq!(call.leg_count, 2);
        assert!(!call.transferred);
        let marcus = call
            .first_answered_by
            .as_ref()
            .and_then(|p| p.id.as_deref());
        assert_eq!(marcus, Some("4709249234968576"));
        // Agent leg before group leg.
        events.reverse();
        assert_eq!(calls_of(&events), expected);
    }

    #[test]
    fn a_transferred_call_is_one_call_with_two_handlers() {
        let mut events = fixtures!(
            "call_transfer_01_department_ringing.json",
            "call_transfer_02_agent_a_connected.json",
            "call_transfer_03_agent_b_connected.json",
            "call_transfer_04_agent_a_hangup.json",
            "call_transfer_05_agent_b_hangup.json",
            "call_transfer_06_department_hangup.json",
        );
        let expected = calls_of(&events);
        assert_eq!(expected.len(), 1);
        let call = &expected[0];
        assert_eq!(call.logical_call_id, 8_341_797_169_152_000);
        assert_eq!(call.status.as_str(), "completed");
        assert!(call.transferred);
        assert_eq!(call.from_number.as_deref(), Some("+12065550199"));
        assert_eq!(call.to_number.as_deref(), Some("+14155550130"));
        assert_eq!(call.answered_at, at(1_795_107_908_182));
        assert_eq!(call.ended_at, at(1_795_108_319_116));
        assert_eq!(call.talk_time_ms, 411_375);
        assert_eq!(call.duration_ms, Some(410_934));
        assert_eq!(call.total_duration_ms, Some(419_025));
        assert_eq!(call.leg_count, 3);
        let id = |p: &Option<Party>| p.as_ref().and_then(|p| p.id.clone());
        assert_eq!(
            id(&call.first_answered_by).as_deref(),
            Some("4709249234968576")
        );
        assert_eq!(id(&call.final_handler).as_deref(), Some("7756170664517632"));
        // Shuffled as the fixtures README suggests: 05, 02, 06, 01, 04, 03.
        let shuffled: Vec<&str> = [4, 1, 5, 0, 3, 2].iter().map(|i| events[*i]).collect();
        assert_eq!(calls_of(&shuffled), expected);
        events.reverse();
        assert_eq!(calls_of(&events), expected);
    }

    #[test]
    fn a_live_call_takes_its_most_advanced_leg() {
        let queued_then_ringing = fixtures!(
            "call_inbound_cc_01_queued.json",
            "call_inbound_cc_02_ringing.json",
        );
        assert_eq!(calls_of(&queued_then_ringing)[0].status.as_str(), "queued");
        let queued = fixtures!("call_inbound_cc_01_queued.json");
        let call = &calls_of(&queued)[0];
        assert_eq!(call.ended_at, None);
        assert_eq!(call.duration_ms, None);
    }

    #[test]
    fn unseen_roots_and_operator_links_keep_one_id() {
        let legs = [
            LegLinks {
                call_id: 30,
                parent_call_id: Some(20),
                operator_call_id: None,
            },
            LegLinks {
                call_id: 20,
                parent_call_id: Some(10),
                operator_call_id: Some(30),
            },
            LegLinks {
                call_id: 40,
                parent_call_id: Some(99),
                operator_call_id: None,
            },
            LegLinks {
                call_id: 50,
                parent_call_id: None,
                operator_call_id: Some(60),
            },
            LegLinks {
                call_id: 60,
                parent_call_id: None,
                operator_call_id: None,
            },
        ];
        let links = link(&legs);
        assert_eq!(links[&30], 10, "the root 10 was never seen: still the id");
        assert_eq!(links[&20], 10);
        assert_eq!(links[&40], 99);
        assert_eq!(
            (links[&50], links[&60]),
            (50, 50),
            "two roots: the smallest"
        );
        let mut reversed = legs;
        reversed.reverse();
        assert_eq!(link(&reversed), links);
    }
}
