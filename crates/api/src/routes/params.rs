//! The list conventions every tenant list shares: `limit` (1–200, default 50), `offset`,
//! keyset `cursor` (from a previous page's `next_cursor`), `from`/`to` (RFC 3339, on the list's
//! time), `number` (E.164), `direction`. Each error names its parameter.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use db::listing::{Position, Window};

use crate::error::ApiError;

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 200;

/// The query parameters of the tenant lists, as text so errors can name the parameter.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ListQuery {
    pub(crate) limit: Option<String>,
    pub(crate) offset: Option<String>,
    pub(crate) cursor: Option<String>,
    pub(crate) from: Option<String>,
    pub(crate) to: Option<String>,
    pub(crate) number: Option<String>,
    pub(crate) direction: Option<String>,
    pub(crate) status: Option<String>,
    pub(crate) state: Option<String>,
    pub(crate) target_id: Option<String>,
    pub(crate) view: Option<String>,
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

impl ListQuery {
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

    /// `direction`: `inbound` or `outbound`.
    pub(crate) fn direction(&self) -> Result<Option<String>, ApiError> {
        one_of(
            "direction",
            self.direction.as_deref(),
            &["inbound", "outbound"],
        )
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
        ms => Some(
            ms.parse()
                .ok()
                .and_then(DateTime::from_timestamp_millis)
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
    }

    #[test]
    fn numbers_must_be_e164() {
        let number = |raw: &str| {
            ListQuery {
                number: Some(raw.into()),
                ..ListQuery::default()
            }
            .number()
        };
        assert!(number("+14155550100").is_ok());
        for bad in ["4155550100", "+0123", "+1", "+1415555010012345", "+1-415"] {
            assert!(number(bad).is_err(), "{bad}");
        }
    }
}
