//! Live streams' side of the outbox: each app's feed of announced events in position order
//! (`push_feeds`, see [`announce`](super::announce)), whether an app is listening, and the
//! short-lived tokens that open a stream from a browser.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::*;

/// How long a stream token opens streams, in seconds (5 minutes).
pub const STREAM_TOKEN_TTL_S: i64 = 300;

/// Prefix of stream tokens, so a leaked one is recognisable.
const TOKEN_PREFIX: &str = "st_";

/// An app's feed and a position in it (`push_feeds` rows as queries return them).
#[derive(Debug, Clone, Copy, QueryableByName)]
pub(super) struct FeedPosition {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub(super) app_id: Uuid,
    #[diesel(sql_type = BigInt)]
    pub(super) position: i64,
}

/// One announced event of an app's feed.
#[derive(Debug, Clone, QueryableByName)]
pub struct FeedEvent {
    /// Its place in the app's feed: gapless, in commit order (the SSE `id`).
    #[diesel(sql_type = BigInt)]
    pub position: i64,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub app_id: Uuid,
    #[diesel(sql_type = Text)]
    pub event_type: String,
    /// `{id, event, callId, status, timestamp, sequence, data}`, as webhooks get it.
    #[diesel(sql_type = Jsonb)]
    pub body: Value,
}

impl FeedEvent {
    /// Keeps the apps' changes announced until `window_s` seconds from now, subscription or
    /// not, so their streams (and a client resuming within the window) miss nothing.
    ///
    /// # Errors
    /// [`DbError`] from the query.
    pub async fn keep_listening(
        conn: &mut AsyncPgConnection,
        app_ids: &[Uuid],
        window_s: i64,
    ) -> Result<(), DbError> {
        if app_ids.is_empty() {
            return Ok(());
        }
        diesel::sql_query(
            "INSERT INTO push_feeds AS f (app_id, listening_until) \
             SELECT a, now() + make_interval(secs => $2) FROM unnest($1::uuid[]) AS a ORDER BY a \
             ON CONFLICT (app_id) DO UPDATE SET listening_until = excluded.listening_until",
        )
        .bind::<Array<diesel::sql_types::Uuid>, _>(app_ids)
        .bind::<diesel::sql_types::Double, _>(window_s as f64)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// The position of each app's last committed event (0 before its first), `(app_id,
    /// position)` for those of `app_ids` that have one.
    ///
    /// # Errors
    /// [`DbError`] from the query.
    pub async fn last_positions(
        conn: &mut AsyncPgConnection,
        app_ids: &[Uuid],
    ) -> Result<HashMap<Uuid, i64>, DbError> {
        let feeds: Vec<FeedPosition> =
            diesel::sql_query("SELECT app_id, position FROM push_feeds WHERE app_id = ANY ($1)")
                .bind::<Array<diesel::sql_types::Uuid>, _>(app_ids)
                .load(conn)
                .await?;
        Ok(feeds.into_iter().map(|f| (f.app_id, f.position)).collect())
    }

    /// Up to `limit` events of each app after its position, `(app_id, after)`, oldest first
    /// (one range of `push_events_position_idx` per app).
    ///
    /// # Errors
    /// [`DbError`] from the query.
    pub async fn after(
        conn: &mut AsyncPgConnection,
        cursors: &[(Uuid, i64)],
        limit: i64,
    ) -> Result<Vec<FeedEvent>, DbError> {
        if cursors.is_empty() {
            return Ok(Vec::new());
        }
        let (app_ids, positions): (Vec<Uuid>, Vec<i64>) = cursors.iter().copied().unzip();
        Ok(diesel::sql_query(
            "SELECT e.position, e.app_id, e.event_type, e.body \
             FROM unnest($1::uuid[], $2::bigint[]) AS c (app_id, after) \
             CROSS JOIN LATERAL ( \
               SELECT position, app_id, event_type, body FROM push_events \
               WHERE app_id = c.app_id AND position > c.after ORDER BY position LIMIT $3) e \
             ORDER BY e.app_id, e.position",
        )
        .bind::<Array<diesel::sql_types::Uuid>, _>(app_ids)
        .bind::<Array<BigInt>, _>(positions)
        .bind::<BigInt, _>(limit)
        .load(conn)
        .await?)
    }

    /// Where a client resuming after `last_seen` continues: `last_seen`, or, when the events
    /// after it are older than `since` (the resume window), just before the first event
    /// announced since then (one index probe), so an old or forged `Last-Event-ID` never reads
    /// the app's history.
    ///
    /// # Errors
    /// [`DbError`] from the query.
    pub async fn resume_point(
        conn: &mut AsyncPgConnection,
        app_id: Uuid,
        last_seen: i64,
        since: DateTime<Utc>,
    ) -> Result<i64, DbError> {
        #[derive(QueryableByName)]
        struct First {
            #[diesel(sql_type = BigInt)]
            position: i64,
        }
        let first: Option<First> = diesel::sql_query(
            "SELECT position FROM push_events WHERE app_id = $1 AND created_at >= $2 \
             ORDER BY created_at, id LIMIT 1",
        )
        .bind::<diesel::sql_types::Uuid, _>(app_id)
        .bind::<diesel::sql_types::Timestamptz, _>(since)
        .get_result(conn)
        .await
        .optional()?;
        let window_start = match first {
            Some(first) => first.position - 1,
            // Nothing announced within the window: resume from the end.
            None => Self::last_positions(conn, &[app_id])
                .await?
                .get(&app_id)
                .copied()
                .unwrap_or(0),
        };
        Ok(last_seen.max(window_start))
    }
}

/// Tokens that open an app's streams for [`STREAM_TOKEN_TTL_S`] seconds (`?token=`: browsers
/// cannot send headers on `EventSource` or WebSocket, and API keys are never accepted in URLs).
/// Only a SHA-256 hash is stored.
#[derive(Debug)]
pub struct StreamToken;

impl StreamToken {
    /// A new token for `app_id` (`st_` and 32 random bytes, base64url) and when it expires.
    ///
    /// # Errors
    /// [`DbError`] from the query.
    pub async fn issue(
        conn: &mut AsyncPgConnection,
        app_id: Uuid,
    ) -> Result<(SecretString, DateTime<Utc>), DbError> {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let token = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
        #[derive(QueryableByName)]
        struct Issued {
            #[diesel(sql_type = diesel::sql_types::Timestamptz)]
            expires_at: DateTime<Utc>,
        }
        let issued: Issued = diesel::sql_query(
            "INSERT INTO stream_tokens (token_hash, app_id, expires_at) \
             VALUES ($1, $2, now() + make_interval(secs => $3)) RETURNING expires_at",
        )
        .bind::<diesel::sql_types::Bytea, _>(Sha256::digest(token.as_bytes()).to_vec())
        .bind::<diesel::sql_types::Uuid, _>(app_id)
        .bind::<diesel::sql_types::Double, _>(STREAM_TOKEN_TTL_S as f64)
        .get_result(conn)
        .await?;
        Ok((SecretString::from(token), issued.expires_at))
    }

    /// The active app `token` opens streams of; `None` when it is unknown, expired, or its
    /// app is deactivated.
    ///
    /// # Errors
    /// [`DbError`] from the query.
    pub async fn app_of(
        conn: &mut AsyncPgConnection,
        token: &str,
    ) -> Result<Option<Uuid>, DbError> {
        if !token.starts_with(TOKEN_PREFIX) {
            return Ok(None);
        }
        #[derive(QueryableByName)]
        struct Opened {
            #[diesel(sql_type = diesel::sql_types::Uuid)]
            app_id: Uuid,
        }
        let opened: Option<Opened> = diesel::sql_query(
            "SELECT t.app_id FROM stream_tokens t JOIN apps a ON a.id = t.app_id AND a.active \
             WHERE t.token_hash = $1 AND t.expires_at > now()",
        )
        .bind::<diesel::sql_types::Bytea, _>(Sha256::digest(token.as_bytes()).to_vec())
        .get_result(conn)
        .await
        .optional()?;
        Ok(opened.map(|o| o.app_id))
    }

    /// Deletes expired tokens (retention); how many.
    ///
    /// # Errors
    /// [`DbError`] from the query.
    pub async fn prune_expired(conn: &mut AsyncPgConnection) -> Result<usize, DbError> {
        Ok(
            diesel::sql_query("DELETE FROM stream_tokens WHERE expires_at <= now()")
                .execute(conn)
                .await?,
        )
    }
}
