//! The OpenAPI 3.1 document, generated from the route table: every handler registered in
//! [`routes::configure`] carries its `#[utoipa::path]`, so a route cannot exist undocumented.
//! Served at `GET /openapi.json`, with an interactive page at `GET /docs`; the committed copy
//! is `docs/openapi.json` (`just openapi` rewrites it, and a test fails when it is stale).

use actix_web::web::Data;
use actix_web::{HttpResponse, get, http::header::ContentType};
use utoipa::openapi::path::{HttpMethod, Operation, OperationBuilder};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, ObjectBuilder, OpenApi as Document, PathItem, Ref, RefOr, Type,
};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_actix_web::AppExt;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::auth::API_KEY_HEADER;
use crate::error::ErrorBody;
use crate::response_cache::{CACHE_STATUS_HEADER, CACHED_LISTS};
use crate::routes;

/// The security scheme of the tenant endpoints (`x-app-api-key`). Handlers name it as a
/// literal, `security(("app_api_key" = []))`: utoipa takes no constant there.
const TENANT_KEY: &str = "app_api_key";
/// The security scheme of the admin endpoints (`Authorization: Bearer $INTERNAL_API_SECRET`),
/// `security(("internal_api_secret" = []))`.
const ADMIN_BEARER: &str = "internal_api_secret";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "CTI server API",
        description = "Call history, live calls, SMS and voicemail from Dialpad's webhooks, per \
            tenant (`x-app-api-key`), and the admin endpoints that onboard tenants \
            (`Authorization: Bearer $INTERNAL_API_SECRET`).\n\nConventions: Dialpad ids are \
            strings (int64, exact in JavaScript); times are RFC 3339 UTC with milliseconds; \
            durations are integer milliseconds. Every error is `{\"error\": \"<code>\", \
            \"message\": \"...\"}`; every response may be 429 `rate_limited` (with \
            `Retry-After`, seconds), 500 `internal` or 503 `unavailable`.",
        license(name = "MIT", identifier = "MIT"),
    ),
    components(schemas(ErrorBody)),
    tags(
        (name = "calls", description = "A tenant's phone calls, their legs and events"),
        (name = "messages", description = "A tenant's SMS/MMS and voicemails"),
        (name = "apps", description = "Tenants (apps), their API keys and audit log"),
        (name = "push", description = "A tenant's webhook subscriptions: the worker pushes signed events to them (docs/events.md)"),
        (name = "dialpad", description = "Onboarding an app at Dialpad: connection, webhooks, subscriptions"),
        (name = "oauth", description = "The Dialpad OAuth 2.0 flow (PKCE)"),
        (name = "operations", description = "The webhook event queue: dead letters, re-routing, replay"),
        (name = "meta", description = "Health and this document"),
    )
)]
struct ApiDoc;

/// The document, from the route table.
pub fn document() -> Document {
    let (_, mut document) = actix_web::App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .configure(routes::configure)
        .configure(configure)
        .split_for_parts();
    Conventions.modify(&mut document);
    add_webhooks(&mut document);
    document
}

/// The OpenAPI 3.1 `webhooks` section: one entry per push event (`domain::push::PushEvent`),
/// the `POST` a subscription receives, with its body's JSON schema (a component named after
/// the event, `data` a reference to the resource's schema) and a sample
/// (`db::push::sample_body`).
fn add_webhooks(openapi: &mut Document) {
    use domain::push::PushEvent;
    use utoipa::openapi::request_body::RequestBodyBuilder;
    use utoipa::openapi::{Paths, Required};

    let headers = "Signed twice (docs/events.md): `x-webhook-signature: sha256=<hex HMAC-SHA256 of \
        the raw body, keyed by the whole secret_key>`, and Standard Webhooks `webhook-id` (the \
        body's `id`, the same on every retry), `webhook-timestamp` (Unix seconds) and \
        `webhook-signature: v1,<base64>` (two during a secret rotation). Answer 2xx within 5 s; \
        otherwise it is retried (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h); `410 Gone` \
        deactivates the subscription.";
    let components = openapi.components.get_or_insert_with(Default::default);
    let mut webhooks = Paths::new();
    for event in PushEvent::ALL {
        let resource = match event {
            PushEvent::SmsReceived | PushEvent::SmsSent | PushEvent::SmsStatusChanged => "Message",
            PushEvent::VoicemailCreated => "Voicemail",
            _ => "PhoneCall",
        };
        let name: String = event
            .as_str()
            .split('.')
            .map(|part| {
                let mut chars = part.chars();
                chars.next().map_or_else(String::new, |first| {
                    first.to_ascii_uppercase().to_string() + chars.as_str()
                })
            })
            .collect::<String>()
            + "Event";
        let string = || ObjectBuilder::new().schema_type(Type::String);
        let schema = ObjectBuilder::new()
            .description(Some(event.description()))
            .property(
                "id",
                string().description(Some(
                    "A UUID; also the `webhook-id` header: the same on every retry",
                )),
            )
            .property("event", string().enum_values(Some([event.as_str()])))
            .property(
                "callId",
                string().description(Some(if resource == "Message" {
                    "The message's id"
                } else {
                    "The phone call's id, as in `GET /api/calls`"
                })),
            )
            .property(
                "status",
                ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
                        Type::String,
                        Type::Null,
                    ]))
                    .description(Some("The call's (message's) status after the change")),
            )
            .property(
                "timestamp",
                string()
                    .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                        utoipa::openapi::KnownFormat::DateTime,
                    )))
                    .description(Some("When it was announced, RFC 3339 UTC")),
            )
            .property(
                "sequence",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .description(Some(
                        "Increases per call (message): drop an update older than one you have",
                    )),
            )
            .property("data", Ref::from_schema_name(resource))
            .required("id")
            .required("event")
            .required("callId")
            .required("status")
            .required("timestamp")
            .required("sequence")
            .required("data")
            .build();
        components
            .schemas
            .insert(name.clone(), RefOr::T(schema.into()));
        let sample = db::push::sample_body(
            *event,
            uuid::Uuid::nil(),
            chrono::DateTime::UNIX_EPOCH + chrono::Duration::days(20_000),
        );
        let operation = OperationBuilder::new()
            .tag("push")
            .summary(Some(event.description()))
            .description(Some(headers))
            .request_body(Some(
                RequestBodyBuilder::new()
                    .required(Some(Required::True))
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name(name)))
                            .example(Some(sample))
                            .build(),
                    )
                    .build(),
            ))
            .response(
                "2XX",
                ResponseBuilder::new().description("Received (the answer's body is ignored)"),
            )
            .response(
                "410",
                ResponseBuilder::new().description("Gone: deactivate this subscription"),
            )
            .build();
        webhooks.paths.insert(
            event.as_str().to_owned(),
            PathItem::new(HttpMethod::Post, operation),
        );
    }
    openapi.webhooks = Some(webhooks);
}

/// `GET /openapi.json` and `GET /docs`.
pub(crate) fn configure(cfg: &mut ServiceConfig) {
    cfg.service(openapi_json).service(docs);
}

/// The document as served, rendered once at start.
#[derive(Debug)]
pub(crate) struct Rendered {
    pub(crate) json: String,
    pub(crate) docs_html: String,
    /// Each documented path's segments (`{name}` matches any one) and its methods.
    paths: Vec<(Vec<String>, Vec<&'static str>)>,
}

impl Rendered {
    pub(crate) fn new() -> anyhow::Result<Self> {
        let document = document();
        let json = document.to_pretty_json()?;
        let paths = document
            .paths
            .paths
            .iter()
            .map(|(path, item)| {
                let segments = path.split('/').map(str::to_owned).collect();
                let methods = [
                    ("GET", item.get.is_some()),
                    ("POST", item.post.is_some()),
                    ("PUT", item.put.is_some()),
                    ("PATCH", item.patch.is_some()),
                    ("DELETE", item.delete.is_some()),
                    ("HEAD", item.head.is_some()),
                    ("OPTIONS", item.options.is_some()),
                ]
                .into_iter()
                .filter_map(|(method, present)| present.then_some(method))
                .collect();
                (segments, methods)
            })
            .collect();
        let docs_html = utoipa_scalar::Scalar::new(document).to_html();
        Ok(Rendered {
            json,
            docs_html,
            paths,
        })
    }

    /// The methods the document gives `path` (empty when it documents no such path). A path
    /// matching several templates is the most literal one's (`/internal/events/reroute`, not
    /// `/internal/events/{event_id}`), as the router prefers it.
    pub(crate) fn methods_of(&self, path: &str) -> Vec<&'static str> {
        let segments: Vec<&str> = path.split('/').collect();
        self.paths
            .iter()
            .filter_map(|(template, methods)| {
                let mut parameters = 0;
                let matches = template.len() == segments.len()
                    && template.iter().zip(&segments).all(|(expected, given)| {
                        let parameter = expected.starts_with('{') && !given.is_empty();
                        parameters += usize::from(parameter && expected != given);
                        expected == given || parameter
                    });
                matches.then_some((parameters, methods))
            })
            .min_by_key(|(parameters, _)| *parameters)
            .map(|(_, methods)| methods.clone())
            .unwrap_or_default()
    }
}

/// Get this document
///
/// OpenAPI 3.1, generated from the route table.
#[utoipa::path(
    tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json"))
)]
#[get("/openapi.json")]
async fn openapi_json(rendered: Data<Rendered>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(rendered.json.clone())
}

/// Browse this document
///
/// An interactive page (Scalar) with the document embedded; the browser loads the page's
/// script from a CDN when it opens it, nothing is fetched at build time.
#[utoipa::path(
    tag = "meta",
    responses((status = 200, description = "An HTML page", content_type = "text/html"))
)]
#[get("/docs")]
async fn docs(rendered: Data<Rendered>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::html())
        .body(rendered.docs_html.clone())
}

/// What every operation shares, added here once instead of on each handler: the security
/// schemes, the 401 of authenticated operations, the 429/500/503 every request can get, and
/// the health routes (`bootstrap::http`).
struct Conventions;

fn error_response(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(RefOr::Ref(Ref::from_schema_name(ErrorBody::name()))))
                .build(),
        )
        .build()
}

fn add_error(operation: &mut Operation, status: &str, response: &Response) {
    operation
        .responses
        .responses
        .entry(status.to_owned())
        .or_insert_with(|| RefOr::T(response.clone()));
}

impl Modify for Conventions {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            TENANT_KEY,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                API_KEY_HEADER,
                "A tenant's API key, `raw_{key_id}_{secret}` (`POST /internal/apps`)",
            ))),
        );
        components.add_security_scheme(
            ADMIN_BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The server's `INTERNAL_API_SECRET`"))
                    .build(),
            ),
        );

        for (path, status, description) in [
            (
                "/healthz",
                "200",
                "The process is up: `{\"status\": \"ok\"}`",
            ),
            (
                "/readyz",
                "200",
                "The database answers: `{\"status\": \"ready\"}` (503 `unavailable` when not)",
            ),
            (
                "/metrics",
                "200",
                "Prometheus metrics: the text exposition format (requests, pool, live streams)",
            ),
        ] {
            let operation = OperationBuilder::new()
                .tag("meta")
                .summary(Some(description.split(':').next().unwrap_or(description)))
                .response(status, ResponseBuilder::new().description(description))
                .build();
            openapi
                .paths
                .paths
                .insert(path.to_owned(), PathItem::new(HttpMethod::Get, operation));
        }

        let unauthorized = error_response(
            "No valid credential: `missing_api_key` or `invalid_api_key` (a revoked key, or its \
             app deactivated) for tenant endpoints, `unauthorized` for admin ones",
        );
        let rate_limited = {
            let mut response = error_response(
                "`rate_limited`: over the per-IP or per-key limit; `Retry-After` says when to \
                 retry",
            );
            response.headers.insert(
                "Retry-After".to_owned(),
                RefOr::T(
                    HeaderBuilder::new()
                        .schema(Some(ObjectBuilder::new().schema_type(Type::Integer)))
                        .description(Some("Seconds to wait"))
                        .build(),
                ),
            );
            response
        };
        let internal = error_response("`internal`: an unexpected failure (logged with its cause)");
        let unavailable = error_response(
            "`unavailable`: the database cannot be reached (`Retry-After: 2`); `not_configured`: \
             the server lacks a setting this needs (the message names it)",
        );
        let meta = ["/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"];
        for (path, item) in &mut openapi.paths.paths {
            for operation in [
                &mut item.get,
                &mut item.post,
                &mut item.patch,
                &mut item.delete,
                &mut item.put,
            ]
            .into_iter()
            .flatten()
            {
                if operation.security.as_ref().is_some_and(|s| !s.is_empty()) {
                    add_error(operation, "401", &unauthorized);
                }
                if !meta.contains(&path.as_str()) {
                    add_error(operation, "429", &rate_limited);
                    add_error(operation, "500", &internal);
                    add_error(operation, "503", &unavailable);
                }
                if CACHED_LISTS.contains(&path.as_str())
                    && let Some(RefOr::T(ok)) = operation.responses.responses.get_mut("200")
                {
                    ok.headers.insert(
                        CACHE_STATUS_HEADER.to_owned(),
                        RefOr::T(
                            HeaderBuilder::new()
                                .schema(Some(
                                    ObjectBuilder::new()
                                        .schema_type(Type::String)
                                        .enum_values(Some(["hit", "miss", "bypass"])),
                                ))
                                .description(Some(
                                    "`hit`: the cached answer (the tenant's data has not changed \
                                 since it was built); `miss`: built now and cached; `bypass`: \
                                 built now, not cached (`RESPONSE_CACHE_MB=0`, or the change \
                                 listener is reconnecting)",
                                ))
                                .build(),
                        ),
                    );
                }
            }
        }
    }
}
