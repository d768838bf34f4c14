//! Dialpad's answers, typed: the parts of its JSON bodies we read.
//!
//! Dialpad encodes int64 ids as strings in REST answers (`docs/dialpad.md` §2), so ids are read
//! with the tolerant reader of `domain::json`.

use secrecy::SecretString;
use serde::Deserialize;

/// Dialpad's `WebhookProto` (`docs/dialpad.md` §2).
#[derive(Debug, Deserialize)]
pub struct Webhook {
    #[serde(deserialize_with = "required_i64")]
    pub id: i64,
    pub hook_url: String,
    #[serde(default)]
    pub signature: Option<WebhookSignature>,
}

/// `WebhookProto.signature`: `{"algo": "HS256", "secret": ..., "type": "jwt"}`.
#[derive(Debug, Deserialize)]
pub struct WebhookSignature {
    pub algo: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

/// The part of a subscription answer we keep: its id (`docs/dialpad.md` §3).
#[derive(Debug, Deserialize)]
pub struct Subscription {
    #[serde(deserialize_with = "required_i64")]
    pub id: i64,
}

/// `GET /api/v2/company`: the id of the company a credential belongs to (`docs/dialpad.md` §1).
#[derive(Debug, Deserialize)]
pub struct Company {
    #[serde(deserialize_with = "required_i64")]
    pub id: i64,
}

/// An answer of `POST /oauth2/token` (`docs/dialpad.md` §7).
#[derive(Debug, Deserialize)]
pub struct TokenResponse {
    pub access_token: SecretString,
    /// Dialpad rotates refresh tokens: when present it replaces the one we hold.
    #[serde(default)]
    pub refresh_token: Option<SecretString>,
    /// Seconds until the access token expires.
    #[serde(default, deserialize_with = "domain::json::int")]
    pub expires_in: Option<i64>,
    /// Granted scopes, when Dialpad says.
    #[serde(default)]
    pub scope: Option<String>,
}

fn required_i64<'de, D: serde::Deserializer<'de>>(de: D) -> Result<i64, D::Error> {
    domain::json::int(de)?.ok_or_else(|| serde::de::Error::custom("missing or not an int64 id"))
}
