//! A small Dialpad REST and OAuth client: the calls onboarding needs, with timeouts and
//! Dialpad's errors mapped to [`DialpadError`].
//!
//! Facts it relies on (`docs/dialpad.md` §1–3, §7, <https://developers.dialpad.com/reference>): the token
//! goes in `Authorization: Bearer`; REST answers encode int64 ids as strings; errors look like
//! `{"error": {"code", "message"}}`; webhook and subscription answers echo secrets in clear, so
//! they are never logged; the token endpoint accepts form-encoded bodies with `redirect_uri`.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::bodies::{Company, Subscription, TokenResponse, Webhook};

/// Longest piece of Dialpad's error text we repeat to our caller.
const MAX_MESSAGE_CHARS: usize = 200;

/// A Dialpad environment and its host (`docs/dialpad.md` §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Sandbox,
    Production,
}

impl Environment {
    /// `sandbox` or `production`.
    pub fn parse(name: &str) -> anyhow::Result<Environment> {
        match name {
            "sandbox" => Ok(Environment::Sandbox),
            "production" => Ok(Environment::Production),
            other => anyhow::bail!("DIALPAD_ENV must be `sandbox` or `production`, not {other:?}"),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Sandbox => "sandbox",
            Environment::Production => "production",
        }
    }

    fn base_url(self) -> &'static str {
        match self {
            Environment::Sandbox => "https://sandbox.dialpad.com/",
            Environment::Production => "https://dialpad.com/",
        }
    }
}

/// Why a Dialpad call failed. Messages never contain a token or a secret.
#[derive(Debug, thiserror::Error)]
pub enum DialpadError {
    /// Dialpad answered with a non-2xx status.
    #[error("Dialpad refused to {operation}: {status}{}", detail(.message))]
    Refused {
        operation: &'static str,
        status: StatusCode,
        message: Option<String>,
    },
    /// No answer within `DIALPAD_TIMEOUT_MS`.
    #[error("Dialpad did not answer in time to {operation}")]
    Timeout { operation: &'static str },
    /// The connection failed.
    #[error("Dialpad could not be reached to {operation}")]
    Unreachable { operation: &'static str },
    /// A 2xx answer we could not read.
    #[error("Dialpad's answer to {operation} was not understood: {cause}")]
    InvalidResponse {
        operation: &'static str,
        cause: String,
    },
}

fn detail(message: &Option<String>) -> String {
    message
        .as_deref()
        .map(|m| format!(" ({m})"))
        .unwrap_or_default()
}

impl DialpadError {
    /// Dialpad's status, when it answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            DialpadError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// What kind of subscription a path is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionKind {
    Call,
    Sms,
}

impl SubscriptionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionKind::Call => "call",
            SubscriptionKind::Sms => "sms",
        }
    }

    pub fn parse(kind: &str) -> Option<SubscriptionKind> {
        match kind {
            "call" => Some(SubscriptionKind::Call),
            "sms" => Some(SubscriptionKind::Sms),
            _ => None,
        }
    }

    fn path(self) -> &'static str {
        match self {
            SubscriptionKind::Call => "api/v2/subscriptions/call",
            SubscriptionKind::Sms => "api/v2/subscriptions/sms",
        }
    }
}

/// The OAuth app registered with Dialpad.
#[derive(Debug, Clone)]
pub struct OAuthApp {
    pub client_id: String,
    pub client_secret: SecretString,
    pub redirect_uri: String,
    /// Space-separated additional scopes; may be empty.
    pub scopes: String,
}

/// The Dialpad client.
#[derive(Debug, Clone)]
pub struct DialpadClient {
    http: reqwest::Client,
    base_url: Url,
    environment: Environment,
    oauth: Option<OAuthApp>,
}

impl DialpadClient {
    /// A client for `environment`, at `base_url_override` when given (tests).
    ///
    /// # Errors
    /// An invalid base URL, or the TLS backend failing to initialise.
    pub fn new(
        environment: Environment,
        base_url_override: Option<&str>,
        timeout: Duration,
        oauth: Option<OAuthApp>,
    ) -> anyhow::Result<DialpadClient> {
        let mut base = base_url_override
            .unwrap_or(environment.base_url())
            .to_owned();
        if !base.ends_with('/') {
            base.push('/');
        }
        let base_url =
            Url::parse(&base).map_err(|e| anyhow::anyhow!("DIALPAD_BASE_URL is not a URL: {e}"))?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("cti-server/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(DialpadClient {
            http,
            base_url,
            environment,
            oauth,
        })
    }

    pub fn environment(&self) -> Environment {
        self.environment
    }

    pub fn oauth(&self) -> Option<&OAuthApp> {
        self.oauth.as_ref()
    }

    fn url(&self, path: &str) -> Url {
        // `path` is one of our constants plus numeric ids: joining cannot fail.
        self.base_url
            .join(path)
            .unwrap_or_else(|_| self.base_url.clone())
    }

    /// `GET {base}/oauth2/authorize?...`: where to send the user's browser (`docs/dialpad.md` §7).
    pub fn authorize_url(&self, oauth: &OAuthApp, state: &str, code_challenge: &str) -> Url {
        let mut url = self.url("oauth2/authorize");
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", &oauth.client_id)
                .append_pair("redirect_uri", &oauth.redirect_uri);
            if !oauth.scopes.trim().is_empty() {
                query.append_pair("scope", oauth.scopes.trim());
            }
            query
                .append_pair("state", state)
                .append_pair("code_challenge", code_challenge)
                .append_pair("code_challenge_method", "S256");
        }
        url
    }

    /// `POST /api/v2/webhooks` `{hook_url, secret}`.
    pub async fn create_webhook(
        &self,
        token: &SecretString,
        hook_url: &str,
        secret: &SecretString,
    ) -> Result<Webhook, DialpadError> {
        let body = json!({ "hook_url": hook_url, "secret": secret.expose_secret() });
        self.call(
            "create the webhook",
            self.authorized(Method::POST, "api/v2/webhooks", token)
                .json(&body),
            &[token, secret],
        )
        .await
    }

    /// `DELETE /api/v2/webhooks/{id}`.
    pub async fn delete_webhook(
        &self,
        token: &SecretString,
        webhook_id: i64,
    ) -> Result<(), DialpadError> {
        let path = format!("api/v2/webhooks/{webhook_id}");
        self.call::<Value>(
            "delete the webhook",
            self.authorized(Method::DELETE, &path, token),
            &[token],
        )
        .await
        .map(drop)
    }

    /// `POST /api/v2/subscriptions/{call,sms}` with `body` (which names the webhook as
    /// `endpoint_id`, `docs/dialpad.md` §3.1).
    pub async fn create_subscription(
        &self,
        token: &SecretString,
        kind: SubscriptionKind,
        body: &Value,
    ) -> Result<Subscription, DialpadError> {
        let operation = match kind {
            SubscriptionKind::Call => "create the call subscription",
            SubscriptionKind::Sms => "create the SMS subscription",
        };
        self.call(
            operation,
            self.authorized(Method::POST, kind.path(), token).json(body),
            &[token],
        )
        .await
    }

    /// `DELETE /api/v2/subscriptions/{call,sms}/{id}`.
    pub async fn delete_subscription(
        &self,
        token: &SecretString,
        kind: SubscriptionKind,
        subscription_id: i64,
    ) -> Result<(), DialpadError> {
        let path = format!("{}/{subscription_id}", kind.path());
        self.call::<Value>(
            "delete the subscription",
            self.authorized(Method::DELETE, &path, token),
            &[token],
        )
        .await
        .map(drop)
    }

    /// `GET /api/v2/company`.
    pub async fn company(&self, token: &SecretString) -> Result<Company, DialpadError> {
        self.call(
            "read the company",
            self.authorized(Method::GET, "api/v2/company", token),
            &[token],
        )
        .await
    }

    /// `POST /oauth2/token` with `grant_type=authorization_code` and the PKCE verifier.
    pub async fn exchange_code(
        &self,
        oauth: &OAuthApp,
        code: &str,
        code_verifier: &SecretString,
    ) -> Result<TokenResponse, DialpadError> {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("client_id", &oauth.client_id),
            ("client_secret", oauth.client_secret.expose_secret()),
            ("redirect_uri", &oauth.redirect_uri),
            ("code_verifier", code_verifier.expose_secret()),
        ];
        self.call(
            "exchange the authorization code",
            self.http.post(self.url("oauth2/token")).form(&form),
            &[&oauth.client_secret, code_verifier],
        )
        .await
    }

    /// `POST /oauth2/token` with `grant_type=refresh_token`.
    pub async fn refresh(
        &self,
        oauth: &OAuthApp,
        refresh_token: &SecretString,
    ) -> Result<TokenResponse, DialpadError> {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose_secret()),
            ("client_id", &oauth.client_id),
            ("client_secret", oauth.client_secret.expose_secret()),
        ];
        self.call(
            "refresh the access token",
            self.http.post(self.url("oauth2/token")).form(&form),
            &[&oauth.client_secret, refresh_token],
        )
        .await
    }

    fn authorized(&self, method: Method, path: &str, token: &SecretString) -> RequestBuilder {
        self.http
            .request(method, self.url(path))
            .bearer_auth(token.expose_secret())
            .header(reqwest::header::ACCEPT, "application/json")
    }

    /// Sends a request and reads a JSON answer; `sent_secrets` are scrubbed from any error
    /// text Dialpad sends back.
    async fn call<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        request: RequestBuilder,
        sent_secrets: &[&SecretString],
    ) -> Result<T, DialpadError> {
        let response = request
            .send()
            .await
            .map_err(|e| transport_error(operation, e))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| transport_error(operation, e))?;
        if !status.is_success() {
            let message = error_message(&body).map(|m| scrub(m, sent_secrets));
            tracing::warn!(%status, operation, "Dialpad refused a request.");
            return Err(DialpadError::Refused {
                operation,
                status,
                message,
            });
        }
        // DELETE may answer with an empty body.
        let body: &[u8] = if body.is_empty() { b"null" } else { &body };
        serde_json::from_slice(body).map_err(|e| DialpadError::InvalidResponse {
            operation,
            // serde's message names the field and position, never the value.
            cause: e.to_string(),
        })
    }
}

fn transport_error(operation: &'static str, error: reqwest::Error) -> DialpadError {
    if error.is_timeout() {
        DialpadError::Timeout { operation }
    } else {
        tracing::warn!(operation, error = %error.without_url(), "Dialpad unreachable.");
        DialpadError::Unreachable { operation }
    }
}

/// The human part of a Dialpad error body: `{"error": {"message"}}` (REST),
/// `{"error", "error_description"}` (OAuth, RFC 6749 §5.2), or a short plain text.
fn error_message(body: &[u8]) -> Option<String> {
    let message = match serde_json::from_slice::<Value>(body) {
        Ok(json) => {
            let error = &json["error"];
            error["message"]
                .as_str()
                .or_else(|| json["error_description"].as_str())
                .or_else(|| error.as_str())
                .or_else(|| json["message"].as_str())
                .map(str::to_owned)
        }
        Err(_) => std::str::from_utf8(body)
            .ok()
            .map(str::trim)
            .filter(|text| !text.is_empty() && !text.starts_with('<'))
            .map(str::to_owned),
    }?;
    Some(message.chars().take(MAX_MESSAGE_CHARS).collect())
}

fn scrub(mut message: String, secrets: &[&SecretString]) -> String {
    for secret in secrets {
        let secret = secret.expose_secret();
        if !secret.is_empty() {
            message = message.replace(secret, "[redacted]");
        }
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_are_read_and_scrubbed() {
        let rest = br#"{"error": {"code": 401, "message": "Invalid token tok_123"}}"#;
        let token = SecretString::from("tok_123");
        assert_eq!(
            error_message(rest).map(|m| scrub(m, &[&token])).as_deref(),
            Some("Invalid token [redacted]")
        );
        let oauth = br#"{"error": "invalid_grant", "error_description": "expired"}"#;
        assert_eq!(error_message(oauth).as_deref(), Some("expired"));
        assert_eq!(error_message(b"<html>502</html>"), None);
        assert_eq!(error_message(&[b'x'; 500]).map(|m| m.len()), Some(200));
    }

    #[test]
    fn environments_map_to_dialpads_hosts() {
        let oauth = OAuthApp {
            client_id: "id".into(),
            client_secret: "secret".into(),
            redirect_uri: "https://api.example/auth/dialpad/callback".into(),
            scopes: String::new(),
        };
        for (environment, host) in [
            (
                Environment::Sandbox,
                "https://sandbox.dialpad.com/oauth2/authorize?",
            ),
            (
                Environment::Production,
                "https://dialpad.com/oauth2/authorize?",
            ),
        ] {
            let client = DialpadClient::new(environment, None, Duration::from_secs(1), None)
                .expect("client");
            let url = client.authorize_url(&oauth, "state", "challenge");
            assert!(url.as_str().starts_with(host), "{url}");
            assert!(
                !url.as_str().contains("secret"),
                "no client secret in the URL"
            );
        }
        assert!(Environment::parse("staging").is_err());
    }

    #[test]
    fn ids_may_be_strings_or_numbers() {
        let webhook: Webhook =
            serde_json::from_str(r#"{"id": "5212604609576960", "hook_url": "https://x"}"#)
                .expect("parses");
        assert_eq!(webhook.id, 5_212_604_609_576_960);
        let company: Company = serde_json::from_str(r#"{"id": 42}"#).expect("parses");
        assert_eq!(company.id, 42);
        assert!(serde_json::from_str::<Company>(r#"{"id": 1.5}"#).is_err());
    }
}
