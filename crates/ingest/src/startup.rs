//! Building the ingest server.

use actix_web::web::Data;
use actix_web::{App, HttpResponse, HttpServer};
use bootstrap::http::{HttpService, bind};
use db::migrations::MigrationError;
use secrecy::ExposeSecret;
use serde_json::json;

use crate::Settings;
use crate::error::Refusal;
use crate::routes::{self, IngestState, Refusals};
use crate::secret_snapshot::SecretSnapshot;
use crate::secrets::SecretCache;
use crate::spool::{Spool, SpoolMetrics};
use crate::writer::{CommitHub, EventWriter, WRITER_CONNECTIONS};

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
    // With an outage spool, ingest starts while the database is down (a restart during an
    // outage must not stop webhooks being accepted): the drainer checks the schema before it
    // stores anything.
    let schema_checked = match db::migrations::ensure_schema_current(database_url.expose_secret())
        .await
    {
        Ok(()) => true,
        Err(MigrationError::Unreachable(cause)) if settings.ingest_spool_dir.is_some() => {
            tracing::warn!(
                error = %cause,
                "Database unreachable at start-up: webhooks go to the outage spool until it answers."
            );
            false
        }
        Err(error) => return Err(error.into()),
    };
    let pool = db::connect_pool(database_url.expose_secret(), &settings.database.pool()).await?;
    match settings.unscoped_webhook_app_id {
        Some(app_id) if schema_checked => {
            let mut conn = pool.get().await?;
            anyhow::ensure!(
                db::apps::App::find(&mut conn, app_id).await?.is_some(),
                "UNSCOPED_WEBHOOK_APP_ID names no app ({app_id}): create the app first, or unset it"
            );
        }
        Some(app_id) => tracing::warn!(
            app.id = %app_id,
            "UNSCOPED_WEBHOOK_APP_ID not checked: the database is unreachable."
        ),
        None => {}
    }
    let metrics = bootstrap::metrics::Metrics::new("ingest")
        .with_token(settings.metrics.metrics_token.clone());
    let spool_metrics = SpoolMetrics::register(&metrics);
    // A spool that cannot be opened (e.g. a disk mounted without write access for the service's
    // user) must not stop ingest: it runs without one, loudly (log, `/readyz`).
    let (spool, spool_error) = match &settings.ingest_spool_dir {
        Some(dir) => match Spool::open(
            std::path::Path::new(dir),
            settings.ingest_spool_max_bytes,
            spool_metrics,
        ) {
            Ok(spool) => (Some(spool), None),
            Err(error) => {
                tracing::error!(error = %format!("{error:#}"), "The outage spool cannot be used: webhooks are answered 503 while the database is down.");
                (None, Some(format!("{error:#}")))
            }
        },
        None => (None, None),
    };
    let snapshot = spool
        .as_ref()
        .map(|spool| SecretSnapshot::load(spool.dir(), &keyring));
    metrics.register(bootstrap::metrics::PoolCollector::new(
        pool.clone(),
        settings.database.pool().max_size,
    ));
    let refusals = metrics.counter_vec(
        "ingest_refusals_total",
        "Webhooks refused, by reason (invalid_signature, unknown_app, rate_limited, ...)",
        &["reason"],
    );
    let commit_hub = CommitHub::start(pool.clone(), &metrics);
    // Each HTTP worker inserts through connections of its own (see `crate::writer`).
    let writer_pool = db::PoolSettings {
        max_size: WRITER_CONNECTIONS,
        ..settings.database.pool()
    };
    let state = Data::new(IngestState {
        unscoped_app_id: settings.unscoped_webhook_app_id,
        unscoped_secret,
        secrets: SecretCache::new(
            std::time::Duration::from_millis(settings.app_secret_cache_ttl_ms),
            keyring,
            snapshot,
        ),
        refusals: Refusals::new(
            settings.ingest_failed_verifications_per_min,
            settings.trusted_proxy_hops,
        ),
        retry_budget: settings.retry_budget(),
        body_timeout: std::time::Duration::from_millis(settings.ingest_body_timeout_ms),
        pool: pool.clone(),
        spool: spool.clone(),
        spool_error,
    });
    let pool_for_drain = pool.clone();
    let pool = Data::new(pool);

    let (listener, port) = bind(&settings.host, settings.port)?;
    let metrics = Data::new(metrics);
    let refusals = Data::new(refusals);
    let writer_url = database_url.clone();
    let server = HttpServer::new(move || {
        // Runs on each HTTP worker's thread, inside its runtime.
        let writer = EventWriter::start(
            db::lazy_pool(writer_url.expose_secret(), &writer_pool),
            &commit_hub,
        );
        App::new()
            .wrap(actix_web::middleware::from_fn(count_refusals))
            .wrap(actix_web::middleware::from_fn(
                bootstrap::metrics::track_requests,
            ))
            .wrap(actix_web::middleware::from_fn(crate::request_id::assign))
            .app_data(state.clone())
            .app_data(Data::new(writer))
            .app_data(pool.clone())
            .app_data(metrics.clone())
            .app_data(refusals.clone())
            .configure(bootstrap::http::liveness_route)
            .route("/readyz", actix_web::web::get().to(readyz))
            .configure(bootstrap::metrics::metrics_routes)
            .configure(routes::configure)
    })
    .listen(listener)?
    .disable_signals()
    .run();
    let service = HttpService::new(port, server);
    Ok(match spool {
        Some(spool) => service.with_companion(spool.drain_forever(
            pool_for_drain,
            database_url,
            schema_checked,
        )),
        None => service,
    })
}

/// `GET /readyz`: `200 {"status": "ready"}` when the database answers and nothing is spooled;
/// `200 {"status": "degraded", "database": "ready" | "unreachable", "spool": {events, bytes,
/// max_bytes}}` while events wait in the outage spool or the database is down but the spool
/// has room (webhooks are still accepted); otherwise `503`. A configured spool that could not
/// be opened is named as `spool_error`.
async fn readyz(state: Data<IngestState>) -> HttpResponse {
    let database = db::ping(&state.pool).await;
    if let Err(error) = &database {
        tracing::warn!(error = %error, "Readiness check: the database is unreachable.");
    }
    let Some(spool) = &state.spool else {
        let mut body = match database {
            Ok(()) => json!({ "status": "ready" }),
            Err(_) => json!({ "error": "unavailable", "message": "the database is unreachable" }),
        };
        if let Some(error) = &state.spool_error {
            body["spool_error"] = json!(error);
        }
        return match database {
            Ok(()) => HttpResponse::Ok().json(body),
            Err(_) => HttpResponse::ServiceUnavailable().json(body),
        };
    };
    let depth = spool.depth();
    let database_state = if database.is_ok() {
        "ready"
    } else {
        "unreachable"
    };
    if database.is_ok() && depth.events == 0 {
        return HttpResponse::Ok().json(json!({ "status": "ready", "spool": depth }));
    }
    if database.is_err() && !spool.has_room() {
        return HttpResponse::ServiceUnavailable().json(json!({
            "error": "unavailable",
            "message": "the database is unreachable and the outage spool is full",
            "spool": depth,
        }));
    }
    HttpResponse::Ok().json(json!({
        "status": "degraded",
        "database": database_state,
        "spool": depth,
    }))
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
