//! The route table: one module per resource.

use actix_web::HttpResponse;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::error::ApiError;

mod apps;
mod calls;
mod dialpad;
mod events;
mod ids;
mod messages;
mod oauth;
mod params;
mod push;
mod stream;

pub(crate) use push::WebhookUrlPolicy;

/// The whole route table (health routes come from `bootstrap::http`). Each handler carries its
/// route (`#[get(...)]`, ...) and its OpenAPI operation (`#[utoipa::path]`), so the document
/// (`crate::openapi`) lists exactly these. Order matters where paths overlap: a literal segment
/// (`/api/calls/active`) comes before a parameter (`/api/calls/{call_id}`).
pub(crate) fn configure(cfg: &mut ServiceConfig) {
    cfg.service(calls::list_calls)
        .service(calls::active_calls)
        .service(calls::get_call)
        .service(calls::call_events)
        .service(messages::list_messages)
        .service(messages::list_voicemails)
        .configure(apps::configure)
        .configure(dialpad::configure)
        .configure(events::configure)
        .configure(oauth::configure)
        .configure(push::configure)
        .configure(stream::configure);
}

/// Any request no route takes: `405` with `Allow` when the path is documented for other
/// methods (RFC 9110 §15.5.6), else the JSON 404 every error shares.
pub(crate) async fn unmatched(
    request: actix_web::HttpRequest,
    openapi: Option<actix_web::web::Data<crate::openapi::Rendered>>,
) -> Result<HttpResponse, ApiError> {
    let allowed = openapi
        .map(|document| document.methods_of(request.path()))
        .unwrap_or_default();
    if allowed.is_empty() {
        return Err(ApiError::NotFound);
    }
    Err(ApiError::MethodNotAllowed {
        allow: allowed.join(", "),
    })
}

/// A JSON body that must be an object: serde would also read a struct from an array
/// (`[null, null]` as `{"name": null, "active": null}`).
#[derive(Debug)]
pub(crate) struct JsonObject<T>(pub(crate) T);

impl<T: serde::de::DeserializeOwned + 'static> actix_web::FromRequest for JsonObject<T> {
    type Error = actix_web::Error;
    type Future = futures_util::future::LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(
        request: &actix_web::HttpRequest,
        payload: &mut actix_web::dev::Payload,
    ) -> Self::Future {
        let object =
            actix_web::web::Json::<serde_json::Map<String, serde_json::Value>>::from_request(
                request, payload,
            );
        Box::pin(async move {
            let object = object.await?.into_inner();
            serde_json::from_value(serde_json::Value::Object(object))
                .map(JsonObject)
                .map_err(|e| ApiError::InvalidJson(e.to_string()).into())
        })
    }
}

impl<T> std::ops::Deref for JsonObject<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// An optional JSON body: empty means all defaults; otherwise as [`object_body`].
pub(crate) fn optional_body<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    object_body(body)
}

/// A JSON body that must be an object (see [`JsonObject`]).
pub(crate) fn object_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let invalid = |e: serde_json::Error| ApiError::InvalidJson(e.to_string());
    match serde_json::from_slice(body).map_err(invalid)? {
        object @ serde_json::Value::Object(_) => serde_json::from_value(object).map_err(invalid),
        _ => Err(ApiError::InvalidJson(
            "the body must be a JSON object".into(),
        )),
    }
}

pub(crate) use db::views::{rfc3339, timestamp};

/// What `Debug` prints for a secret field (an API key, a webhook secret): whether it is set,
/// never the value, so a logged request or answer cannot leak it.
pub(crate) fn redacted<T>(secret: Option<&T>) -> &'static str {
    match secret {
        Some(_) => "[redacted]",
        None => "None",
    }
}

#[cfg(test)]
mod tests {
    /// Every request or answer type that holds a secret prints it redacted.
    #[test]
    fn debug_of_types_holding_secrets_never_shows_the_secret() {
        const SECRET: &str = "s3cr3t-value-that-must-not-appear";
        for printed in [
            super::apps::debug_samples(SECRET),
            super::dialpad::debug_samples(SECRET),
            super::push::debug_samples(SECRET),
            vec![super::stream::debug_sample(SECRET)],
        ]
        .concat()
        {
            assert!(printed.to_lowercase().contains("[redacted]"), "{printed}");
            assert!(!printed.contains(SECRET), "{printed}");
        }
    }
}
