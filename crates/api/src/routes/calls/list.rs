//! `GET /api/calls` (phone calls or legs, filtered, paged) and `GET /api/calls/active`.

use super::*;

fn view_schema() -> Object {
    string_enum(
        VIEWS,
        "`calls` (default): one row per phone call; `legs`: one row per Dialpad leg.",
    )
}

fn status_schema() -> Object {
    string_enum(
        CALL_STATUSES,
        "Our status (`abandoned`: a phone call's only, an inbound call that queued and was \
         never answered).",
    )
}

/// The filters of `GET /api/calls` beyond the shared ones.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct CallsQuery {
    /// Phone calls or legs (described in `view_schema`).
    #[param(schema_with = view_schema)]
    view: Option<String>,
    /// Our status (described in `status_schema`).
    #[param(schema_with = status_schema)]
    status: Option<String>,
    /// A Dialpad call state (`hangup`, `voicemail`, ...): of the leg, or of any leg of the
    /// phone call.
    state: Option<String>,
    /// A Dialpad target id (user, office, call center...): of the leg, or of any leg. Ids are
    /// compared as text, an integer in canonical decimal (`042` finds `42`).
    #[param(value_type = Option<String>, example = "6460210548400128")]
    target_id: Option<String>,
}

fn call_filter(
    calls: &CallsQuery,
    range: &RangeQuery,
    direction: &DirectionQuery,
) -> Result<CallFilter, ApiError> {
    let (from, to) = range.time_range()?;
    Ok(CallFilter {
        direction: direction.direction()?,
        status: one_of("status", calls.status.as_deref(), CALL_STATUSES)?,
        state: calls.state.clone(),
        from,
        to,
        number: range.number()?,
        live: false,
        target_id: calls
            .target_id
            .as_deref()
            .map(|raw| {
                domain::json::canonical_id(raw).ok_or_else(|| ApiError::InvalidParameter {
                    name: "target_id",
                    message: format!(
                        "must be a Dialpad id: an integer, or a text of 1 to {} bytes",
                        domain::json::MAX_TOKEN_BYTES
                    ),
                })
            })
            .transpose()?,
    })
}

/// Phone calls, or legs with `view=legs`.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum CallRows {
    Calls(Vec<LogicalCallResponse>),
    Legs(Vec<CallResponse>),
}

// Documented as `anyOf`, not the derive's `oneOf`: an empty page is a valid list of either, so
// it would match both alternatives, which `oneOf` forbids.
impl utoipa::PartialSchema for CallRows {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AnyOfBuilder, ArrayBuilder, Ref};
        let list_of = |name: &str| ArrayBuilder::new().items(Ref::from_schema_name(name));
        AnyOfBuilder::new()
            .item(list_of(&LogicalCallResponse::name()))
            .item(list_of(&CallResponse::name()))
            .description(Some("Phone calls, or legs with `view=legs`."))
            .into()
    }
}

impl ToSchema for CallRows {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        use utoipa::PartialSchema;
        schemas.push((
            LogicalCallResponse::name().into(),
            LogicalCallResponse::schema(),
        ));
        LogicalCallResponse::schemas(schemas);
        schemas.push((CallResponse::name().into(), CallResponse::schema()));
        CallResponse::schemas(schemas);
    }
}

/// A page of `GET /api/calls` or `GET /api/calls/active`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CallList {
    /// Phone calls, or legs with `view=legs`; newest first (`started_at`).
    calls: CallRows,
    #[serde(flatten)]
    page: PageMeta,
}

/// List the tenant's phone calls
///
/// Newest first (`started_at`), one row per phone call with its `leg_count`; `view=legs` lists
/// the Dialpad legs instead. Filters combine with AND. Paging: `limit` with `offset`, or
/// `cursor` (a previous page's `next_cursor`) for deep pages; `total` counts every match on
/// offset pages and is `null` on cursor pages (count once, then walk).
#[utoipa::path(
    tag = "calls",
    security(("app_api_key" = [])),
    params(PageQuery, RangeQuery, DirectionQuery, CallsQuery),
    responses(
        (status = 200, description = "A page of calls", body = CallList),
        (status = 400, description = "`invalid_parameter`: the message names the parameter", body = ErrorBody),
    )
)]
#[get("/api/calls")]
#[tracing::instrument(skip_all, fields(app.id = %tenant.app_id))]
pub(crate) async fn list_calls(
    tenant: Tenant,
    state: Data<ApiState>,
    page: Query<PageQuery>,
    range: Query<RangeQuery>,
    direction: Query<DirectionQuery>,
    calls: Query<CallsQuery>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let filter = call_filter(&calls, &range, &direction)?;
    list(&state, &request, tenant, &page, &calls, filter).await
}

/// List the tenant's live calls
///
/// Calls that have not ended (`ringing`, `queued`, `connected`, `on_hold`), with the filters,
/// paging and `view` of `GET /api/calls`; served by a partial index however long the history.
#[utoipa::path(
    tag = "calls",
    security(("app_api_key" = [])),
    params(PageQuery, RangeQuery, DirectionQuery, CallsQuery),
    responses(
        (status = 200, description = "A page of live calls", body = CallList),
        (status = 400, description = "`invalid_parameter`: the message names the parameter", body = ErrorBody),
    )
)]
#[get("/api/calls/active")]
#[tracing::instrument(skip_all, fields(app.id = %tenant.app_id))]
pub(crate) async fn active_calls(
    tenant: Tenant,
    state: Data<ApiState>,
    page: Query<PageQuery>,
    range: Query<RangeQuery>,
    direction: Query<DirectionQuery>,
    calls: Query<CallsQuery>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let mut filter = call_filter(&calls, &range, &direction)?;
    filter.live = true;
    list(&state, &request, tenant, &page, &calls, filter).await
}

/// A page of calls or legs (a [`CallList`]), cached until the tenant's data changes.
async fn list(
    state: &ApiState,
    request: &HttpRequest,
    tenant: Tenant,
    page: &PageQuery,
    calls: &CallsQuery,
    filter: CallFilter,
) -> Result<HttpResponse, ApiError> {
    let legs = one_of("view", calls.view.as_deref(), VIEWS)?.as_deref() == Some("legs");
    let window = page.window()?;
    let app_id = tenant.app_id;
    let build = |stamp| async move {
        let mut conn = state.conn().await?;
        let (rows, total, next) = if legs {
            let page = listing::legs(&mut conn, app_id, &filter, window).await?;
            let count = listing::count_legs(&mut conn, app_id, &filter);
            let key = TotalKey::Legs(app_id, filter.clone());
            let total = state
                .totals
                .total(key, stamp, &window, page.total, count)
                .await?;
            let next = next_cursor(&page.rows, window.limit, |c| {
                (c.leg.started_at, c.leg.call_id)
            });
            let rows = page.rows.into_iter().map(CallResponse::from).collect();
            (CallRows::Legs(rows), total, next)
        } else {
            let page = listing::logical_calls(&mut conn, app_id, &filter, window).await?;
            let count = listing::count_logical_calls(&mut conn, app_id, &filter);
            let key = TotalKey::Calls(app_id, filter.clone());
            let total = state
                .totals
                .total(key, stamp, &window, page.total, count)
                .await?;
            let next = next_cursor(&page.rows, window.limit, |c| {
                (c.started_at, c.logical_call_id)
            });
            let rows = page
                .rows
                .into_iter()
                .map(LogicalCallResponse::from)
                .collect();
            (CallRows::Calls(rows), total, next)
        };
        Ok(CallList {
            calls: rows,
            page: PageMeta::new(total, window, next),
        })
    };
    state.pages.json(request, app_id, build).await
}
