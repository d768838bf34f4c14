//! `/api/calls`: a tenant's phone calls (logical calls) and their legs.

mod detail;
mod list;
mod views;

pub(crate) use detail::{call_events, get_call};
pub(crate) use list::{active_calls, list_calls};
use views::{CallResponse, LogicalCallResponse};

use actix_web::web::{Data, Json, Path, Query};
use actix_web::{HttpRequest, HttpResponse, get};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::schema::Object;
use utoipa::{IntoParams, ToSchema};

use diesel_async::AsyncPgConnection;
use uuid::Uuid;

use db::calls::Call;
use db::listing::{self, CallFilter};
use db::logical_calls::LogicalCallRow;

use crate::auth::Tenant;
use crate::error::{ApiError, ErrorBody};
use crate::routes::params::{
    DirectionQuery, PageMeta, PageQuery, RangeQuery, next_cursor, one_of, string_enum,
};
use crate::routes::{rfc3339, timestamp};
use crate::startup::ApiState;
use crate::totals::TotalKey;

/// Values of `view`.
const VIEWS: &[&str] = &["calls", "legs"];

/// Statuses of a phone call (`domain::logical_call`), and of a leg (all but `abandoned`).
const CALL_STATUSES: &[&str] = &[
    "ringing",
    "queued",
    "connected",
    "on_hold",
    "completed",
    "missed",
    "voicemail",
    "abandoned",
];
