//! The list conventions every tenant list shares: `limit` (1–200, default 50), `offset`,
//! keyset `cursor` (from a previous page's `next_cursor`), `from`/`to` (RFC 3339, on the list's
//! time), `number` (E.164), `direction`. Each error names its parameter.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{KnownFormat, Object, ObjectBuilder, SchemaFormat, Type};
use utoipa::{IntoParams, ToSchema};

use db::listing::{Position, Window};

use crate::error::ApiError;

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 200;

/// Values of `direction`. `all` means no filter: the Node CTI server's clients send it.
pub(crate) const DIRECTIONS: &[&str] = &["inbound", "outbound", "all"];

/// The OpenAPI schema of a string parameter taking one of `values` (the lists the handlers
/// check against, so the document cannot drift from them). A parameter with its own schema
/// carries its description there.
pub(crate) fn string_enum(values: &[&str], description: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values.iter().copied()))
        .description(Some(description))
        .build()
}

fn direction_schema() -> Object {
    string_enum(
        DIRECTIONS,
        "`inbound` or `outbound`; `all` (or leaving it out) lists both.",
    )
}

fn time_schema(description: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
        .examples(["2026-11-19T16:00:00Z"])
        .description(Some(description))
        .build()
}

fn from_schema() -> Object {
    time_schema(
        "Only rows at or after this time (RFC 3339), on the list's time: a call's \
         `started_at`, a message's `sent_at`, a voicemail's `left_at`.",
    )
}

fn to_schema() -> Object {
    time_schema("Only rows before this time (RFC 3339), on the same time as `from`.")
}

/// Paging of the tenant lists: `limit` with `offset`, or keyset `cursor`. Parameters are read
/// as text so that an error can name the parameter.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageQuery {
    /// Rows per page, 1–200 (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    pub(crate) limit: Option<String>,
    /// Rows to skip (default 0); not together with `cursor`.
    #[param(value_type = Option<i64>, minimum = 0)]
    pub(crate) offset: Option<String>,
    /// A previous page's `next_cursor` (opaque): the rows after it, at the cost of the first
    /// page however deep; not together with `offset`.
    pub(crate) cursor: Option<String>,
}

/// The time range and party filters of the tenant lists.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RangeQuery {
    /// Start of the time range (described in `from_schema`).
    #[param(schema_with = from_schema)]
    pub(crate) from: Option<String>,
    /// End of the time range (described in `to_schema`).
    #[param(schema_with = to_schema)]
    pub(crate) to: Option<String>,
    /// Only rows with this number (E.164, e.g. `+14155550100`) as either party (a message's
    /// sender or any recipient).
    #[param(example = "+14155550100")]
    pub(crate) number: Option<String>,
}

/// The `direction` filter (calls and messages).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DirectionQuery {
    /// `inbound`, `outbound` or `all` (described in `direction_schema`).
    #[param(schema_with = direction_schema)]
    pub(crate) direction: Option<String>,
}

/// The paging fields of every tenant list page, beside its rows.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PageMeta {
    /// How many rows match the filters in all; `null` on cursor pages (the count is paid once,
    /// on the first page, not on every page of a walk). Exact when this page ends the list;
    /// otherwise it may be up to ~1.25 s old (`TOTAL_CACHE_TTL_MS`, default 1 s).
    total: Option<i64>,
    /// The page size used.
    limit: i64,
    /// The rows skipped.
    offset: i64,
    /// The `cursor` of the next page; `null` when this page is the last.
    next_cursor: Option<String>,
}

impl PageMeta {
    pub(crate) fn new(total: Option<i64>, window: Window, next_cursor: Option<String>) -> Self {
        PageMeta {
            total,
            limit: window.limit,
            offset: window.offset,
            next_cursor,
        }
    }
}

fn invalid(name: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::InvalidParameter {
        name,
        message: message.into(),
    }
}

/// `limit`: 1–200, default 50.
pub(crate) fn limit(raw: Option<&str>) -> Result<i64, ApiError> {
    match raw {
        None => Ok(DEFAULT_LIMIT),
        Some(raw) => raw
            .parse()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| invalid("limit", format!("must be an integer from 1 to {MAX_LIMIT}"))),
    }
}

/// A `cursor` that is a plain id (admin lists: the last id of the previous page).
pub(crate) fn id_cursor(raw: Option<&str>) -> Result<Option<i64>, ApiError> {
    raw.map(|raw| {
        raw.parse()
            .map_err(|_| invalid("cursor", "must be a next_cursor from a previous page"))
    })
    .transpose()
}

impl PageQuery {
    /// `limit`, `offset` and `cursor` (not both of the last two).
    pub(crate) fn window(&self) -> Result<Window, ApiError> {
        let limit = limit(self.limit.as_deref())?;
        let offset = match self.offset.as_deref() {
            None => 0,
            Some(raw) => raw
                .parse()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| invalid("offset", "must be a non-negative integer"))?,
        };
        let after = self.cursor.as_deref().map(decode_cursor).transpose()?;
        if after.is_some() && offset > 0 {
            return Err(invalid("cursor", "use either offset or cursor, not both"));
        }
        Ok(Window {
            limit,
            offset,
            after,
        })
    }
}

impl RangeQuery {
    /// `from` and `to`, RFC 3339, `from` before `to`.
    pub(crate) fn time_range(&self) -> Result<TimeRange, ApiError> {
        let parse = |name: &'static str, raw: &Option<String>| {
            raw.as_deref()
                .map(|raw| {
                    DateTime::parse_from_rfc3339(raw)
                        .map(|t| t.with_timezone(&Utc))
                        .map_err(|_| {
                            invalid(name, "must be an RFC 3339 time, e.g. 2026-11-19T16:00:00Z")
                        })
                })
                .transpose()
        };
        let (from, to) = (parse("from", &self.from)?, parse("to", &self.to)?);
        if let (Some(from), Some(to)) = (from, to)
            && from >= to
        {
            return Err(invalid("from", "must be before to"));
        }
        Ok((from, to))
    }

    /// `number`: E.164 (`+` and 2 to 15 digits).
    pub(crate) fn number(&self) -> Result<Option<String>, ApiError> {
        self.number
            .as_deref()
            .map(|raw| {
                let digits = raw.strip_prefix('+').unwrap_or_default();
                let valid = (2..=15).contains(&digits.len())
                    && digits.bytes().all(|b| b.is_ascii_digit())
                    && !digits.starts_with('0');
                valid
                    .then(|| raw.to_owned())
                    .ok_or_else(|| invalid("number", "must be an E.164 number, e.g. +14155550100"))
            })
            .transpose()
    }
}

impl DirectionQuery {
    /// `direction`: `inbound` or `outbound`; `None` for `all` or none.
    pub(crate) fn direction(&self) -> Result<Option<String>, ApiError> {
        Ok(one_of("direction", self.direction.as_deref(), DIRECTIONS)?
            .filter(|direction| direction != "all"))
    }
}

/// `(from, to)`: a half-open time range, either end open.
pub(crate) type TimeRange = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// A parameter that must be one of `allowed`.
pub(crate) fn one_of(
    name: &'static str,
    raw: Option<&str>,
    allowed: &[&str],
) -> Result<Option<String>, ApiError> {
    raw.map(|value| {
        allowed
            .contains(&value)
            .then(|| value.to_owned())
            .ok_or_else(|| invalid(name, format!("must be one of {}", allowed.join(", "))))
    })
    .transpose()
}

/// The opaque cursor of a page's last row: base64url of `<time in ms or "-">.<id>`.
pub(crate) fn encode_cursor(at: Option<DateTime<Utc>>, id: i64) -> String {
    let at = at.map_or_else(|| "-".to_owned(), |t| t.timestamp_millis().to_string());
    URL_SAFE_NO_PAD.encode(format!("{at}.{id}"))
}

fn decode_cursor(raw: &str) -> Result<Position, ApiError> {
    let bad = || invalid("cursor", "must be a next_cursor from a previous page");
    let text = URL_SAFE_NO_PAD.decode(raw).map_err(|_| bad())?;
    let text = String::from_utf8(text).map_err(|_| bad())?;
    let (at, id) = text.split_once('.').ok_or_else(bad)?;
    let at = match at {
        "-" => None,
        // Only a time Postgres can hold: a forged one past its range would fail the query.
        ms => Some(
            ms.parse()
                .ok()
                .and_then(domain::json::storable_time)
                .ok_or_else(bad)?,
        ),
    };
    Ok(Position {
        at,
        id: id.parse().map_err(|_| bad())?,
    })
}

/// The next page's cursor: after the last row, when the page is full.
pub(crate) fn next_cursor<T>(
    rows: &[T],
    limit: i64,
    position: impl Fn(&T) -> (Option<DateTime<Utc>>, i64),
) -> Option<String> {
    let full = i64::try_from(rows.len()).is_ok_and(|n| n == limit);
    full.then(|| rows.last()).flatten().map(|row| {
        let (at, id) = position(row);
        encode_cursor(at, id)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let at = DateTime::from_timestamp_millis(1_795_104_000_112);
        let cursor = encode_cursor(at, 7_189_235_590_594_560);
        assert_eq!(
            decode_cursor(&cursor).expect("valid"),
            Position {
                at,
                id: 7_189_235_590_594_560
            }
        );
        assert_eq!(
            decode_cursor(&encode_cursor(None, 5)).expect("valid").at,
            None
        );
        for bad in ["", "!!", "bm9wZQ", "LS4"] {
            assert!(decode_cursor(bad).is_err(), "{bad}");
        }
        // A well-formed cursor whose time Postgres cannot hold (before 4714 BC).
        let forged = URL_SAFE_NO_PAD.encode("-8000000000000000.1");
        assert!(decode_cursor(&forged).is_err());
    }

    #[test]
    fn numbers_must_be_e164() {
        let number = |raw: &str| {
            RangeQuery {
                number: Some(raw.into()),
                ..RangeQuery::default()
            }
            .number()
        };
        assert!(number("+14155550100").is_ok());
        for bad in ["4155550100", "+0123", "+1", "+1415555010012345", "+1-415"] {
            assert!(number(bad).is_err(), "{bad}");
        }
    }
}
