//! `/internal/apps`: tenant administration.

mod audit;
mod crud;
mod keys;

use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use crate::error::ApiError;
use crate::keys::NewKey;
use crate::startup::ApiState;

/// This module's routes (`routes::configure`).
pub(crate) fn configure(cfg: &mut ServiceConfig) {
    cfg.service(crud::create_app)
        .service(crud::list_apps)
        .service(crud::get_app)
        .service(crud::update_app)
        .service(keys::issue_key)
        .service(keys::list_keys)
        .service(keys::revoke_key)
        .service(audit::audit_log);
}

/// The bcrypt hash of a new key, computed off the async executor (it is deliberately slow).
async fn hash_key(state: &ApiState, key: &NewKey) -> Result<String, ApiError> {
    let (cost, to_hash) = (state.bcrypt_cost, key.key.clone());
    tokio::task::spawn_blocking(move || bcrypt::hash(to_hash, cost))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .map_err(|e| ApiError::Internal(e.into()))
}

fn app_id(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound)
}

/// `Debug` of each type here that holds a secret, filled with `secret` (for the redaction test).
#[cfg(test)]
pub(super) fn debug_samples(secret: &str) -> Vec<String> {
    let mut samples = crud::debug_samples(secret);
    samples.extend(keys::debug_samples(secret));
    samples
}
