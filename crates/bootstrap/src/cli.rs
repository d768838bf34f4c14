//! What every binary can be asked to do.

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};

/// The command a binary runs; with none given it serves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Command {
    /// Run the service until SIGINT/SIGTERM (refuses to start if migrations are behind).
    #[default]
    Serve,
    /// Apply pending migrations (under an advisory lock, so concurrent runs are safe) and exit.
    Migrate,
    /// Re-seal every secret at rest under `ENCRYPTION_KEY` and exit (`db::reseal`), so former
    /// keys can be removed from `ENCRYPTION_PREVIOUS_KEYS`. The api and ingest have it.
    Reseal,
    /// Ask the service running beside it (same settings) whether it is ready: exit 0 when its
    /// `GET /readyz` answers 200 ([`healthcheck`]). For container health checks, without curl.
    Healthcheck,
}

impl Command {
    /// Reads the command from the process arguments: `[serve|migrate|reseal|healthcheck]`.
    ///
    /// # Errors
    /// On an unknown argument, with the usage.
    pub fn from_args(binary: &str) -> anyhow::Result<Command> {
        let mut args = std::env::args().skip(1);
        let command = match args.next().as_deref() {
            None | Some("serve") => Command::Serve,
            Some("migrate") => Command::Migrate,
            Some("reseal") => Command::Reseal,
            Some("healthcheck") => Command::Healthcheck,
            Some("-h" | "--help") => {
                println!(
                    "usage: {binary} {USAGE}\n\n  serve        run the service (default)\n  migrate      apply pending database migrations and exit\n  reseal       re-encrypt every secret at rest under ENCRYPTION_KEY and exit (api, ingest)\n  healthcheck  exit 0 when the service running with these settings answers GET /readyz with 200\n\nSettings come from the environment; see the README."
                );
                std::process::exit(0);
            }
            Some(other) => {
                anyhow::bail!("unknown command {other:?}; usage: {binary} {USAGE}")
            }
        };
        if let Some(extra) = args.next() {
            anyhow::bail!("unexpected argument {extra:?}; usage: {binary} {USAGE}");
        }
        Ok(command)
    }
}

/// The commands, as usage shows them.
const USAGE: &str = "[serve|migrate|reseal|healthcheck]";

/// How long the `healthcheck` command waits for an answer.
const HEALTHCHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Runs the `healthcheck` command: `GET http://127.0.0.1:{port}/readyz` (the service's own
/// port, from the same settings it runs with), within 3 s; prints the status.
///
/// # Errors
/// When the port is 0 (picked at start, so unknown here), nothing answers, or the answer is
/// not 200 (e.g. 503 while the database is unreachable): the process then exits non-zero.
pub async fn healthcheck(port: u16, port_setting: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        port != 0,
        "{port_setting} is 0 (a port picked at start): set it to check the service"
    );
    let url = format!("http://127.0.0.1:{port}/readyz");
    let client = reqwest::Client::builder()
        .timeout(HEALTHCHECK_TIMEOUT)
        .build()?;
    let response = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("nothing answers at {url}"))?;
    let status = response.status();
    anyhow::ensure!(status.is_success(), "{url} answered {status}");
    println!("{url}: {status}");
    Ok(())
}

/// Runs the `migrate` command.
///
/// # Errors
/// When the database is unreachable or a migration fails.
pub async fn migrate(database_url: &SecretString) -> anyhow::Result<()> {
    let applied = db::migrations::run_migrations(database_url.expose_secret())
        .await
        .context("Failed to migrate the database")?;
    if applied.is_empty() {
        tracing::info!("Database schema is up to date; no migration applied.");
    } else {
        tracing::info!(migrations = ?applied, "Applied {} migration(s).", applied.len());
    }
    Ok(())
}

/// Runs the `reseal` command ([`reseal`]); fails when a value could not be opened, so a script
/// does not go on to remove a key that still opens something.
///
/// # Errors
/// As [`reseal`], and when a value could not be opened by any key.
pub async fn reseal_command(
    database: &crate::settings::DatabaseSettings,
    encryption: &crate::settings::EncryptionSettings,
) -> anyhow::Result<()> {
    let done = reseal(database, encryption).await?;
    anyhow::ensure!(
        done.unreadable == 0,
        "{} value(s) could not be opened by any key (their rows are in the log); keep the keys \
         that sealed them, or replace those secrets",
        done.unreadable
    );
    Ok(())
}

/// Seals every secret at rest again under the keyring's current key (`db::reseal`), and
/// prints what it did. Safe while the services run, and to run again after an interruption.
///
/// # Errors
/// When a setting is missing, the database is unreachable, the schema is behind, or a query
/// fails. A value no key opens is not an error here: it is counted and logged by row.
pub async fn reseal(
    database: &crate::settings::DatabaseSettings,
    encryption: &crate::settings::EncryptionSettings,
) -> anyhow::Result<db::reseal::Resealed> {
    let keyring = encryption.keyring()?;
    let url = database.url()?;
    db::migrations::ensure_schema_current(url.expose_secret()).await?;
    let pool = db::connect_pool(url.expose_secret(), &database.pool()).await?;
    let mut conn = pool.get().await.map_err(db::DbError::from)?;
    let done = db::reseal::reseal_all(&mut conn, &keyring)
        .await
        .context("Failed to reseal the secrets")?;
    tracing::info!(
        resealed = done.resealed,
        unreadable = done.unreadable,
        key.id = keyring.current_key_id(),
        "Reseal finished."
    );
    println!(
        "resealed {} value(s) under key {}; {} could not be opened by any key",
        done.resealed,
        keyring.current_key_id(),
        done.unreadable
    );
    Ok(done)
}
