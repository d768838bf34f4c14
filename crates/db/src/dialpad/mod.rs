//! What we hold about each app's Dialpad account: its connection (sealed OAuth tokens or API
//! key), the webhooks and subscriptions we created there, and pending OAuth states.
//!
//! Every secret is sealed with [`Keyring`] and bound to its row (see [`crate::crypto`]).

mod connections;
mod oauth;
mod subscriptions;
mod webhooks;

pub use connections::{
    AUTH_API_KEY, AUTH_OAUTH, Connection, OAuthTokens, STATUS_ACTIVE, STATUS_REAUTH_REQUIRED,
};
pub use oauth::{ConnectLink, ConsumedLink, ConsumedState, NewState, OAuthState, StateRejection};
pub use subscriptions::DialpadSubscription;
pub use webhooks::{DialpadWebhook, NewDialpadWebhook};
