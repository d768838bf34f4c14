//! Verifying a Dialpad webhook body, and signing one (for `simulate` and tests).
//!
//! Dialpad POSTs the bare compact JWT as the whole body, HS256-signed with the webhook's secret
//! (the secret string's UTF-8 bytes); the claims *are* the event object, with no `kid`, and no
//! documented `iat`/`exp` (`docs/dialpad.md` §6.1, <https://developers.dialpad.com/reference/webhookscreate>).
//! So: trim ASCII whitespace, require three segments, pin the algorithm to HS256 (refusing
//! `none`, HS384/HS512 and RS*), verify the signature over the exact token received, require no
//! claim, check `exp` only if present, and require the claims to be a JSON object.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

/// Seconds of clock skew tolerated on an `exp` claim, when one is present.
pub const EXP_LEEWAY_SECS: u64 = 60;

/// The most characters of a refused `alg` echoed back (real names are at most 5: `RS256`).
pub const MAX_ECHOED_ALG_CHARS: usize = 16;

/// Why a body was refused. Never carries the secret or the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    #[error("the body is not a compact JWT: {0}")]
    Malformed(&'static str),
    /// The `alg` as sent, cut to [`MAX_ECHOED_ALG_CHARS`]: it is echoed in the answer and the
    /// log, and a client writes it.
    #[error("JWT algorithm {0:?} is not accepted; Dialpad signs with HS256")]
    UnsupportedAlgorithm(String),
    #[error("the JWT signature does not match the webhook secret")]
    InvalidSignature,
    #[error("the JWT has expired")]
    Expired,
    #[error("the JWT claims must be a JSON object (the Dialpad event)")]
    NotAnObject,
}

#[derive(Deserialize)]
struct JoseHeader {
    alg: String,
}

/// Verifies a webhook body against `secret` and returns the event (the JWT claims).
///
/// # Errors
/// [`VerifyError`]: malformed token, an algorithm other than HS256, a bad signature, an expired
/// `exp`, or claims that are not a JSON object.
pub fn verify(body: &[u8], secret: &[u8]) -> Result<Map<String, Value>, VerifyError> {
    let token = std::str::from_utf8(body)
        .map_err(|_| VerifyError::Malformed("body is not UTF-8"))?
        .trim_ascii();
    let mut segments = token.split('.');
    let (Some(header), Some(_), Some(_), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err(VerifyError::Malformed(
            "expected three dot-separated segments",
        ));
    };
    // The header is read before the signature is checked, only to refuse other algorithms with
    // a precise error; nothing else in the token is trusted until `decode` verifies it.
    let header = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| VerifyError::Malformed("header is not base64url"))?;
    let header: JoseHeader = serde_json::from_slice(&header)
        .map_err(|_| VerifyError::Malformed("header is not a JOSE header"))?;
    if header.alg != "HS256" {
        let mut alg = header.alg;
        if let Some((cut, _)) = alg.char_indices().nth(MAX_ECHOED_ALG_CHARS) {
            alg.truncate(cut);
            alg.push('…');
        }
        return Err(VerifyError::UnsupportedAlgorithm(alg));
    }

    let mut validation = Validation::new(Algorithm::HS256);
    validation.required_spec_claims.clear();
    validation.validate_exp = true;
    validation.validate_aud = false;
    validation.leeway = EXP_LEEWAY_SECS;
    let decoded =
        jsonwebtoken::decode::<Value>(token, &DecodingKey::from_secret(secret), &validation)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => VerifyError::InvalidSignature,
                ErrorKind::ExpiredSignature => VerifyError::Expired,
                ErrorKind::InvalidAlgorithm => VerifyError::UnsupportedAlgorithm("unknown".into()),
                ErrorKind::Json(_) => VerifyError::NotAnObject,
                _ => VerifyError::Malformed("token could not be decoded"),
            })?;
    match decoded.claims {
        Value::Object(claims) => Ok(claims),
        _ => Err(VerifyError::NotAnObject),
    }
}

/// Verifies a webhook body against each of `secrets` in turn (an app may have several live
/// webhooks, each with its own secret) and returns the event of the first that matches.
///
/// # Errors
/// As [`verify`]; [`VerifyError::InvalidSignature`] when no secret matches (also when there
/// are none).
pub fn verify_with_any<S: AsRef<[u8]>>(
    body: &[u8],
    secrets: impl IntoIterator<Item = S>,
) -> Result<Map<String, Value>, VerifyError> {
    for secret in secrets {
        match verify(body, secret.as_ref()) {
            Err(VerifyError::InvalidSignature) => continue,
            verified => return verified,
        }
    }
    Err(VerifyError::InvalidSignature)
}

/// Signs `claims` as Dialpad does: a compact HS256 JWT with header `{"alg":"HS256","typ":"JWT"}`.
///
/// # Errors
/// When the claims cannot be serialised (never for a `serde_json::Value`).
pub fn sign(claims: &Value, secret: &[u8]) -> Result<String, jsonwebtoken::errors::Error> {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"fixture-webhook-secret-7f3a9c";
    const JWT_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/dialpad/jwt/");

    fn jwt(name: &str) -> Vec<u8> {
        std::fs::read(format!("{JWT_DIR}{name}")).expect("fixture exists")
    }

    #[test]
    fn accepts_the_dialpad_fixture_and_keeps_big_ids_exact() {
        let claims = verify(&jwt("call_outbound_01_calling.valid.jwt"), SECRET).expect("valid");
        assert_eq!(claims["call_id"].as_i64(), Some(7_189_235_590_594_560));
        let edge = verify(&jwt("call_edge_02_ids_above_2pow53.valid.jwt"), SECRET).expect("valid");
        assert_eq!(edge["call_id"].as_i64(), Some(9_007_199_254_740_993));
    }

    #[test]
    fn refuses_fixture_attacks() {
        assert_eq!(
            verify(&jwt("call_outbound_01_calling.wrong_secret.jwt"), SECRET),
            Err(VerifyError::InvalidSignature)
        );
        assert_eq!(
            verify(&jwt("call_outbound_01_calling.alg_none.jwt"), SECRET),
            Err(VerifyError::UnsupportedAlgorithm("none".into()))
        );
        assert_eq!(
            verify(&jwt("call_outbound_01_calling.hs512.jwt"), SECRET),
            Err(VerifyError::UnsupportedAlgorithm("HS512".into()))
        );
    }

    #[test]
    fn sign_then_verify_round_trips_and_tolerates_whitespace() {
        let claims = serde_json::json!({"call_id": 1, "state": "ringing"});
        let token = sign(&claims, SECRET).expect("signs");
        let body = format!("\n {token}\r\n");
        assert_eq!(
            verify(body.as_bytes(), SECRET).map(Value::Object),
            Ok(claims)
        );
        assert!(matches!(
            verify(b"a.b", SECRET),
            Err(VerifyError::Malformed(_))
        ));
        assert!(matches!(
            verify(b"\xff\xfe", SECRET),
            Err(VerifyError::Malformed(_))
        ));
    }

    #[test]
    fn refuses_non_object_claims_and_expired_tokens() {
        let array = sign(&serde_json::json!([1, 2]), SECRET).expect("signs");
        assert_eq!(
            verify(array.as_bytes(), SECRET),
            Err(VerifyError::NotAnObject)
        );
        let expired =
            sign(&serde_json::json!({"call_id": 1, "exp": 1_000}), SECRET).expect("signs");
        assert_eq!(
            verify(expired.as_bytes(), SECRET),
            Err(VerifyError::Expired)
        );
    }
}
