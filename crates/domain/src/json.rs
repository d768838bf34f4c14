//! The tolerant reader: how every field of a Dialpad payload is read.
//!
//! Dialpad is loose about types: webhooks send int64 ids and epoch-ms times as JSON numbers, its
//! REST API sends the same values as strings (`docs/dialpad.md` §1, §10.2), and absent objects
//! come as `null`, `""` or `{}`. A payload a little off the documented shape must still become
//! a call, so only an event's **identity** must be well formed ([`identity`]: a call's
//! `call_id`, a message's `id`; the parsers also require a call's `state`). Every other field is
//! read by one of the `deserialize_with` functions below, which never fail: a value of another
//! type, one that cannot be converted, or one out of the range we store reads as absent
//! (`None`), like `null`. Unknown fields are ignored. Nothing is lost by this: the raw payload
//! stays in the event log, and a replay applies it again with whatever a later version reads.
//!
//! Use them as `#[serde(default, deserialize_with = "crate::json::int")]`.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// The longest value a [`token`] or a text [`id_text`] keeps, in bytes. Enumerations (states,
/// directions, party types) are a few words; a longer value is not one, and some are indexed
/// (a btree entry cannot exceed ~2.7 kB).
pub const MAX_TOKEN_BYTES: usize = 64;

/// The earliest `timestamptz` Postgres holds (4714-11-24 BC, Julian day 0), in epoch
/// milliseconds (<https://www.postgresql.org/docs/15/datatype-datetime.html>). Its latest
/// (294276 AD) is past anything `chrono` holds.
const POSTGRES_EARLIEST_MS: i64 = -210_866_803_200_000;

/// Floats up to 2^53 are exact integers; beyond it a float id or time may have lost digits.
const EXACT_FLOAT_LIMIT: f64 = 9_007_199_254_740_992.0;

/// An event's identity: a JSON integer in int64, or a string of ASCII digits that is one.
/// Nothing else, not even an integral float: an id that passed through `f64` may have lost
/// digits (`docs/dialpad.md` §10.3), and a wrong id would merge two calls.
///
/// Ingest stores it as `webhook_events.dialpad_id` and the worker groups a leg's events by it,
/// so both read it here.
pub fn identity(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok()
        }
        _ => None,
    }
}

/// [`identity`] as a field reader (`deserialize_with`): `None` when the value is unusable.
pub fn identity_field<'de, D: Deserializer<'de>>(de: D) -> Result<Option<i64>, D::Error> {
    Ok(identity(&loose(de)?))
}

/// A JSON object's text as an event parser reads it ([`object_text`]).
pub(crate) enum ObjectText<T> {
    /// Decoded straight into the typed event.
    Typed(T),
    /// The typed read failed, so it is read as a value: only a repeated key can make it fail
    /// (every field is read leniently), and in a value the last of a repeated key wins, as in
    /// `jsonb`.
    Value(Value),
}

/// Reads an event's JSON text straight into `T` (no `Value` tree in between), or as a value
/// when that fails; `None` when the text is not a JSON object.
pub(crate) fn object_text<T: DeserializeOwned>(text: &str) -> Option<ObjectText<T>> {
    if !text.trim_start().starts_with('{') {
        return None;
    }
    match serde_json::from_str(text) {
        Ok(typed) => Some(ObjectText::Typed(typed)),
        Err(_) => serde_json::from_str(text).ok().map(ObjectText::Value),
    }
}

/// An instant from epoch milliseconds, if Postgres can store it (`None` otherwise).
pub fn storable_time(epoch_ms: i64) -> Option<DateTime<Utc>> {
    (epoch_ms >= POSTGRES_EARLIEST_MS)
        .then(|| DateTime::from_timestamp_millis(epoch_ms))
        .flatten()
}

/// An int64 from a loose value: an integer, an integral float up to 2^53, or a string of one.
pub fn int_of(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().and_then(exact_int)),
        Value::String(s) => {
            let s = s.trim();
            s.parse()
                .ok()
                .or_else(|| s.parse::<f64>().ok().and_then(exact_int))
        }
        _ => None,
    }
}

fn exact_int(float: f64) -> Option<i64> {
    // In range and integral, so the cast is exact.
    (float.fract() == 0.0 && float.abs() <= EXACT_FLOAT_LIMIT).then_some(float as i64)
}

/// Reads the field as a JSON value; never fails on a `serde_json::Value` input.
fn loose<'de, D: Deserializer<'de>>(de: D) -> Result<Value, D::Error> {
    Ok(Option::<Value>::deserialize(de)?.unwrap_or(Value::Null))
}

/// An int64 ([`int_of`]): ids that are links, epoch-ms times, integer milliseconds.
pub fn int<'de, D: Deserializer<'de>>(de: D) -> Result<Option<i64>, D::Error> {
    Ok(int_of(&loose(de)?))
}

/// A finite `f64` from a number or a numeric string (durations are float milliseconds).
pub fn float<'de, D: Deserializer<'de>>(de: D) -> Result<Option<f64>, D::Error> {
    Ok(match loose(de)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|f| f.is_finite()))
}

/// Text: a non-empty string, or a number or boolean as written. Objects and arrays are absent.
pub fn text<'de, D: Deserializer<'de>>(de: D) -> Result<Option<String>, D::Error> {
    Ok(text_of(loose(de)?))
}

fn text_of(value: Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// An enumeration value (a state, a direction, a party type): a non-empty string of at most
/// [`MAX_TOKEN_BYTES`]; values we do not know are kept as they are. A number or boolean is no
/// enumeration value, so it is absent.
pub fn token<'de, D: Deserializer<'de>>(de: D) -> Result<Option<String>, D::Error> {
    Ok(nonempty_string(loose(de)?).filter(|s| s.len() <= MAX_TOKEN_BYTES))
}

/// An id kept as text: an integer (or a string of one) in canonical decimal, so `42` and
/// `"042"` are the same id; any other string of at most [`MAX_TOKEN_BYTES`] as it is. Dialpad's
/// ids are int64 in call events and strings elsewhere.
pub fn id_text<'de, D: Deserializer<'de>>(de: D) -> Result<Option<String>, D::Error> {
    Ok(match loose(de)? {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => canonical_id(&s),
        _ => None,
    })
}

/// A text id as [`id_text`] stores it (so a query for `"042"` finds `42`); `None` for an empty
/// or over-long one.
pub fn canonical_id(text: &str) -> Option<String> {
    match text.trim().parse::<i64>() {
        Ok(id) => Some(id.to_string()),
        Err(_) => Some(text.to_owned()).filter(|s| !s.is_empty() && s.len() <= MAX_TOKEN_BYTES),
    }
}

/// A boolean from `true`/`false`, `1`/`0`, or a string of one of them.
pub fn flag<'de, D: Deserializer<'de>>(de: D) -> Result<Option<bool>, D::Error> {
    Ok(match loose(de)? {
        Value::Bool(b) => Some(b),
        Value::Number(n) => match n.as_i64() {
            Some(0) => Some(false),
            Some(1) => Some(true),
            _ => None,
        },
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    })
}

/// A nested object read as `T` (whose own fields are read leniently); anything else is absent.
pub fn object<'de, D: Deserializer<'de>, T: DeserializeOwned>(
    de: D,
) -> Result<Option<T>, D::Error> {
    Ok(match loose(de)? {
        object @ Value::Object(_) => serde_json::from_value(object).ok(),
        _ => None,
    })
}

/// A list of `T`: the items of an array that read as `T` (the others are skipped), or a single
/// value that does; anything else is absent.
pub fn list<'de, D: Deserializer<'de>, T: DeserializeOwned>(
    de: D,
) -> Result<Option<Vec<T>>, D::Error> {
    Ok(match loose(de)? {
        Value::Null => None,
        Value::Array(items) => Some(
            items
                .into_iter()
                .filter_map(|item| serde_json::from_value(item).ok())
                .collect(),
        ),
        single => serde_json::from_value(single).ok().map(|item| vec![item]),
    })
}

/// Non-empty strings: an array's, or a single one; anything else is empty.
pub fn texts<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<String>, D::Error> {
    Ok(match loose(de)? {
        Value::Array(items) => items.into_iter().filter_map(nonempty_string).collect(),
        single => nonempty_string(single).into_iter().collect(),
    })
}

fn nonempty_string(value: Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s),
        _ => None,
    }
}

/// Any JSON kept as it is (Dialpad Ai's recap lists), except `null`, `""`, `{}` and `[]`.
pub fn value<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Value>, D::Error> {
    Ok(match loose(de)? {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::Object(map) if map.is_empty() => None,
        Value::Array(items) if items.is_empty() => None,
        other => Some(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    struct Fields {
        #[serde(default, deserialize_with = "int")]
        int: Option<i64>,
        #[serde(default, deserialize_with = "float")]
        float: Option<f64>,
        #[serde(default, deserialize_with = "text")]
        text: Option<String>,
        #[serde(default, deserialize_with = "token")]
        token: Option<String>,
        #[serde(default, deserialize_with = "id_text")]
        id: Option<String>,
        #[serde(default, deserialize_with = "flag")]
        flag: Option<bool>,
        #[serde(default, deserialize_with = "list")]
        list: Option<Vec<String>>,
        #[serde(default, deserialize_with = "value")]
        value: Option<Value>,
    }

    fn read(value: Value) -> Fields {
        Fields::deserialize(&value).expect("the tolerant reader never fails on an object")
    }

    #[test]
    fn identity_is_an_int64_or_a_string_of_digits_only() {
        assert_eq!(
            identity(&json!(9_007_199_254_740_993_i64)),
            Some(9_007_199_254_740_993)
        );
        assert_eq!(
            identity(&json!("9007199254740993")),
            Some(9_007_199_254_740_993)
        );
        for broken in [
            json!(1.5),
            json!(1e3),
            json!("-1"),
            json!(" 1"),
            json!(""),
            json!("99999999999999999999"),
            json!(true),
            json!({}),
            json!([1]),
            json!(null),
        ] {
            assert_eq!(identity(&broken), None, "{broken}");
        }
    }

    #[test]
    fn every_other_json_type_reads_as_absent_never_as_an_error() {
        for odd in [
            json!({}),
            json!([]),
            json!({"a": 1}),
            json!([null, {}]),
            json!(null),
        ] {
            let fields = read(json!({
                "int": odd, "float": odd, "text": odd, "token": odd, "id": odd, "flag": odd,
                "value": if odd.is_null() { json!(null) } else { json!({}) },
            }));
            assert_eq!(fields.int, None, "{odd}");
            assert_eq!(fields.float, None);
            assert_eq!(fields.text, None);
            assert_eq!(fields.token, None);
            assert_eq!(fields.id, None);
            assert_eq!(fields.flag, None);
            assert_eq!(fields.value, None);
        }
    }

    #[test]
    fn numbers_given_as_strings_and_strings_given_as_numbers_are_read() {
        let fields = read(json!({
            "int": "1795111800377", "float": "410934.5", "text": 42, "token": "inbound",
            "id": "0042", "flag": "TRUE", "list": "https://x/1",
        }));
        assert_eq!(fields.int, Some(1_795_111_800_377));
        assert_eq!(fields.float, Some(410_934.5));
        assert_eq!(fields.text.as_deref(), Some("42"));
        assert_eq!(fields.token.as_deref(), Some("inbound"));
        assert_eq!(fields.id.as_deref(), Some("42"));
        assert_eq!(fields.flag, Some(true));
        assert_eq!(fields.list, Some(vec!["https://x/1".to_owned()]));
    }

    #[test]
    fn extremes_are_bounded_not_errors() {
        let long = "x".repeat(100_000);
        let fields = read(json!({
            "int": 1e308, "float": 1e308, "token": long, "id": long, "text": long,
        }));
        assert_eq!(
            fields.int, None,
            "a float past 2^53 is not an exact integer"
        );
        assert_eq!(fields.float, Some(1e308));
        assert_eq!(fields.token, None);
        assert_eq!(fields.id, None);
        assert_eq!(fields.text.map(|t| t.len()), Some(100_000));
        assert_eq!(
            read(json!({"id": "agent-7"})).id.as_deref(),
            Some("agent-7")
        );
        assert_eq!(read(json!({"int": 1.7e12})).int, Some(1_700_000_000_000));
        assert_eq!(
            read(json!({"list": ["a", 1, null, "b"]})).list,
            Some(vec!["a".to_owned(), "b".to_owned()])
        );
    }

    #[test]
    fn times_postgres_cannot_hold_are_absent() {
        assert!(storable_time(1_795_111_800_377).is_some());
        assert!(storable_time(POSTGRES_EARLIEST_MS).is_some());
        assert_eq!(storable_time(POSTGRES_EARLIEST_MS - 1), None);
        assert_eq!(storable_time(-8_000_000_000_000_000), None);
        assert_eq!(storable_time(i64::MAX), None);
    }
}
