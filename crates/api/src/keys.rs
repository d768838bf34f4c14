//! Generating API keys and webhook secrets.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use rand::distr::{Alphanumeric, SampleString};

use crate::error::ApiError;

/// Every tenant API key starts with this.
pub(crate) const API_KEY_PREFIX: &str = "raw_";
const KEY_ID_LEN: usize = 16;
const KEY_SECRET_LEN: usize = 40;

/// A freshly generated API key `raw_{key_id}_{secret}` (alphanumeric parts; ~238 random bits in
/// the secret). The whole key is shown once and stored only as a bcrypt hash.
pub(crate) struct NewKey {
    pub(crate) key_id: String,
    pub(crate) key: String,
}

impl NewKey {
    pub(crate) fn generate() -> NewKey {
        let mut rng = rand::rng();
        let key_id = Alphanumeric
            .sample_string(&mut rng, KEY_ID_LEN)
            .to_ascii_lowercase();
        let secret = Alphanumeric.sample_string(&mut rng, KEY_SECRET_LEN);
        NewKey {
            key: format!("{API_KEY_PREFIX}{key_id}_{secret}"),
            key_id,
        }
    }
}

/// The public `key_id` of a presented key, or `None` if it is not shaped like one of ours.
pub(crate) fn key_id_of(presented: &str) -> Option<&str> {
    let rest = presented.strip_prefix(API_KEY_PREFIX)?;
    let (key_id, secret) = rest.split_once('_')?;
    let alnum = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric());
    (alnum(key_id) && alnum(secret) && key_id.len() <= 64).then_some(key_id)
}

/// A strong inbound webhook secret: 32 random bytes, base64url (43 characters, one line, as
/// Dialpad's `POST /api/v2/webhooks` requires of `secret`).
pub(crate) fn generate_webhook_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Checks a caller-chosen webhook secret: 16–255 printable ASCII characters, no spaces
/// (Dialpad wants "a single-line string", `docs/dialpad.md` §2).
///
/// # Errors
/// [`ApiError::InvalidRequest`] naming `webhook_secret`.
pub(crate) fn validate_webhook_secret(secret: &str) -> Result<(), ApiError> {
    let printable = secret.bytes().all(|b| b.is_ascii_graphic());
    if (16..=255).contains(&secret.len()) && printable {
        Ok(())
    } else {
        Err(ApiError::InvalidRequest(
            "webhook_secret: must be 16 to 255 printable ASCII characters without spaces".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_back_to_their_id() {
        let key = NewKey::generate();
        assert!(key.key.starts_with("raw_"));
        assert_eq!(key_id_of(&key.key), Some(key.key_id.as_str()));
        assert_ne!(NewKey::generate().key, key.key);
    }

    #[test]
    fn foreign_shapes_are_refused() {
        for bad in [
            "",
            "raw_",
            "raw_abc",
            "raw__x",
            "raw_abc_",
            "key_abc_def",
            "raw_a-b_c",
        ] {
            assert_eq!(key_id_of(bad), None, "{bad}");
        }
        assert_eq!(generate_webhook_secret().len(), 43);
    }
}
