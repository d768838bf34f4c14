//! Talking to Dialpad: the HTTP client, OAuth with PKCE, and the credential an app's calls use.

mod client;
mod credentials;
pub(crate) mod pkce;

pub(crate) use client::{DialpadClient, DialpadError, Environment, OAuthApp, SubscriptionKind};
pub(crate) use credentials::{credential_for, token_expiry};
