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
}

impl Command {
    /// Reads the command from the process arguments: `[serve|migrate]`.
    ///
    /// # Errors
    /// On an unknown argument, with the usage.
    pub fn from_args(binary: &str) -> anyhow::Result<Command> {
        let mut args = std::env::args().skip(1);
        let command = match args.next().as_deref() {
            None | Some("serve") => Command::Serve,
            Some("migrate") => Command::Migrate,
            Some("-h" | "--help") => {
                println!(
                    "usage: {binary} [serve|migrate]\n\n  serve    run the service (default)\n  migrate  apply pending database migrations and exit\n\nSettings come from the environment; see the README."
                );
                std::process::exit(0);
            }
            Some(other) => {
                anyhow::bail!("unknown command {other:?}; usage: {binary} [serve|migrate]")
            }
        };
        if let Some(extra) = args.next() {
            anyhow::bail!("unexpected argument {extra:?}; usage: {binary} [serve|migrate]");
        }
        Ok(command)
    }
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
