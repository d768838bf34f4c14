//! Wake-ups: a dedicated connection that `LISTEN`s on a channel (the queue's, the push
//! deliveries').

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use db::changes;

/// Listens until `shutdown`, waking the batch loops that take new events (`wakes`) on every
/// notification. Reconnects with backoff when the connection drops, and wakes the loops after
/// each (re)connect, because notifications sent while disconnected are lost; the loops' poll
/// covers any other gap.
pub(crate) async fn listen(
    database_url: SecretString,
    channel: &'static str,
    wakes: Vec<Arc<Notify>>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    while !shutdown.is_cancelled() {
        match changes::listen_connection(database_url.expose_secret(), channel).await {
            Ok(mut conn) => {
                backoff = Duration::from_millis(100);
                wake_all(&wakes);
                let notifications = conn.notifications_stream();
                let mut notifications = std::pin::pin!(notifications);
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        next = notifications.next() => match next {
                            Some(Ok(_)) => wake_all(&wakes),
                            Some(Err(error)) => {
                                tracing::warn!(error = %error, "Queue listener lost its connection.");
                                break;
                            }
                            None => break,
                        },
                    }
                }
            }
            Err(error) => {
                tracing::warn!(error = %error, "Queue listener cannot connect; polling meanwhile.")
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Wakes every batch loop (a loop busy with a batch keeps the wake-up for when it is done).
fn wake_all(wakes: &[Arc<Notify>]) {
    for wake in wakes {
        wake.notify_one();
    }
}
