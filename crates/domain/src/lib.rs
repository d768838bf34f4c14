#![doc = include_str!("../README.md")]

pub mod backoff;
pub mod call;
pub mod event;
pub mod json;
