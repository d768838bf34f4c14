//! The outbox: what a write announces, written in the writer's transaction, with one delivery
//! per matching active subscription.

use super::*;

/// An event to announce: its id (the `webhook-id` of its deliveries), tenant, name and body.
#[derive(Debug, Clone)]
pub struct Announcement {
    pub id: Uuid,
    pub app_id: Uuid,
    pub event_type: &'static str,
    pub body: Value,
}

/// Writes `announcements` to the outbox, numbered in their app's feed (`push_feeds.position`,
/// the positions live streams resume from), and a delivery for each active subscription of
/// their app that takes their event: three statements, whatever their number. Call it once, at
/// the end of the transaction of the change that caused them.
///
/// # Positions
/// The app's `push_feeds` row stays locked from here to commit, so positions are gapless and in
/// commit order per app: a reader that sees position `n` committed has every position below.
/// The rows are locked in app id order in one statement, and nothing else in the transaction
/// may wait on a lock after this, or two workers could deadlock: hence once, at the end.
///
/// # Errors
/// [`DbError`] from the queries.
pub async fn announce(
    conn: &mut AsyncPgConnection,
    announcements: &[Announcement],
) -> Result<(), DbError> {
    if announcements.is_empty() {
        return Ok(());
    }
    let positions = take_positions(conn, announcements).await?;
    let ids: Vec<Uuid> = announcements.iter().map(|a| a.id).collect();
    let app_ids: Vec<Uuid> = announcements.iter().map(|a| a.app_id).collect();
    let types: Vec<&str> = announcements.iter().map(|a| a.event_type).collect();
    let bodies: Vec<&Value> = announcements.iter().map(|a| &a.body).collect();
    diesel::sql_query(
        "INSERT INTO push_events (id, app_id, event_type, body, position) \
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::jsonb[], $5::bigint[])",
    )
    .bind::<Array<diesel::sql_types::Uuid>, _>(&ids)
    .bind::<Array<diesel::sql_types::Uuid>, _>(&app_ids)
    .bind::<Array<Text>, _>(&types)
    .bind::<Array<Jsonb>, _>(&bodies)
    .bind::<Array<BigInt>, _>(&positions)
    .execute(conn)
    .await?;
    // One probe of `push_subscriptions_app_idx` per event; a tenant without subscriptions
    // inserts nothing (and fires no notification).
    diesel::sql_query(
        "INSERT INTO push_deliveries (event_id, subscription_id, app_id) \
         SELECT e.id, s.id, e.app_id \
         FROM unnest($1::uuid[], $2::uuid[], $3::text[]) AS e (id, app_id, event_type) \
         JOIN push_subscriptions s ON s.app_id = e.app_id AND s.active \
          AND ('*' = ANY (s.events) OR e.event_type = ANY (s.events))",
    )
    .bind::<Array<diesel::sql_types::Uuid>, _>(&ids)
    .bind::<Array<diesel::sql_types::Uuid>, _>(&app_ids)
    .bind::<Array<Text>, _>(&types)
    .execute(conn)
    .await?;
    Ok(())
}

/// Advances each app's feed by its number of announcements (creating the feed on its first)
/// and returns each announcement's position, in order. Locks the feeds' rows to commit, in
/// app id order (the insert's rows are sorted, and `ON CONFLICT` locks them as it meets them).
async fn take_positions(
    conn: &mut AsyncPgConnection,
    announcements: &[Announcement],
) -> Result<Vec<i64>, DbError> {
    let mut counts: std::collections::BTreeMap<Uuid, i64> = std::collections::BTreeMap::new();
    for announcement in announcements {
        *counts.entry(announcement.app_id).or_default() += 1;
    }
    let (apps, numbers): (Vec<Uuid>, Vec<i64>) = counts.iter().map(|(a, n)| (*a, *n)).unzip();
    let feeds: Vec<super::streams::FeedPosition> = diesel::sql_query(
        "INSERT INTO push_feeds AS f (app_id, position) \
         SELECT app_id, n FROM unnest($1::uuid[], $2::bigint[]) AS k (app_id, n) ORDER BY app_id \
         ON CONFLICT (app_id) DO UPDATE SET position = f.position + excluded.position \
         RETURNING f.app_id, f.position",
    )
    .bind::<Array<diesel::sql_types::Uuid>, _>(&apps)
    .bind::<Array<BigInt>, _>(&numbers)
    .load(conn)
    .await?;
    // The first position of each app's new events: its new last, less their number, plus one.
    let mut next: HashMap<Uuid, i64> = feeds
        .into_iter()
        .map(|feed| (feed.app_id, feed.position - counts[&feed.app_id] + 1))
        .collect();
    Ok(announcements
        .iter()
        .map(|a| {
            let position = next
                .get_mut(&a.app_id)
                .expect("every app's feed was advanced");
            *position += 1;
            *position - 1
        })
        .collect())
}

/// The apps among `app_ids` with an active subscription or a listening live stream
/// (`push_feeds.listening_until` in the future): the only ones whose changes are announced
/// (two primary-key or index probes each), so a tenant with neither pays one cheap query per
/// batch and writes nothing.
///
/// # Errors
/// [`DbError`] from the query.
pub async fn subscribed_apps(
    conn: &mut AsyncPgConnection,
    app_ids: &[Uuid],
) -> Result<HashSet<Uuid>, DbError> {
    if app_ids.is_empty() {
        return Ok(HashSet::new());
    }
    #[derive(QueryableByName)]
    struct Subscribed {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        app_id: Uuid,
    }
    let found: Vec<Subscribed> = diesel::sql_query(
        "SELECT a.app_id FROM unnest($1::uuid[]) AS a (app_id) WHERE EXISTS ( \
           SELECT 1 FROM push_subscriptions s WHERE s.app_id = a.app_id AND s.active) \
         OR EXISTS (SELECT 1 FROM push_feeds f \
           WHERE f.app_id = a.app_id AND f.listening_until > now())",
    )
    .bind::<Array<diesel::sql_types::Uuid>, _>(app_ids)
    .load(conn)
    .await?;
    Ok(found.into_iter().map(|s| s.app_id).collect())
}

/// The rows of `rows` whose tenant announces its changes ([`subscribed_apps`]).
///
/// # Errors
/// [`DbError`] from the query.
pub async fn subscribed_rows<T: Clone>(
    conn: &mut AsyncPgConnection,
    rows: &[T],
    app_of: impl Fn(&T) -> Uuid,
) -> Result<Vec<T>, DbError> {
    let app_ids: Vec<Uuid> = rows
        .iter()
        .map(&app_of)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let subscribed = subscribed_apps(conn, &app_ids).await?;
    Ok(rows
        .iter()
        .filter(|row| subscribed.contains(&app_of(row)))
        .cloned()
        .collect())
}

/// Appends one announcement per `(event, data)` about subject `subject_id` (a phone call's or a
/// message's id) to `out`, numbered after `sequence`; returns the last number. Each body is
/// `{id, event, callId, status, timestamp, sequence, data}` (`docs/events.md`).
fn number_announcements(
    out: &mut Vec<Announcement>,
    app_id: Uuid,
    subject_id: i64,
    status: Option<&str>,
    mut sequence: i64,
    events: impl IntoIterator<Item = (PushEvent, Value)>,
) -> i64 {
    for (event, data) in events {
        sequence += 1;
        let id = Uuid::new_v4();
        out.push(Announcement {
            id,
            app_id,
            event_type: event.as_str(),
            body: json!({
                "id": id.to_string(),
                "event": event.as_str(),
                "callId": subject_id.to_string(),
                "status": status,
                "timestamp": timestamp(Utc::now()),
                "sequence": sequence,
                "data": data,
            }),
        });
    }
    sequence
}

/// Where an announced subject's last `sequence` is kept.
#[derive(Debug, Clone, Copy)]
enum Sequenced {
    LogicalCalls,
    Messages,
}

/// Stores the last announced `sequence` of subjects, `(app_id, id, sequence)`.
async fn set_sequences(
    conn: &mut AsyncPgConnection,
    table: Sequenced,
    sequences: &[(Uuid, i64, i64)],
) -> Result<(), DbError> {
    if sequences.is_empty() {
        return Ok(());
    }
    let (table, id) = match table {
        Sequenced::LogicalCalls => ("logical_calls", "logical_call_id"),
        Sequenced::Messages => ("messages", "message_id"),
    };
    let app_ids: Vec<Uuid> = sequences.iter().map(|s| s.0).collect();
    let ids: Vec<i64> = sequences.iter().map(|s| s.1).collect();
    let values: Vec<i64> = sequences.iter().map(|s| s.2).collect();
    diesel::sql_query(format!(
        "UPDATE {table} t SET push_sequence = k.sequence \
         FROM unnest($1::uuid[], $2::bigint[], $3::bigint[]) AS k (app_id, id, sequence) \
         WHERE t.app_id = k.app_id AND t.{id} = k.id"
    ))
    .bind::<Array<diesel::sql_types::Uuid>, _>(app_ids)
    .bind::<Array<BigInt>, _>(ids)
    .bind::<Array<BigInt>, _>(values)
    .execute(conn)
    .await?;
    Ok(())
}

/// The last `sequence` announced for each of the given phone calls, `(app_id,
/// logical_call_id)`, with what the announcement rules read of them; absent calls are new.
#[derive(Debug, Clone, QueryableByName)]
pub struct CallBefore {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub app_id: Uuid,
    #[diesel(sql_type = BigInt)]
    pub logical_call_id: i64,
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = Bool)]
    pub answered: bool,
    #[diesel(sql_type = Bool)]
    pub ended: bool,
    #[diesel(sql_type = Bool)]
    pub recorded: bool,
    #[diesel(sql_type = BigInt)]
    pub push_sequence: i64,
}

/// The stored state of the given phone calls (one index probe each), before a write changes
/// them.
///
/// # Errors
/// [`DbError`] from the query.
pub async fn calls_before(
    conn: &mut AsyncPgConnection,
    calls: &[(Uuid, i64)],
) -> Result<Vec<CallBefore>, DbError> {
    if calls.is_empty() {
        return Ok(Vec::new());
    }
    let (app_ids, ids): (Vec<Uuid>, Vec<i64>) = calls.iter().copied().unzip();
    Ok(diesel::sql_query(
        "SELECT l.app_id, l.logical_call_id, l.status, l.answered_at IS NOT NULL AS answered, \
           l.ended_at IS NOT NULL AS ended, l.recording_url IS NOT NULL AS recorded, \
           l.push_sequence \
         FROM unnest($1::uuid[], $2::bigint[]) AS k (app_id, id) \
         JOIN logical_calls l ON l.app_id = k.app_id AND l.logical_call_id = k.id",
    )
    .bind::<Array<diesel::sql_types::Uuid>, _>(app_ids)
    .bind::<Array<BigInt>, _>(ids)
    .load(conn)
    .await?)
}

/// What changed in the phone calls `after` (just written) since `before` (their stored state,
/// read before the write by [`calls_before`]), and the voicemails left on them
/// (`new_voicemails`: rows that did not exist before, [`new_voicemails`]), as announcements
/// for [`announce`]; stores each call's last `sequence`. A `voicemail.created` body's `data` is
/// the voicemail as `GET /api/voicemails` lists it.
///
/// # Errors
/// [`DbError`] from the queries.
pub async fn call_change_announcements(
    conn: &mut AsyncPgConnection,
    before: &[CallBefore],
    after: &[LogicalCallRow],
    new_voicemails: &[VoicemailRow],
) -> Result<Vec<Announcement>, DbError> {
    let mut voicemails: HashMap<(Uuid, i64), Vec<&VoicemailRow>> = HashMap::new();
    for voicemail in new_voicemails {
        if let Some(call) = voicemail.logical_call_id {
            voicemails
                .entry((voicemail.app_id, call))
                .or_default()
                .push(voicemail);
        }
    }
    let before: HashMap<(Uuid, i64), &CallBefore> = before
        .iter()
        .map(|b| ((b.app_id, b.logical_call_id), b))
        .collect();
    let mut announcements = Vec::new();
    let mut sequences = Vec::new();
    for call in after {
        let key = (call.app_id, call.logical_call_id);
        let stored = before.get(&key);
        let facts = |status: &str, answered, ended, recorded| CallFacts {
            status: status.to_owned(),
            inbound: call.direction.as_deref() == Some("inbound"),
            answered,
            ended,
            recorded,
        };
        let then = stored.map(|b| facts(&b.status, b.answered, b.ended, b.recorded));
        let now = facts(
            &call.status,
            call.answered_at.is_some(),
            call.ended_at.is_some(),
            call.recording_url.is_some(),
        );
        let events = call_announcements(then.as_ref(), &now);
        let left = voicemails.get(&key).map(Vec::as_slice).unwrap_or_default();
        if events.is_empty() && left.is_empty() {
            continue;
        }
        let data = serde_json::to_value(PhoneCallView::from(call.clone())).unwrap_or_default();
        let voicemail_data = left.iter().map(|voicemail| {
            let view = VoicemailView::from((*voicemail).clone());
            let data = serde_json::to_value(view).unwrap_or_default();
            (PushEvent::VoicemailCreated, data)
        });
        let last = number_announcements(
            &mut announcements,
            call.app_id,
            call.logical_call_id,
            Some(&call.status),
            stored.map_or(0, |b| b.push_sequence),
            events
                .into_iter()
                .map(|event| (event, data.clone()))
                .chain(voicemail_data),
        );
        sequences.push((call.app_id, call.logical_call_id, last));
    }
    set_sequences(conn, Sequenced::LogicalCalls, &sequences).await?;
    Ok(announcements)
}

/// What the announcement rules read of a stored message, before a write changes it.
#[derive(Debug, Clone, QueryableByName)]
pub struct MessageBefore {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub app_id: Uuid,
    #[diesel(sql_type = BigInt)]
    pub message_id: i64,
    #[diesel(sql_type = Nullable<Text>)]
    pub message_status: Option<String>,
    #[diesel(sql_type = BigInt)]
    pub push_sequence: i64,
}

/// The stored state of the given messages, `(app_id, message_id)` (one index probe each);
/// absent messages are new.
///
/// # Errors
/// [`DbError`] from the query.
pub async fn messages_before(
    conn: &mut AsyncPgConnection,
    messages: &[(Uuid, i64)],
) -> Result<Vec<MessageBefore>, DbError> {
    if messages.is_empty() {
        return Ok(Vec::new());
    }
    let (app_ids, ids): (Vec<Uuid>, Vec<i64>) = messages.iter().copied().unzip();
    Ok(diesel::sql_query(
        "SELECT m.app_id, m.message_id, m.message_status, m.push_sequence \
         FROM unnest($1::uuid[], $2::bigint[]) AS k (app_id, id) \
         JOIN messages m ON m.app_id = k.app_id AND m.message_id = k.id",
    )
    .bind::<Array<diesel::sql_types::Uuid>, _>(app_ids)
    .bind::<Array<BigInt>, _>(ids)
    .load(conn)
    .await?)
}

/// What changed in the messages `after` (just written) since `before` ([`messages_before`]),
/// as announcements for [`announce`]; stores each message's last `sequence`. The body's
/// `callId` is the message's id.
///
/// # Errors
/// [`DbError`] from the queries.
pub async fn message_change_announcements(
    conn: &mut AsyncPgConnection,
    before: &[MessageBefore],
    after: &[MessageRow],
) -> Result<Vec<Announcement>, DbError> {
    let before: HashMap<(Uuid, i64), &MessageBefore> = before
        .iter()
        .map(|b| ((b.app_id, b.message_id), b))
        .collect();
    let mut announcements = Vec::new();
    let mut sequences = Vec::new();
    for message in after {
        let stored = before.get(&(message.app_id, message.message_id));
        let inbound = message.direction.as_deref() == Some("inbound");
        let then = stored.map(|b| MessageFacts {
            inbound,
            status: b.message_status.clone(),
        });
        let now = MessageFacts {
            inbound,
            status: message.message_status.clone(),
        };
        let events = message_announcements(then.as_ref(), &now);
        if events.is_empty() {
            continue;
        }
        let data = serde_json::to_value(MessageView::from(message.clone())).unwrap_or_default();
        let last = number_announcements(
            &mut announcements,
            message.app_id,
            message.message_id,
            message.message_status.as_deref(),
            stored.map_or(0, |b| b.push_sequence),
            events.into_iter().map(|event| (event, data.clone())),
        );
        sequences.push((message.app_id, message.message_id, last));
    }
    set_sequences(conn, Sequenced::Messages, &sequences).await?;
    Ok(announcements)
}

/// The voicemails of `rows` that are not stored yet (one index probe each): the ones a write
/// of `rows` creates.
///
/// # Errors
/// [`DbError`] from the query.
pub async fn new_voicemails(
    conn: &mut AsyncPgConnection,
    rows: &[VoicemailRow],
) -> Result<Vec<VoicemailRow>, DbError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    #[derive(QueryableByName)]
    struct Stored {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        app_id: Uuid,
        #[diesel(sql_type = BigInt)]
        call_id: i64,
    }
    let (app_ids, ids): (Vec<Uuid>, Vec<i64>) = rows.iter().map(|v| (v.app_id, v.call_id)).unzip();
    let stored: HashSet<(Uuid, i64)> = diesel::sql_query(
        "SELECT v.app_id, v.call_id FROM unnest($1::uuid[], $2::bigint[]) AS k (app_id, id) \
         JOIN voicemails v ON v.app_id = k.app_id AND v.call_id = k.id",
    )
    .bind::<Array<diesel::sql_types::Uuid>, _>(app_ids)
    .bind::<Array<BigInt>, _>(ids)
    .load::<Stored>(conn)
    .await?
    .into_iter()
    .map(|s| (s.app_id, s.call_id))
    .collect();
    Ok(rows
        .iter()
        .filter(|v| !stored.contains(&(v.app_id, v.call_id)))
        .cloned()
        .collect())
}

/// Deletes up to `limit` announced events older than `cutoff` none of whose deliveries is still
/// pending (their deliveries and attempt logs go with them); how many. Retention calls it until
/// it returns 0.
///
/// # Errors
/// [`DbError`] from the query.
pub async fn prune_announcements(
    conn: &mut AsyncPgConnection,
    cutoff: DateTime<Utc>,
    limit: i64,
) -> Result<usize, DbError> {
    Ok(diesel::sql_query(
        "DELETE FROM push_events WHERE id IN ( \
           SELECT e.id FROM push_events e WHERE e.created_at < $1 AND NOT EXISTS ( \
             SELECT 1 FROM push_deliveries d WHERE d.event_id = e.id AND d.status = 'pending') \
           ORDER BY e.created_at LIMIT $2)",
    )
    .bind::<diesel::sql_types::Timestamptz, _>(cutoff)
    .bind::<BigInt, _>(limit)
    .execute(conn)
    .await?)
}
