//! OAuth 2.0 states and PKCE (RFC 7636) for the Dialpad connection flow.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::{Rng, RngCore};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// RFC 7636 §4.1: a verifier is 43–128 characters of `[A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~"`.
const VERIFIER_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~";
const VERIFIER_LEN: usize = 64;

/// A PKCE pair: the verifier stays with us until the code exchange; the challenge goes to the
/// authorize URL.
#[derive(Debug)]
pub struct Pkce {
    pub verifier: SecretString,
    pub challenge: String,
}

impl Pkce {
    pub fn generate() -> Pkce {
        let mut rng = rand::rng();
        let verifier: String = (0..VERIFIER_LEN)
            .map(|_| char::from(VERIFIER_CHARS[rng.random_range(0..VERIFIER_CHARS.len())]))
            .collect();
        let challenge = s256_challenge(&verifier);
        Pkce {
            verifier: verifier.into(),
            challenge,
        }
    }
}

/// The `S256` challenge of a verifier: `BASE64URL(SHA256(ASCII(verifier)))`, RFC 7636 §4.2.
pub fn s256_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// A new OAuth `state`: 32 random bytes, base64url (RFC 6749 §10.12 wants it unguessable).
pub fn new_state() -> SecretString {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes).into()
}

/// What we store of a state: its SHA-256, so the table never holds a usable state.
pub fn state_hash(state: &SecretString) -> [u8; 32] {
    Sha256::digest(state.expose_secret().as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_matches_rfc_7636_appendix_b() {
        assert_eq!(
            s256_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn verifiers_are_long_random_and_unreserved() {
        let pkce = Pkce::generate();
        let verifier = pkce.verifier.expose_secret();
        assert_eq!(verifier.len(), VERIFIER_LEN);
        assert!(verifier.bytes().all(|b| VERIFIER_CHARS.contains(&b)));
        assert_eq!(pkce.challenge, s256_challenge(verifier));
        assert_ne!(Pkce::generate().verifier.expose_secret(), verifier);
        assert_ne!(new_state().expose_secret(), new_state().expose_secret());
    }
}
