use anyhow::Context;
use api::Settings;
use bootstrap::cli::Command;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `api openapi`: print the OpenAPI document (`just openapi` writes docs/openapi.json).
    if std::env::args().nth(1).as_deref() == Some("openapi") {
        println!("{}", api::openapi::document().to_pretty_json()?);
        return Ok(());
    }
    bootstrap::telemetry::init(bootstrap::telemetry::format_from_env());
    let command = Command::from_args("api")?;
    let settings: Settings = bootstrap::settings::load()?;
    match command {
        Command::Healthcheck => bootstrap::cli::healthcheck(settings.port, "PORT").await,
        Command::Migrate => bootstrap::cli::migrate(&settings.database.url()?).await,
        Command::Reseal => {
            bootstrap::cli::reseal_command(&settings.database, &settings.encryption).await
        }
        Command::Serve => {
            bootstrap::settings::require_long_secret(
                "INTERNAL_API_SECRET",
                settings.internal_api_secret.as_ref(),
            )?;
            let shutdown = bootstrap::shutdown::on_signal();
            let app = api::build(settings)
                .await
                .context("Failed to start the api")?;
            tracing::info!(port = app.port(), "Api listening.");
            app.run_until_stopped(shutdown.cancelled_owned()).await?;
            Ok(())
        }
    }
}
