//! Building the api server.

use actix_web::web::{Data, JsonConfig, QueryConfig};
use actix_web::{App, HttpServer, web};
use bootstrap::http::{HttpService, bind, health_routes};
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

/// The api server, bound and ready to run (see [`HttpService::run_until_stopped`]).
pub type Application = HttpService;

/// Checks the schema is current, builds the pool and binds `HOST:PORT` (port 0 picks one).
///
/// # Errors
/// A missing required setting, an invalid bcrypt cost, migrations behind, or the port cannot
/// be bound.
pub async fn build(settings: Settings) -> anyhow::Result<Application> {
    let database_url = settings.database.url()?;
    let internal_api_secret =
        bootstrap::settings::required("INTERNAL_API_SECRET", settings.internal_api_secret.clone())?;
    anyhow::ensure!(
        (4..=31).contains(&settings.api_key_bcrypt_cost),
        "API_KEY_BCRYPT_COST must be between 4 and 31"
    );
    db::migrations::ensure_schema_current(database_url.expose_secret()).await?;
    let pool = db::connect_pool(database_url.expose_secret(), &settings.database.pool()).await?;
    let state = Data::new(ApiState {
        pool: pool.clone(),
        internal_api_secret,
        keys: KeyVerifier::new(settings.key_cache_ttl()),
        bcrypt_cost: settings.api_key_bcrypt_cost,
    });
    let pool = Data::new(pool);

    let (listener, port) = bind(&settings.host, settings.port)?;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(pool.clone())
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
            .configure(health_routes)
            .configure(routes::configure)
            .default_service(web::to(routes::not_found))
    })
    .listen(listener)?
    .disable_signals()
    .run();
    Ok(HttpService::new(port, server))
}
