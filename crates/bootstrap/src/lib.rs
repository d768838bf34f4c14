#![doc = include_str!("../README.md")]

pub mod cli;
pub mod http;
pub mod metrics;
pub mod settings;
pub mod shutdown;
pub mod telemetry;
