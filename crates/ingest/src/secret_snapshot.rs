//! The apps' verification secrets as last read from the database, kept sealed beside the
//! outage spool (`verification-secrets.json` in `INGEST_SPOOL_DIR`), so that an ingest started
//! while the database is down can still verify (and spool) the webhooks of every app it had
//! verified before.
//!
//! Each app's secrets are one value sealed with `ENCRYPTION_KEY` (AES-256-GCM, bound to the
//! app's id; `db::crypto`), as the database holds them: the file gives away nothing the
//! database would not. It is rewritten (to a temporary file, synced, then renamed) only when an
//! app's secrets differ from what it holds, so steady traffic writes nothing.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use db::crypto::Keyring;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The file's name in the spool directory.
pub(crate) const FILE_NAME: &str = "verification-secrets.json";

/// One app's secrets, sealed: a JSON list of strings.
#[derive(Debug, Serialize, Deserialize)]
struct SealedEntry {
    key_id: String,
    /// Base64 of `nonce || ciphertext || tag`.
    ciphertext: String,
}

/// The snapshot, opened in memory.
pub(crate) struct SecretSnapshot {
    path: PathBuf,
    apps: Mutex<HashMap<Uuid, Arc<Vec<SecretString>>>>,
}

impl std::fmt::Debug for SecretSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretSnapshot")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn place(app_id: Uuid) -> String {
    format!("ingest:verification-secrets:{app_id}")
}

impl SecretSnapshot {
    /// Reads the snapshot in `dir`, if there is one. An entry no key of the ring opens (a key
    /// since retired) is left out, and replaced when the app is read again.
    pub(crate) fn load(dir: &Path, keyring: &Keyring) -> Self {
        let path = dir.join(FILE_NAME);
        let stored: HashMap<Uuid, SealedEntry> = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|error| {
                tracing::warn!(error = %error, "Ignoring an unreadable verification-secrets snapshot.");
                HashMap::new()
            }),
            Err(_) => HashMap::new(),
        };
        let apps = stored
            .into_iter()
            .filter_map(|(app_id, entry)| {
                let ciphertext = STANDARD.decode(&entry.ciphertext).ok()?;
                let opened = keyring
                    .open_str(&ciphertext, &entry.key_id, &place(app_id))
                    .ok()?;
                let secrets: Vec<String> = serde_json::from_str(opened.expose_secret()).ok()?;
                Some((
                    app_id,
                    Arc::new(secrets.into_iter().map(SecretString::from).collect()),
                ))
            })
            .collect();
        SecretSnapshot {
            path,
            apps: Mutex::new(apps),
        }
    }

    /// The app's secrets as last stored.
    pub(crate) fn get(&self, app_id: Uuid) -> Option<Arc<Vec<SecretString>>> {
        self.apps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&app_id)
            .cloned()
    }

    /// Stores the app's secrets just read, if they differ from the snapshot's. A failed write
    /// is logged: the snapshot only helps during an outage, it must not fail a request.
    pub(crate) fn remember(
        &self,
        app_id: Uuid,
        secrets: &Arc<Vec<SecretString>>,
        keyring: &Keyring,
    ) {
        let mut apps = self.apps.lock().unwrap_or_else(|e| e.into_inner());
        let same = apps.get(&app_id).is_some_and(|known| {
            known.len() == secrets.len()
                && known
                    .iter()
                    .zip(secrets.iter())
                    .all(|(a, b)| a.expose_secret() == b.expose_secret())
        });
        if same {
            return;
        }
        apps.insert(app_id, Arc::clone(secrets));
        let sealed: HashMap<Uuid, SealedEntry> = apps
            .iter()
            .map(|(app_id, secrets)| {
                let plain: Vec<&str> = secrets.iter().map(|s| s.expose_secret()).collect();
                let json = serde_json::to_string(&plain).unwrap_or_default();
                let sealed = keyring.seal_str(&json, &place(*app_id));
                (
                    *app_id,
                    SealedEntry {
                        key_id: sealed.key_id,
                        ciphertext: STANDARD.encode(sealed.ciphertext),
                    },
                )
            })
            .collect();
        if let Err(error) = write_atomically(&self.path, &sealed) {
            tracing::warn!(error = %error, "Could not write the verification-secrets snapshot.");
        }
    }
}

fn write_atomically(path: &Path, content: &impl Serialize) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(content).map_err(std::io::Error::other)?;
    let temporary = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_survive_a_reload_sealed_and_bound_to_their_app() {
        let dir = std::env::temp_dir().join(format!("snapshot-unit-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let keyring =
            Keyring::from_settings(&"dGVzdC1lbmNyeXB0aW9uLWtleS0zMi1ieXRlcy0wMDA=".into(), None)
                .expect("key");
        let app = Uuid::new_v4();
        let snapshot = SecretSnapshot::load(&dir, &keyring);
        let secrets = Arc::new(vec![SecretString::from("first-secret-value")]);
        snapshot.remember(app, &secrets, &keyring);

        let written = std::fs::read_to_string(dir.join(FILE_NAME)).expect("written");
        assert!(!written.contains("first-secret-value"), "sealed on disk");
        let reloaded = SecretSnapshot::load(&dir, &keyring);
        let found = reloaded.get(app).expect("reloaded");
        assert_eq!(found[0].expose_secret(), "first-secret-value");

        // Moved to another app's entry, it does not open.
        let other = Uuid::new_v4();
        let moved = written.replace(&app.to_string(), &other.to_string());
        std::fs::write(dir.join(FILE_NAME), moved).expect("write");
        assert!(SecretSnapshot::load(&dir, &keyring).get(other).is_none());
        std::fs::remove_dir_all(dir).expect("cleanup");
    }
}
