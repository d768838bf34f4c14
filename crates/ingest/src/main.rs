use anyhow::Context;
use bootstrap::cli::Command;
use ingest::Settings;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    bootstrap::telemetry::init(bootstrap::telemetry::format_from_env());
    let command = Command::from_args("ingest")?;
    let settings: Settings = bootstrap::settings::load()?;
    match command {
        Command::Healthcheck => bootstrap::cli::healthcheck(settings.port, "PORT").await,
        Command::Migrate => bootstrap::cli::migrate(&settings.database.url()?).await,
        Command::Reseal => {
            bootstrap::cli::reseal_command(&settings.database, &settings.encryption).await
        }
        Command::Serve => {
            bootstrap::settings::require_long_secret(
                "DIALPAD_WEBHOOK_SECRET",
                settings.dialpad_webhook_secret.as_ref(),
            )?;
            let shutdown = bootstrap::shutdown::on_signal();
            let app = ingest::build(settings)
                .await
                .context("Failed to start ingest")?;
            tracing::info!(port = app.port(), "Ingest listening.");
            app.run_until_stopped(shutdown.cancelled_owned()).await?;
            Ok(())
        }
    }
}
