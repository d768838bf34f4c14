//! Building the api server.

use actix_web::web::{Data, JsonConfig, QueryConfig};
use actix_web::{App, HttpServer, web};
use bootstrap::http::{HttpService, bind, health_routes};
use secrecy::{ExposeSecret, SecretString};
use std::sync::Arc;
use std::time::Duration;

use db::Pool;
use db::crypto::Keyring;

use crate::Settings;
use crate::auth::{API_KEY_HEADER, KeyVerifier};
use crate::error::ApiError;
use crate::rate_limit::{self, Limits, RateLimits};
use crate::response_cache::{CACHE_STATUS_HEADER, ResponseCache};
use crate::routes;
use crate::settings::DialpadSettings;
use crate::stream::StreamHub;
use crate::totals::Totals;
use actix_cors::Cors;
use dialpad::{Credentials, DialpadClient, Environment, OAuthApp};

/// Shared handler state.
#[derive(Debug)]
pub(crate) struct ApiState {
    pub(crate) pool: Pool,
    pub(crate) internal_api_secret: SecretString,
    pub(crate) keys: KeyVerifier,
    /// The buckets, also charged after authentication (`crate::rate_limit`).
    pub(crate) rate_limits: Arc<RateLimits>,
    pub(crate) totals: Totals,
    /// Tenants' list answers until their data changes.
    pub(crate) pages: ResponseCache,
    pub(crate) bcrypt_cost: u32,
    /// `PUSH_MAX_SUBSCRIPTIONS_PER_APP`.
    pub(crate) max_push_subscriptions: usize,
    /// Which webhook URLs subscriptions may name (`routes::push`).
    pub(crate) webhook_urls: crate::routes::WebhookUrlPolicy,
    /// Test sends (`POST /api/webhooks/test`), made as the worker makes deliveries.
    pub(crate) push_sender: push_sender::Sender,
    /// The live streams (`routes::stream`).
    pub(crate) streams: StreamHub,
    pub(crate) keyring: Keyring,
    pub(crate) dialpad: DialpadClient,
    /// `DIALPAD_API_KEY`: the credential of apps without a connection.
    pub(crate) server_api_key: Option<SecretString>,
    /// `PUBLIC_INGEST_URL` without a trailing slash.
    pub(crate) public_ingest_url: Option<String>,
    pub(crate) oauth_success_redirect_url: Option<reqwest::Url>,
}

impl ApiState {
    /// A pooled connection. A pool timeout or an unreachable database is
    /// [`ApiError::Unavailable`] (503), as every `DbError` is.
    pub(crate) async fn conn(&self) -> Result<db::PooledConn<'_>, ApiError> {
        Ok(self.pool.get().await.map_err(db::DbError::from)?)
    }

    /// Where an app's Dialpad credential comes from (`dialpad::Credentials::credential_for`).
    pub(crate) fn credentials(&self) -> Credentials<'_> {
        Credentials {
            pool: &self.pool,
            client: &self.dialpad,
            keyring: &self.keyring,
            server_api_key: self.server_api_key.as_ref(),
        }
    }
}

/// The api server, bound and ready to run (see [`HttpService::run_until_stopped`]).
pub type Application = HttpService;

/// The Dialpad client, with the OAuth app when `DIALPAD_CLIENT_ID`, `DIALPAD_CLIENT_SECRET` and
/// `DIALPAD_REDIRECT_URI` are all set.
fn dialpad_client(settings: &DialpadSettings) -> anyhow::Result<DialpadClient> {
    let environment = Environment::parse(&settings.dialpad_env)?;
    let oauth = match (
        &settings.dialpad_client_id,
        &settings.dialpad_client_secret,
        &settings.dialpad_redirect_uri,
    ) {
        (Some(client_id), Some(client_secret), Some(redirect_uri)) => Some(OAuthApp {
            client_id: client_id.clone(),
            client_secret: client_secret.clone(),
            redirect_uri: redirect_uri.clone(),
            scopes: settings.dialpad_scopes.clone(),
        }),
        (None, None, None) => None,
        _ => anyhow::bail!(
            "set all of DIALPAD_CLIENT_ID, DIALPAD_CLIENT_SECRET and DIALPAD_REDIRECT_URI, or none"
        ),
    };
    DialpadClient::new(
        environment,
        settings.dialpad_base_url.as_deref(),
        Duration::from_millis(settings.dialpad_timeout_ms),
        oauth,
    )
}

/// CORS for browser clients: only the configured origins, the methods and headers the API
/// uses; preflights are cached for an hour.
fn cors(origins: &[String]) -> Cors {
    let mut cors = Cors::default()
        .allowed_methods(["GET", "POST", "PATCH", "DELETE"])
        .allowed_headers([
            actix_web::http::header::AUTHORIZATION,
            actix_web::http::header::CONTENT_TYPE,
            actix_web::http::header::HeaderName::from_static(API_KEY_HEADER),
        ])
        .expose_headers([
            actix_web::http::header::RETRY_AFTER,
            actix_web::http::header::HeaderName::from_static(CACHE_STATUS_HEADER),
        ])
        .max_age(3600);
    for origin in origins {
        cors = cors.allowed_origin(origin);
    }
    cors
}

/// Seals app webhook secrets still stored in plaintext (apps created before encryption at rest).
async fn seal_legacy_secrets(pool: &Pool, keyring: &Keyring) -> anyhow::Result<()> {
    let mut conn = pool.get().await.map_err(db::DbError::from)?;
    let sealed = db::apps::App::seal_legacy_secrets(&mut conn, keyring).await?;
    if sealed > 0 {
        tracing::info!(apps = sealed, "Encrypted plaintext app webhook secrets.");
    }
    Ok(())
}

/// Checks the schema is current, builds the pool and binds `HOST:PORT` (port 0 picks one).
///
/// # Errors
/// A missing or invalid setting (`INTERNAL_API_SECRET`, `ENCRYPTION_KEY`, bcrypt cost, Dialpad
/// settings), migrations behind, or the port cannot be bound.
pub async fn build(settings: Settings) -> anyhow::Result<Application> {
    let database_url = settings.database.url()?;
    let internal_api_secret =
        bootstrap::settings::required("INTERNAL_API_SECRET", settings.internal_api_secret.clone())?;
    anyhow::ensure!(
        (4..=31).contains(&settings.api_key_bcrypt_cost),
        "API_KEY_BCRYPT_COST must be between 4 and 31"
    );
    let keyring = settings.encryption.keyring()?;
    let dialpad = dialpad_client(&settings.dialpad)?;
    db::migrations::ensure_schema_current(database_url.expose_secret()).await?;
    let pool = db::connect_pool(database_url.expose_secret(), &settings.database.pool()).await?;
    seal_legacy_secrets(&pool, &keyring).await?;
    let key_cache_ttl = settings.key_cache_ttl();
    let limits = RateLimits::new(Limits {
        per_ip: settings.rate_limit_per_ip_per_min,
        per_key: settings.rate_limit_per_key_per_min,
        admin_per_ip: settings.rate_limit_admin_per_min,
        verifications_per_ip: settings.rate_limit_verifications_per_min,
        trusted_proxy_hops: trusted_proxy_hops(&settings),
    });
    let rate_limits = Data::new(Arc::clone(&limits));
    let cors_origins: Vec<String> = settings
        .cors_allowed_origins
        .split(',')
        .map(str::trim)
        .filter(|origin| !origin.is_empty())
        .map(str::to_owned)
        .collect();
    let dialpad_settings = settings.dialpad;
    let oauth_success_redirect_url = dialpad_settings
        .oauth_success_redirect_url
        .as_deref()
        .map(reqwest::Url::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("OAUTH_SUCCESS_REDIRECT_URL is not a URL: {e}"))?;
    let metrics =
        bootstrap::metrics::Metrics::new("api").with_token(settings.metrics.metrics_token.clone());
    metrics.register(bootstrap::metrics::PoolCollector::new(
        pool.clone(),
        settings.database.pool().max_size,
    ));
    let stream_connections = metrics.gauge(
        "api_stream_connections",
        "Open live streams (SSE and WebSocket) on this process",
    );
    let state = Data::new(ApiState {
        pool: pool.clone(),
        internal_api_secret,
        keys: KeyVerifier::new(key_cache_ttl),
        rate_limits: limits,
        totals: Totals::new(Duration::from_millis(settings.total_cache_ttl_ms)),
        pages: ResponseCache::start(
            settings.response_cache_mb.saturating_mul(1024 * 1024),
            database_url.clone(),
            pool.clone(),
        ),
        bcrypt_cost: settings.api_key_bcrypt_cost,
        max_push_subscriptions: settings.push_max_subscriptions_per_app,
        webhook_urls: crate::routes::WebhookUrlPolicy {
            allow_private: settings.allow_private_webhook_urls,
            require_https: dialpad_settings.dialpad_env == "production",
        },
        push_sender: push_sender::Sender::new(
            settings.push_timeout_ms,
            settings.allow_private_webhook_urls,
        )?,
        streams: StreamHub::start(
            database_url.clone(),
            pool.clone(),
            settings.stream.clone(),
            stream_connections,
        ),
        keyring,
        dialpad,
        server_api_key: dialpad_settings.dialpad_api_key,
        public_ingest_url: dialpad_settings
            .public_ingest_url
            .map(|url| url.trim_end_matches('/').to_owned()),
        oauth_success_redirect_url,
    });
    let pool = Data::new(pool);
    let metrics = Data::new(metrics);
    let openapi = Data::new(crate::openapi::Rendered::new()?);

    let (listener, port) = bind(&settings.host, settings.port)?;
    let server = HttpServer::new(move || {
        App::new()
            .wrap(actix_web::middleware::from_fn(rate_limit::limit))
            .wrap(actix_web::middleware::from_fn(
                bootstrap::metrics::track_requests,
            ))
            .wrap(cors(&cors_origins))
            .app_data(rate_limits.clone())
            .app_data(state.clone())
            .app_data(pool.clone())
            .app_data(openapi.clone())
            .app_data(metrics.clone())
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
            .configure(bootstrap::metrics::metrics_routes)
            .configure(|cfg| {
                let mut cfg = utoipa_actix_web::service_config::ServiceConfig::new(cfg);
                routes::configure(&mut cfg);
                crate::openapi::configure(&mut cfg);
            })
            .default_service(web::to(routes::unmatched))
    })
    // Live streams write small frames one after another: Nagle's algorithm would hold each
    // behind the client's delayed ACK (up to 40 ms on Linux).
    .tcp_nodelay(true)
    .listen(listener)?
    .disable_signals()
    .run();
    Ok(HttpService::new(port, server))
}

/// `TRUSTED_PROXY_HOPS`, or one hop for the older `RATE_LIMIT_TRUST_PROXY=true`.
fn trusted_proxy_hops(settings: &Settings) -> usize {
    if settings.trusted_proxy_hops == 0 && settings.rate_limit_trust_proxy {
        tracing::warn!(
            "RATE_LIMIT_TRUST_PROXY is replaced by TRUSTED_PROXY_HOPS (how many proxies append to \
             X-Forwarded-For); taking 1. Set TRUSTED_PROXY_HOPS=1 and remove it."
        );
        return 1;
    }
    settings.trusted_proxy_hops
}
