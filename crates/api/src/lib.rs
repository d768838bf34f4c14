#![doc = include_str!("../README.md")]

mod auth;
mod error;
mod keys;
pub mod openapi;
mod rate_limit;
mod response_cache;
mod routes;
pub mod settings;
mod startup;
mod stream;
mod totals;

pub use settings::Settings;
pub use startup::{Application, build};
