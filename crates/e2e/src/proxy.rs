//! A TCP proxy in front of Postgres that a test can cut and restore, to simulate an outage, and
//! that counts what its clients send (to see whether requests cost database queries).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Forwards `127.0.0.1:<port>` to the Postgres server. While cut, every open connection is
/// dropped and new ones are closed at once, as when the database restarts.
#[derive(Debug, Clone)]
pub struct CuttableProxy {
    pub addr: SocketAddr,
    up: Arc<watch::Sender<bool>>,
    sent: Arc<AtomicU64>,
}

impl CuttableProxy {
    /// Starts forwarding to `upstream` (`host:port`).
    pub async fn start(upstream: String) -> CuttableProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (up, _) = watch::channel(true);
        let up = Arc::new(up);
        let state = Arc::clone(&up);
        let sent = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&sent);
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
                let counter = Arc::clone(&counter);
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (mut from_client, mut to_client) = client.split();
                    let (mut from_server, mut to_server) = server.into_split();
                    let upward = async {
                        let mut buffer = vec![0_u8; 16 * 1024];
                        while let Ok(n @ 1..) = from_client.read(&mut buffer).await {
                            counter.fetch_add(n as u64, Ordering::Relaxed);
                            if to_server.write_all(&buffer[..n]).await.is_err() {
                                break;
                            }
                        }
                    };
                    tokio::select! {
                        () = upward => {}
                        _ = tokio::io::copy(&mut from_server, &mut to_client) => {}
                        _ = cut.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        CuttableProxy { addr, up, sent }
    }

    /// Starts forwarding to the server of `database_url` (`postgres://user@host:port/db`).
    pub async fn in_front_of(database_url: &str) -> CuttableProxy {
        let server = database_url
            .split_once('@')
            .and_then(|(_, rest)| rest.split_once('/'))
            .map(|(host, _)| host.to_owned())
            .expect("the URL names host:port");
        Self::start(server).await
    }

    /// Bytes the clients have sent to Postgres so far (queries and their parameters).
    pub fn bytes_to_server(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
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
