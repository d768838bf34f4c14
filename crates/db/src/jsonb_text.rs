//! A `jsonb` value read as its JSON text, for readers that decode it into their own types.

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::pg::{Pg, PgValue};
use diesel::sql_types::Jsonb;

/// The JSON text of a `jsonb` value, as Postgres sends it (its binary form is a version byte,
/// `1`, then the text: <https://www.postgresql.org/docs/15/datatype-json.html>, `jsonb_send`).
///
/// Reading a payload as `serde_json::Value` builds a tree of maps and strings that a typed
/// reader then walks again; the worker reads every event of a leg's log on each change, so it
/// decodes this text straight into its event types instead (`domain::call::CallEvent::parse_text`).
/// The text is what `jsonb` keeps: keys unique (the last of a repeated key), whitespace
/// normalised.
#[derive(Debug, Clone, PartialEq, Eq, FromSqlRow)]
pub struct JsonbText(String);

impl JsonbText {
    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromSql<Jsonb, Pg> for JsonbText {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        match value.as_bytes().split_first() {
            Some((1, text)) => Ok(JsonbText(std::str::from_utf8(text)?.to_owned())),
            _ => Err("unsupported jsonb binary format version".into()),
        }
    }
}
