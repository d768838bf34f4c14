//! What the two HTTP services (ingest, api) share: binding, the health routes, and an ordered,
//! graceful stop.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};

use actix_web::HttpResponse;
use actix_web::dev::Server;
use actix_web::http::header::HeaderMap;
use actix_web::web::{self, Data, ServiceConfig};
use anyhow::Context;
use serde_json::json;

use db::Pool;

/// Binds `host:port` (port 0 picks a free one) and returns the listener with its port.
///
/// # Errors
/// When the address cannot be bound.
pub fn bind(host: &str, port: u16) -> anyhow::Result<(TcpListener, u16)> {
    let listener =
        TcpListener::bind((host, port)).with_context(|| format!("Failed to bind {host}:{port}"))?;
    let port = listener.local_addr()?.port();
    Ok((listener, port))
}

/// `GET /healthz` (the process is up) and `GET /readyz` (the database answers). The app must
/// register the pool as `Data<Pool>`.
pub fn health_routes(cfg: &mut ServiceConfig) {
    liveness_route(cfg);
    cfg.route("/readyz", web::get().to(readyz));
}

/// `GET /healthz` alone, for a service whose readiness says more than the database's.
pub fn liveness_route(cfg: &mut ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

async fn readyz(pool: Data<Pool>) -> HttpResponse {
    match db::ping(&pool).await {
        Ok(()) => HttpResponse::Ok().json(json!({ "status": "ready" })),
        Err(error) => {
            tracing::warn!(error = %error, "Readiness check failed.");
            HttpResponse::ServiceUnavailable()
                .json(json!({ "error": "unavailable", "message": "the database is unreachable" }))
        }
    }
}

/// A bound, not yet running, HTTP server.
pub struct HttpService {
    port: u16,
    server: Server,
    /// Tasks that live as long as the server (e.g. ingest's spool drainer).
    companions: Vec<std::pin::Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl std::fmt::Debug for HttpService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpService")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl HttpService {
    /// Wraps a server built with `disable_signals()`: shutdown is [`HttpService::run_until_stopped`]'s.
    pub fn new(port: u16, server: Server) -> Self {
        HttpService {
            port,
            server,
            companions: Vec::new(),
        }
    }

    /// Runs `task` beside the server, from [`HttpService::run_until_stopped`] until the server
    /// stops (it is dropped then, wherever it is waiting).
    #[must_use]
    pub fn with_companion(mut self, task: impl Future<Output = ()> + Send + 'static) -> Self {
        self.companions.push(Box::pin(task));
        self
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `shutdown` resolves, then stops taking connections and lets requests in
    /// flight finish (a webhook is committed or refused, never half-done).
    ///
    /// # Errors
    /// When the server fails.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let handle = self.server.handle();
        let mut server = std::pin::pin!(self.server);
        // Companions run while the server does; one that ends does not stop the server.
        let companions = async {
            futures_util::future::join_all(self.companions).await;
            std::future::pending::<()>().await;
        };
        tokio::select! {
            result = &mut server => return result,
            () = shutdown => {}
            () = companions => {}
        }
        tracing::info!(port = self.port, "Stopping: draining requests in flight.");
        // The stop command is sent at once; the server future must keep being polled for the
        // stop to complete, so both are awaited together.
        let ((), result) = tokio::join!(handle.stop(true), server);
        result
    }
}

/// A `Retry-After` value (RFC 9110 §10.2.3: whole seconds) for a wait: rounded up, so a client
/// that waits it is past the wait.
pub fn retry_after_secs(wait: std::time::Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

/// The client's address, for rate limits and audit logs: the TCP peer when no proxy is trusted
/// (`TRUSTED_PROXY_HOPS=0`); otherwise the entry
/// `trusted_hops` from the right of the `X-Forwarded-For` list (all its headers, in order),
/// which the outermost trusted proxy appended. A request that passed fewer proxies than that
/// (a shorter list) reached us some other way: its peer address is used.
pub fn client_address(
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    trusted_hops: usize,
) -> String {
    let peer = || peer.map_or_else(|| "unknown".to_owned(), |peer| peer.ip().to_string());
    if trusted_hops == 0 {
        return peer();
    }
    let forwarded: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .collect();
    match forwarded.len().checked_sub(trusted_hops) {
        Some(index) => forwarded[index].to_owned(),
        None => peer(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn headers(forwarded: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in forwarded {
            map.append(
                HeaderName::from_static("x-forwarded-for"),
                HeaderValue::from_str(value).expect("header"),
            );
        }
        map
    }

    #[test]
    fn the_client_is_read_from_the_right_past_the_trusted_proxies() {
        let peer = Some(SocketAddr::from(([10, 0, 0, 1], 443)));
        let spoofed = headers(&["6.6.6.6, 7.7.7.7", "203.0.113.9"]);
        assert_eq!(client_address(&spoofed, peer, 0), "10.0.0.1");
        assert_eq!(client_address(&spoofed, peer, 1), "203.0.113.9");
        assert_eq!(client_address(&spoofed, peer, 2), "7.7.7.7");
        assert_eq!(client_address(&headers(&[]), peer, 1), "10.0.0.1");
    }
}
