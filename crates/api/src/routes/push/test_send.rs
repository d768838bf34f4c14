//! `POST /api/webhooks/test`: sends a sample event now, exactly as a delivery is sent
//! (`push_sender`), and answers with what the receiver did.

use secrecy::ExposeSecret;

use super::*;

/// Body of `POST /api/webhooks/test`: one of `subscription_id` (sent to its URL, signed with its
/// secret) or `webhook_url` (sent there, signed with a one-off secret returned in the answer).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TestSend {
    subscription_id: Option<String>,
    webhook_url: Option<String>,
    /// An event of the catalogue (`call.started`, ...): the sample's shape.
    event_type: String,
}

/// What the receiver did with the sample.
#[derive(Serialize, ToSchema)]
#[schema(as = WebhookTestResult)]
pub(crate) struct TestResult {
    /// Whether it answered 2xx within `PUSH_TIMEOUT_MS`.
    success: bool,
    /// Its status code; `null` when no answer came (refused address, connect error, timeout).
    status_code: Option<u16>,
    /// From sending to the end of its answer (at most 64 KB read), milliseconds.
    latency_ms: u32,
    /// Why it failed; `null` on success.
    error: Option<String>,
    /// The sample's `webhook-id`.
    webhook_id: String,
    event_type: String,
    /// With `webhook_url` only: the one-off `whsec_...` secret the sample was signed with.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret_key: Option<String>,
}

impl std::fmt::Debug for TestResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestResult")
            .field("success", &self.success)
            .field("status_code", &self.status_code)
            .field("latency_ms", &self.latency_ms)
            .field("error", &self.error)
            .field("webhook_id", &self.webhook_id)
            .field("event_type", &self.event_type)
            .field(
                "secret_key",
                &crate::routes::redacted(self.secret_key.as_ref()),
            )
            .finish()
    }
}

/// Send a test event
///
/// Sends a sample `event_type` now (shaped as a real one, `callId` `1000000000000001`),
/// signed both ways, to a subscription's URL with its secret, or to `webhook_url` with a
/// one-off secret returned as `secret_key`; answers `200` with what the receiver did. The
/// attempt is not logged and changes no subscription's health. The URL is checked as at
/// subscribe time.
#[utoipa::path(
    tag = "push",
    security(("app_api_key" = [])),
    request_body = TestSend,
    responses(
        (status = 200, description = "What the receiver did (also when it failed)", body = TestResult),
        (status = 400, description = "`invalid_request`: neither or both of `subscription_id` and `webhook_url`, an unknown `event_type`, or a refused URL", body = ErrorBody),
        (status = 404, description = "`not_found`: no such subscription for this app", body = ErrorBody),
    )
)]
#[post("/api/webhooks/test")]
#[tracing::instrument(skip_all, fields(app.id = %tenant.app_id))]
pub(crate) async fn send_test(
    tenant: Tenant,
    state: Data<ApiState>,
    body: JsonObject<TestSend>,
) -> Result<Json<TestResult>, ApiError> {
    let body = body.0;
    let Some(event) = PushEvent::parse(&body.event_type) else {
        return Err(ApiError::InvalidRequest(format!(
            "event_type must be one of: {}",
            event_names().join(", ")
        )));
    };
    let (url, secret, previous, one_off) = match (body.subscription_id, body.webhook_url) {
        (Some(id), None) => {
            let mut conn = state.conn().await?;
            let (url, secret, previous) = PushSubscription::signing(
                &mut conn,
                &state.keyring,
                tenant.app_id,
                subscription_id(&id)?,
            )
            .await?
            .ok_or(ApiError::NotFound)?;
            // Checked again: the policy may have tightened since it was stored.
            (
                checked_url(&url, state.webhook_urls).await?,
                secret,
                previous,
                false,
            )
        }
        (None, Some(url)) => {
            let url = checked_url(&url, state.webhook_urls).await?;
            let mut bytes = [0u8; 32];
            rand::rng().fill_bytes(&mut bytes);
            let secret = domain::push::secret_from_bytes(&bytes);
            (url, secret.into(), None, true)
        }
        _ => {
            return Err(ApiError::InvalidRequest(
                "give exactly one of subscription_id and webhook_url".into(),
            ));
        }
    };
    let webhook_id = Uuid::new_v4();
    let sample = db::push::sample_body(event, webhook_id, chrono::Utc::now());
    let outcome = state
        .push_sender
        .send(
            &url,
            &webhook_id.to_string(),
            serde_json::to_vec(&sample).unwrap_or_default(),
            push_sender::Signing {
                secret: secret.expose_secret(),
                previous: previous.as_ref().map(|p| p.expose_secret()),
            },
        )
        .await;
    Ok(Json(TestResult {
        success: outcome.is_success(),
        status_code: outcome.status_code,
        latency_ms: outcome.latency_ms,
        error: outcome.error,
        webhook_id: webhook_id.to_string(),
        event_type: event.as_str().to_owned(),
        secret_key: one_off.then(|| secret.expose_secret().to_owned()),
    }))
}

/// `Debug` of the answer, holding `secret` (for the redaction test).
#[cfg(test)]
pub(super) fn debug_sample(secret: &str) -> String {
    format!(
        "{:?}",
        TestResult {
            success: true,
            status_code: Some(200),
            latency_ms: 1,
            error: None,
            webhook_id: String::new(),
            event_type: String::new(),
            secret_key: Some(secret.into()),
        }
    )
}
