use anyhow::Context;
use bootstrap::cli::Command;
use worker::{Settings, Worker};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    bootstrap::telemetry::init(bootstrap::telemetry::format_from_env());
    let command = Command::from_args("worker")?;
    let settings: Settings = bootstrap::settings::load()?;
    match command {
        Command::Healthcheck => {
            bootstrap::cli::healthcheck(settings.metrics_port, "METRICS_PORT").await
        }
        Command::Migrate => bootstrap::cli::migrate(&settings.database.url()?).await,
        Command::Reseal => {
            anyhow::bail!("the worker holds no secrets: run `api reseal` (or `ingest reseal`)")
        }
        Command::Serve => {
            let shutdown = bootstrap::shutdown::on_signal();
            let worker = Worker::build(settings)
                .await
                .context("Failed to start the worker")?;
            worker.run_until_stopped(shutdown).await
        }
    }
}
