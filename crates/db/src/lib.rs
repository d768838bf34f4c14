#![doc = include_str!("../README.md")]

pub mod api_keys;
pub mod apps;
pub mod audit;
pub mod calls;
pub mod changes;
pub mod connect;
pub mod crypto;
pub mod dialpad;
mod error;
mod json_text;
pub mod listing;
pub mod logical_calls;
pub mod messages;
pub mod migrations;
pub mod operations;
mod pool;
mod prepared;
pub mod push;
pub mod queue;
pub mod reseal;
pub mod retention;
pub mod schema;
#[cfg(feature = "testing")]
pub mod testing;
mod unnest;
pub mod views;

pub use diesel_async::AsyncPgConnection;
pub use error::DbError;
pub use json_text::JsonText;
pub use pool::{
    DEFAULT_STATEMENT_TIMEOUT, Pool, PoolSettings, PooledConn, connect_pool, lazy_pool, ping,
};
