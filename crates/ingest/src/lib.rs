#![doc = include_str!("../README.md")]

mod error;
mod request_id;
mod routes;
mod secret_snapshot;
mod secrets;
pub mod settings;
pub mod signature;
mod spool;
mod startup;
mod writer;

pub use settings::Settings;
pub use startup::{Application, build};
