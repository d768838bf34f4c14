//! Building and running the ingest server.

use std::future::Future;
use std::net::TcpListener;

use actix_web::web::Data;
use actix_web::{App, HttpServer};
use anyhow::Context;
use secrecy::ExposeSecret;

use crate::Settings;
use crate::routes::{self, IngestState};
use crate::secrets::SecretCache;
use crate::writer::EventWriter;

/// A bound, not yet running, ingest server.
pub struct Application {
    port: u16,
    server: actix_web::dev::Server,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Checks the schema is current, builds the pool and binds `HOST:PORT` (port 0 picks one).
    ///
    /// # Errors
    /// A missing required setting, migrations behind, or the port cannot be bound.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let database_url = settings.database.url()?;
        let unscoped_secret = bootstrap::settings::required(
            "DIALPAD_WEBHOOK_SECRET",
            settings.dialpad_webhook_secret.clone(),
        )?;
        db::migrations::ensure_schema_current(database_url.expose_secret()).await?;
        let pool =
            db::connect_pool(database_url.expose_secret(), &settings.database.pool()).await?;
        let state = Data::new(IngestState {
            writer: EventWriter::start(pool.clone()),
            pool,
            unscoped_secret,
            secrets: SecretCache::new(std::time::Duration::from_millis(
                settings.app_secret_cache_ttl_ms,
            )),
            retry_budget: settings.retry_budget(),
        });

        let listener = TcpListener::bind((settings.host.as_str(), settings.port))
            .with_context(|| format!("Failed to bind {}:{}", settings.host, settings.port))?;
        let port = listener.local_addr()?.port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .configure(routes::configure)
        })
        .listen(listener)?
        .disable_signals()
        .run();
        Ok(Application { port, server })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `shutdown` resolves, then stops taking connections and lets requests in
    /// flight finish (their events are committed or refused, never half-done).
    ///
    /// # Errors
    /// When the server fails.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let handle = self.server.handle();
        let mut server = std::pin::pin!(self.server);
        tokio::select! {
            result = &mut server => return result,
            () = shutdown => {}
        }
        tracing::info!("Ingest stopping: draining requests in flight.");
        // The stop command is sent at once; the server future must keep being polled for the
        // stop to complete, so both are awaited together.
        let ((), result) = tokio::join!(handle.stop(true), server);
        result
    }
}
