#![doc = include_str!("../README.md")]

pub mod backoff;
pub mod call;
pub mod event;
pub mod json;
pub mod logical_call;
pub mod push;
pub mod sms;
