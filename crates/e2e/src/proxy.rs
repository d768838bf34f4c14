//! A TCP proxy in front of Postgres that a test can cut and restore, to simulate an outage.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Forwards `127.0.0.1:<port>` to the Postgres server. While cut, every open connection is
/// dropped and new ones are closed at once, as when the database restarts.
#[derive(Debug, Clone)]
pub struct CuttableProxy {
    pub addr: SocketAddr,
    up: Arc<watch::Sender<bool>>,
}

impl CuttableProxy {
    /// Starts forwarding to `upstream` (`host:port`).
    pub async fn start(upstream: String) -> CuttableProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (up, _) = watch::channel(true);
        let up = Arc::new(up);
        let state = Arc::clone(&up);
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if !*state.borrow() {
                    continue; // Dropping `client` closes it.
                }
                let upstream = upstream.clone();
                let mut cut = state.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        CuttableProxy { addr, up }
    }

    /// Cuts every connection and refuses new ones until [`CuttableProxy::restore`].
    pub fn cut(&self) {
        self.up.send_replace(false);
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.up.send_replace(true);
    }

    /// `database_url` rewritten to go through this proxy.
    pub fn url_for(&self, database_url: &str) -> String {
        let (scheme_and_user, rest) = database_url.split_once('@').expect("URL has a host");
        let (_, path) = rest.split_once('/').expect("URL has a database");
        format!("{scheme_and_user}@{}/{path}", self.addr)
    }
}
