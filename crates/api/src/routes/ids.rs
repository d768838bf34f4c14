//! Parsing the ids handlers take from paths and queries: each malformed id is a 400
//! `invalid_parameter` naming the parameter, an unknown one a 404.

use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use db::apps::App;

use crate::error::ApiError;
use crate::startup::ApiState;

/// An `app_id` parameter: a UUID, else 400 `invalid_parameter`.
pub(crate) fn parse_app_id(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse().map_err(|_| ApiError::InvalidParameter {
        name: "app_id",
        message: "must be a UUID".into(),
    })
}

/// `?app_id=` of the onboarding endpoints.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AppQuery {
    /// The app (a UUID).
    #[param(required = true, value_type = String, format = "uuid")]
    app_id: Option<String>,
}

impl AppQuery {
    pub(crate) fn app_id(&self) -> Result<Uuid, ApiError> {
        let raw = self.app_id.as_deref().ok_or(ApiError::InvalidParameter {
            name: "app_id",
            message: "is required".into(),
        })?;
        parse_app_id(raw)
    }

    /// The app named by `app_id`: 400 when missing or malformed, 404 when unknown.
    pub(crate) async fn app(&self, state: &ApiState) -> Result<App, ApiError> {
        let app_id = self.app_id()?;
        let mut conn = state.conn().await?;
        App::find(&mut conn, app_id)
            .await?
            .ok_or(ApiError::NotFound)
    }
}

/// A Dialpad id (`webhook_id`, `subscription_id`): an int64, else 400 `invalid_parameter`.
pub(crate) fn parse_dialpad_id(name: &'static str, raw: &str) -> Result<i64, ApiError> {
    raw.parse().map_err(|_| ApiError::InvalidParameter {
        name,
        message: "must be a Dialpad id (an integer)".into(),
    })
}
