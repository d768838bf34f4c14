//! A `json` value read as its text, for readers that decode it into their own types.

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::pg::{Pg, PgValue};
use diesel::sql_types::Json;

/// The text of a `json` value (`webhook_events.payload`), as stored: `json`'s binary form is
/// its text (<https://www.postgresql.org/docs/15/datatype-json.html>, `json_send`).
///
/// Reading a payload as `serde_json::Value` builds a tree of maps and strings that a typed
/// reader then walks again; the worker reads every event of a leg's log on each change, so it
/// decodes this text straight into its event types instead (`domain::call::CallEvent::parse_text`).
/// The text is what ingest wrote: `serde_json`'s compact form, each key once.
#[derive(Debug, Clone, PartialEq, Eq, FromSqlRow)]
pub struct JsonText(String);

impl JsonText {
    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromSql<Json, Pg> for JsonText {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        Ok(JsonText(std::str::from_utf8(value.as_bytes())?.to_owned()))
    }
}
