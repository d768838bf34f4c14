//! Building the ingest server.

use actix_web::web::Data;
use actix_web::{App, HttpServer};
use bootstrap::http::{HttpService, bind, health_routes};
use secrecy::ExposeSecret;

use crate::Settings;
use crate::error::Refusal;
use crate::routes::{self, IngestState, Refusals};
use crate::secrets::SecretCache;
use crate::writer::EventWriter;

/// The ingest server, bound and ready to run (see [`HttpService::run_until_stopped`]).
pub type Application = HttpService;

/// Checks the schema is current, builds the pool and binds `HOST:PORT` (port 0 picks one).
///
/// # Errors
/// A missing required setting, migrations behind, or the port cannot be bound.
pub async fn build(settings: Settings) -> anyhow::Result<Application> {
    let database_url = settings.database.url()?;
    let unscoped_secret = bootstrap::settings::required(
        "DIALPAD_WEBHOOK_SECRET",
        settings.dialpad_webhook_secret.clone(),
    )?;
    let keyring = settings.encryption.keyring()?;
    db::migrations::ensure_schema_current(database_url.expose_secret()).await?;
    let pool = db::connect_pool(database_url.expose_secret(), &settings.database.pool()).await?;
    if let Some(app_id) = settings.unscoped_webhook_app_id {
        let mut conn = pool.get().await?;
        anyhow::ensure!(
            db::apps::App::find(&mut conn, app_id).await?.is_some(),
            "UNSCOPED_WEBHOOK_APP_ID names no app ({app_id}): create the app first, or unset it"
        );
    }
    let metrics = bootstrap::metrics::Metrics::new("ingest");
    metrics.register(bootstrap::metrics::PoolCollector::new(
        pool.clone(),
        settings.database.pool().max_size,
    ));
    let refusals = metrics.counter_vec(
        "ingest_refusals_total",
        "Webhooks refused, by reason (invalid_signature, unknown_app, rate_limited, ...)",
        &["reason"],
    );
    let state = Data::new(IngestState {
        unscoped_app_id: settings.unscoped_webhook_app_id,
        writer: EventWriter::start(pool.clone(), &metrics),
        unscoped_secret,
        secrets: SecretCache::new(
            std::time::Duration::from_millis(settings.app_secret_cache_ttl_ms),
            keyring,
        ),
        refusals: Refusals::new(
            settings.ingest_failed_verifications_per_min,
            settings.trusted_proxy_hops,
        ),
        retry_budget: settings.retry_budget(),
        body_timeout: std::time::Duration::from_millis(settings.ingest_body_timeout_ms),
        pool: pool.clone(),
    });
    let pool = Data::new(pool);

    let (listener, port) = bind(&settings.host, settings.port)?;
    let metrics = Data::new(metrics);
    let refusals = Data::new(refusals);
    let server = HttpServer::new(move || {
        App::new()
            .wrap(actix_web::middleware::from_fn(count_refusals))
            .wrap(actix_web::middleware::from_fn(
                bootstrap::metrics::track_requests,
            ))
            .wrap(actix_web::middleware::from_fn(crate::request_id::assign))
            .app_data(state.clone())
            .app_data(pool.clone())
            .app_data(metrics.clone())
            .app_data(refusals.clone())
            .configure(health_routes)
            .configure(bootstrap::metrics::metrics_routes)
            .configure(routes::configure)
    })
    .listen(listener)?
    .disable_signals()
    .run();
    Ok(HttpService::new(port, server))
}

/// Counts refused webhooks by reason (`ingest_refusals_total{reason}`), from the [`Refusal`]
/// their error response carries.
async fn count_refusals(
    request: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let counter = request
        .app_data::<Data<prometheus::IntCounterVec>>()
        .cloned();
    let response = next.call(request).await?;
    if let (Some(counter), Some(refusal)) =
        (counter, response.response().extensions().get::<Refusal>())
    {
        counter.with_label_values(&[refusal.0]).inc();
    }
    Ok(response)
}
