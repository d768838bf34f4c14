//! Secrets at rest: AES-256-GCM with a keyring, so keys can be rotated.
//!
//! A *sealed* value is `nonce (12 bytes) || ciphertext || tag (16 bytes)`, stored in a `bytea`
//! column with the id of the key that sealed it in a `*_key_id` column beside it. The nonce is
//! random per value (96 bits, NIST SP 800-38D §8.2.2), which is safe far beyond the number of
//! secrets this system will ever seal with one key.
//!
//! Every value is sealed with *associated data* naming where it lives (for example
//! `apps.webhook_secret:{app_id}`): a ciphertext copied into another row or column does not
//! open, so someone able to write the database cannot swap one tenant's secret into another.
//!
//! A key id is the first 8 hex digits of the key's SHA-256: derived, so there is nothing to
//! configure, and it tells nothing useful about the key.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Why a keyring could not be built or a value not opened. Never carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    #[error("{setting} must be 32 bytes, base64-encoded (e.g. `openssl rand -base64 32`)")]
    InvalidKey { setting: &'static str },
    #[error("no key with id {0} in the keyring (add it to ENCRYPTION_PREVIOUS_KEYS)")]
    UnknownKey(String),
    #[error("a sealed value failed authentication (wrong key, wrong place, or tampered)")]
    Unauthentic,
    #[error("a sealed value is not UTF-8")]
    NotUtf8,
}

/// A value sealed by [`Keyring::seal`]: store both fields.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    /// `nonce || ciphertext || tag`.
    pub ciphertext: Vec<u8>,
    /// Id of the key that sealed it.
    pub key_id: String,
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Sealed({} bytes, key {})",
            self.ciphertext.len(),
            self.key_id
        )
    }
}

struct Key {
    id: String,
    cipher: Aes256Gcm,
}

/// The current key (seals and opens) and previous keys (open only).
pub struct Keyring {
    current: Key,
    previous: Vec<Key>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current.id)
            .field(
                "previous",
                &self.previous.iter().map(|k| &k.id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Keyring {
    /// Builds a keyring from `ENCRYPTION_KEY` and the optional comma-separated
    /// `ENCRYPTION_PREVIOUS_KEYS`; each key is 32 bytes in standard or URL-safe base64.
    ///
    /// # Errors
    /// [`CryptoError::InvalidKey`] naming the setting when a key does not decode to 32 bytes.
    pub fn from_settings(
        current: &SecretString,
        previous: Option<&SecretString>,
    ) -> Result<Keyring, CryptoError> {
        let current = Key::decode(current.expose_secret(), "ENCRYPTION_KEY")?;
        let previous = previous
            .map(|keys| {
                keys.expose_secret()
                    .split(',')
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .map(|k| Key::decode(k, "ENCRYPTION_PREVIOUS_KEYS"))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
            .unwrap_or_default();
        Ok(Keyring { current, previous })
    }

    /// Id of the key new values are sealed with.
    pub fn current_key_id(&self) -> &str {
        &self.current.id
    }

    /// Seals `plaintext` with the current key, bound to `place` (see the module docs).
    pub fn seal(&self, plaintext: &[u8], place: &str) -> Sealed {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let payload = Payload {
            msg: plaintext,
            aad: place.as_bytes(),
        };
        let sealed = self
            .current
            .cipher
            .encrypt(&Nonce::from(nonce), payload)
            // aes-gcm fails to encrypt only for messages over 64 GiB.
            .unwrap_or_default();
        let mut ciphertext = Vec::with_capacity(NONCE_LEN + sealed.len());
        ciphertext.extend_from_slice(&nonce);
        ciphertext.extend_from_slice(&sealed);
        Sealed {
            ciphertext,
            key_id: self.current.id.clone(),
        }
    }

    /// Seals a string secret; see [`Keyring::seal`].
    pub fn seal_str(&self, secret: &str, place: &str) -> Sealed {
        self.seal(secret.as_bytes(), place)
    }

    /// Opens a value sealed for `place` by any key of the ring.
    ///
    /// # Errors
    /// [`CryptoError::UnknownKey`] when its key is not in the ring; [`CryptoError::Unauthentic`]
    /// when it was sealed for another place, with another key, or altered.
    pub fn open(
        &self,
        ciphertext: &[u8],
        key_id: &str,
        place: &str,
    ) -> Result<Vec<u8>, CryptoError> {
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == key_id)
            .ok_or_else(|| CryptoError::UnknownKey(key_id.to_owned()))?;
        if ciphertext.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Unauthentic);
        }
        let (nonce, sealed) = ciphertext.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| CryptoError::Unauthentic)?;
        key.cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: sealed,
                    aad: place.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Unauthentic)
    }

    /// Opens a string secret; see [`Keyring::open`].
    ///
    /// # Errors
    /// As [`Keyring::open`], and [`CryptoError::NotUtf8`].
    pub fn open_str(
        &self,
        ciphertext: &[u8],
        key_id: &str,
        place: &str,
    ) -> Result<SecretString, CryptoError> {
        let bytes = self.open(ciphertext, key_id, place)?;
        String::from_utf8(bytes)
            .map(SecretString::from)
            .map_err(|_| CryptoError::NotUtf8)
    }
}

impl Key {
    fn decode(encoded: &str, setting: &'static str) -> Result<Key, CryptoError> {
        let encoded = encoded.trim();
        let bytes = STANDARD
            .decode(encoded)
            .or_else(|_| URL_SAFE.decode(encoded))
            .map_err(|_| CryptoError::InvalidKey { setting })?;
        let cipher =
            Aes256Gcm::new_from_slice(&bytes).map_err(|_| CryptoError::InvalidKey { setting })?;
        let id = hex_prefix(&Sha256::digest(&bytes));
        Ok(Key { id, cipher })
    }
}

fn hex_prefix(digest: &[u8]) -> String {
    digest.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const KEY_B: &str = "Hx4dHBsaGRgXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA=";

    fn ring(current: &str, previous: Option<&str>) -> Keyring {
        Keyring::from_settings(&current.into(), previous.map(SecretString::from).as_ref())
            .expect("valid keys")
    }

    #[test]
    fn seals_and_opens_in_place_only() {
        let keys = ring(KEY_A, None);
        let sealed = keys.seal_str("s3cret-token", "apps.webhook_secret:1");
        assert!(!sealed.ciphertext.windows(6).any(|w| w == b"s3cret"));
        assert_eq!(sealed.ciphertext.len(), NONCE_LEN + 12 + TAG_LEN);
        let opened = keys
            .open_str(&sealed.ciphertext, &sealed.key_id, "apps.webhook_secret:1")
            .expect("opens");
        assert_eq!(opened.expose_secret(), "s3cret-token");
        assert_eq!(
            keys.open(&sealed.ciphertext, &sealed.key_id, "apps.webhook_secret:2"),
            Err(CryptoError::Unauthentic)
        );
        let mut tampered = sealed.ciphertext.clone();
        tampered[NONCE_LEN] ^= 1;
        assert_eq!(
            keys.open(&tampered, &sealed.key_id, "apps.webhook_secret:1"),
            Err(CryptoError::Unauthentic)
        );
        assert_ne!(
            keys.seal_str("s3cret-token", "x").ciphertext,
            keys.seal_str("s3cret-token", "x").ciphertext
        );
    }

    #[test]
    fn previous_keys_open_old_values_after_rotation() {
        let old = ring(KEY_A, None);
        let sealed = old.seal(b"token", "p");
        let rotated = ring(KEY_B, Some(KEY_A));
        assert_ne!(rotated.current_key_id(), sealed.key_id);
        assert_eq!(
            rotated
                .open(&sealed.ciphertext, &sealed.key_id, "p")
                .as_deref(),
            Ok(&b"token"[..])
        );
        let without_old = ring(KEY_B, None);
        assert_eq!(
            without_old.open(&sealed.ciphertext, &sealed.key_id, "p"),
            Err(CryptoError::UnknownKey(sealed.key_id.clone()))
        );
    }

    #[test]
    fn bad_keys_name_their_setting_and_debug_shows_no_key() {
        let short = Keyring::from_settings(&"c2hvcnQ=".into(), None);
        assert!(matches!(
            short,
            Err(CryptoError::InvalidKey {
                setting: "ENCRYPTION_KEY"
            })
        ));
        let bad_previous = Keyring::from_settings(&KEY_A.into(), Some(&"nope".into()));
        assert!(matches!(
            bad_previous,
            Err(CryptoError::InvalidKey {
                setting: "ENCRYPTION_PREVIOUS_KEYS"
            })
        ));
        let debug = format!("{:?}", ring(KEY_A, Some(KEY_B)));
        assert!(!debug.contains(KEY_A) && debug.contains("previous"));
    }
}
