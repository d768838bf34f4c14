#![doc = include_str!("../README.md")]

mod apply;
mod listener;
pub mod settings;
mod worker;

pub use settings::Settings;
pub use worker::{BatchReport, Worker};
