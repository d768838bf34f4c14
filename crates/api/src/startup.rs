//! Building and running the api server.

use std::future::Future;
use std::net::TcpListener;

use actix_web::web::{Data, JsonConfig, QueryConfig};
use actix_web::{App, HttpServer};
use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};

use db::Pool;

use crate::Settings;
use crate::auth::KeyVerifier;
use crate::error::ApiError;
use crate::routes;

/// Shared handler state.
#[derive(Debug)]
pub(crate) struct ApiState {
    pub(crate) pool: Pool,
    pub(crate) internal_api_secret: SecretString,
    pub(crate) keys: KeyVerifier,
    pub(crate) bcrypt_cost: u32,
}

/// A bound, not yet running, api server.
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
    /// A missing required setting, an invalid bcrypt cost, migrations behind, or the port
    /// cannot be bound.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let database_url = settings.database.url()?;
        let internal_api_secret = bootstrap::settings::required(
            "INTERNAL_API_SECRET",
            settings.internal_api_secret.clone(),
        )?;
        anyhow::ensure!(
            (4..=31).contains(&settings.api_key_bcrypt_cost),
            "API_KEY_BCRYPT_COST must be between 4 and 31"
        );
        db::migrations::ensure_schema_current(database_url.expose_secret()).await?;
        let pool =
            db::connect_pool(database_url.expose_secret(), &settings.database.pool()).await?;
        let state = Data::new(ApiState {
            pool,
            internal_api_secret,
            keys: KeyVerifier::new(settings.key_cache_ttl()),
            bcrypt_cost: settings.api_key_bcrypt_cost,
        });

        let listener = TcpListener::bind((settings.host.as_str(), settings.port))
            .with_context(|| format!("Failed to bind {}:{}", settings.host, settings.port))?;
        let port = listener.local_addr()?.port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(
                    JsonConfig::default()
                        .limit(64 * 1024)
                        .error_handler(|error, _| ApiError::InvalidJson(error.to_string()).into()),
                )
                .app_data(QueryConfig::default().error_handler(|error, _| {
                    ApiError::InvalidParameter {
                        name: "query",
                        message: error.to_string(),
                    }
                    .into()
                }))
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
    /// flight finish.
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
        tracing::info!("Api stopping: draining requests in flight.");
        // The stop command is sent at once; the server future must keep being polled for the
        // stop to complete, so both are awaited together.
        let ((), result) = tokio::join!(handle.stop(true), server);
        result
    }
}
