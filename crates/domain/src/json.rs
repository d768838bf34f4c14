//! Lenient readers for Dialpad's JSON numbers.
//!
//! Dialpad webhooks send int64 ids and epoch-ms timestamps as JSON numbers, while its REST API
//! sends the same values as strings (`docs/dialpad.md` §10.2, <https://developers.dialpad.com/reference>).
//! Ids are int64 and must never pass through `f64` (`docs/dialpad.md` §10.3), so a float id is refused.

use serde::{Deserialize, Deserializer, de::Error};
use serde_json::Value;

/// `i64` from a JSON integer or a decimal string; `null` or absent → `None`.
/// For `#[serde(default, deserialize_with = "domain::json::opt_i64")]`.
pub fn opt_i64<'de, D: Deserializer<'de>>(de: D) -> Result<Option<i64>, D::Error> {
    match Option::<Value>::deserialize(de)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("expected an int64, got {n}"))),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => s
            .parse()
            .map(Some)
            .map_err(|_| D::Error::custom(format!("expected an int64, got {s:?}"))),
        Some(other) => Err(D::Error::custom(format!("expected an int64, got {other}"))),
    }
}

/// `f64` from a JSON number or numeric string (durations are float milliseconds).
pub(crate) fn opt_f64<'de, D: Deserializer<'de>>(de: D) -> Result<Option<f64>, D::Error> {
    match Option::<Value>::deserialize(de)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => s
            .parse()
            .map(Some)
            .map_err(|_| D::Error::custom(format!("expected a number, got {s:?}"))),
        Some(other) => Err(D::Error::custom(format!("expected a number, got {other}"))),
    }
}

/// A string field that may be `null`, absent, or (for robustness) a number.
pub(crate) fn opt_string<'de, D: Deserializer<'de>>(de: D) -> Result<Option<String>, D::Error> {
    match Option::<Value>::deserialize(de)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(D::Error::custom(format!("expected a string, got {other}"))),
    }
}

/// Reads an int64 id from a loose JSON value (used where the payload is not yet typed).
pub(crate) fn value_as_i64(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}
