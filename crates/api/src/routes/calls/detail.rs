//! `GET /api/calls/{call_id}` (one phone call with its legs) and its raw events.

use super::*;

/// The path of one phone call's endpoints.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct CallPath {
    /// A Dialpad call id: the phone call's or any of its legs'.
    #[param(example = "6312883045720064")]
    call_id: String,
}

impl CallPath {
    /// The tenant's phone call this path names, with its legs (oldest first).
    ///
    /// # Errors
    /// [`ApiError::NotFound`] for an id that is not a Dialpad id or no call of this tenant's
    /// (nothing tells about other tenants); database errors.
    async fn find(
        &self,
        conn: &mut AsyncPgConnection,
        app_id: Uuid,
    ) -> Result<(LogicalCallRow, Vec<Call>), ApiError> {
        let id = self.call_id.parse().map_err(|_| ApiError::NotFound)?;
        listing::logical_call_with_legs(conn, app_id, id)
            .await?
            .ok_or(ApiError::NotFound)
    }
}

/// A phone call with its legs.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PhoneCallWithLegs {
    #[serde(flatten)]
    call: LogicalCallResponse,
    /// Its legs, oldest first.
    legs: Vec<CallResponse>,
}

/// Get a phone call with its legs
///
/// Any of its legs' ids (or its own id) finds the phone call.
#[utoipa::path(
    tag = "calls",
    security(("app_api_key" = [])),
    params(CallPath),
    responses(
        (status = 200, description = "The phone call", body = PhoneCallWithLegs),
        (status = 404, description = "`not_found`: no such call for this tenant (another tenant's call included)", body = ErrorBody),
    )
)]
#[get("/api/calls/{call_id}")]
#[tracing::instrument(skip_all, fields(app.id = %tenant.app_id))]
pub(crate) async fn get_call(
    tenant: Tenant,
    state: Data<ApiState>,
    path: Path<CallPath>,
) -> Result<Json<PhoneCallWithLegs>, ApiError> {
    let mut conn = state.conn().await?;
    let (call, legs) = path.find(&mut conn, tenant.app_id).await?;
    Ok(Json(PhoneCallWithLegs {
        call: call.into(),
        legs: legs.into_iter().map(CallResponse::from).collect(),
    }))
}

/// One raw Dialpad event of a call.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CallEvent {
    /// Our event id.
    id: String,
    /// The leg's Dialpad `call_id`.
    call_id: Option<String>,
    /// The Dialpad state (`calling`, `connected`, `hangup`, ...), or `snapshot` for a leg's
    /// events pruned by retention.
    state: Option<String>,
    /// Dialpad's `event_timestamp`.
    event_timestamp: Option<String>,
    /// When ingest accepted it.
    received_at: String,
    /// The webhook's payload as Dialpad signed it (the JWT's claims).
    #[schema(value_type = Object)]
    payload: Value,
}

/// The event timeline of a phone call.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CallEvents {
    /// The phone call's id.
    call_id: String,
    /// Every leg's events in Dialpad's order (`event_timestamp`).
    events: Vec<CallEvent>,
}

/// Get a phone call's raw events
///
/// Every leg's Dialpad events in Dialpad's order (`event_timestamp`). A leg whose old events
/// were pruned by retention shows one `snapshot` event in their place.
#[utoipa::path(
    tag = "calls",
    security(("app_api_key" = [])),
    params(CallPath),
    responses(
        (status = 200, description = "The events", body = CallEvents),
        (status = 404, description = "`not_found`: no such call for this tenant", body = ErrorBody),
    )
)]
#[get("/api/calls/{call_id}/events")]
#[tracing::instrument(skip_all, fields(app.id = %tenant.app_id))]
pub(crate) async fn call_events(
    tenant: Tenant,
    state: Data<ApiState>,
    path: Path<CallPath>,
) -> Result<Json<CallEvents>, ApiError> {
    let mut conn = state.conn().await?;
    let (call, legs) = path.find(&mut conn, tenant.app_id).await?;
    let leg_ids: Vec<i64> = legs.iter().map(|call| call.leg.call_id).collect();
    let events = listing::call_events(&mut conn, tenant.app_id, &leg_ids).await?;
    Ok(Json(CallEvents {
        call_id: call.logical_call_id.to_string(),
        events: events
            .into_iter()
            .map(|event| CallEvent {
                id: event.id.to_string(),
                call_id: event.dialpad_id.map(|id| id.to_string()),
                state: event.event_type,
                event_timestamp: rfc3339(event.event_timestamp),
                received_at: timestamp(event.received_at),
                payload: event.payload,
            })
            .collect(),
    }))
}
