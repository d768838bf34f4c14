//! Talking to Dialpad: the REST and OAuth client with its typed bodies, PKCE, and the
//! credential an app's calls are made with (OAuth tokens refreshed under a row lock).
//!
//! Used by the api (onboarding, the OAuth flow); anything else that calls Dialpad (the worker,
//! for reconciliation or click-to-call) uses the same client and [`Credentials`], so the token
//! refresh exists once. The facts it relies on are in `docs/dialpad.md`.

mod bodies;
mod client;
mod credentials;
pub mod pkce;

pub use bodies::{Company, Subscription, TokenResponse, Webhook, WebhookSignature};
pub use client::{DialpadClient, DialpadError, Environment, OAuthApp, SubscriptionKind};
pub use credentials::{CredentialError, Credentials, token_expiry};
