#![doc = include_str!("../README.md")]

mod apply;
mod listener;
mod metrics;
mod push;
pub mod settings;
mod worker;

pub use settings::Settings;
pub use worker::{BatchReport, Worker};
