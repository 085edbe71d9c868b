//! `prise serve` in this process: one server on the test's runtime
//! ([`TestServer`]), or nodes of a cluster on runtimes of their own that a
//! test can kill like `kill -9` ([`Node`]); the hub's clients; and a
//! `redis-server` for the cluster tests ([`RedisServer`]).

mod node;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;

use prise_server::{CancellationToken, ServeArgs, ServeError};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use node::Node;
pub use prise_hub::testing::RedisServer;
pub use prise_server::Bound;

use crate::{LineClient, WAIT, WsClient};

/// How the hub's line protocol greets every client.
pub const HUB_GREETING: &str = "HELLO prise/";

/// A server on the test's runtime, on loopback ports picked by the OS.
#[derive(Debug)]
pub struct TestServer {
    /// Where it listens.
    pub bound: Bound,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), ServeError>>,
}

impl TestServer {
    /// Cancels it and waits (bounded) for a clean stop.
    ///
    /// # Panics
    /// When it does not stop in time or ends with an error.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("server stops within the deadline")
            .expect("server task")
            .expect("server result");
    }

    /// A line-protocol client past the greeting.
    pub async fn line(&self) -> LineClient {
        hub_line(self.bound.tcp).await
    }

    /// A WebSocket client of `/ws`.
    pub async fn ws(&self) -> WsClient {
        hub_ws(self.bound.http, "").await
    }

    /// A WebSocket client of `/ws{query}` (e.g. `?token=…`).
    pub async fn ws_query(&self, query: &str) -> WsClient {
        hub_ws(self.bound.http, query).await
    }
}

/// Starts a server with `extra` flags on loopback ports picked by the OS;
/// without `--store` in `extra`, on a memory store.
///
/// # Panics
/// When the flags do not parse or it does not report its addresses in time.
pub async fn spawn_server(extra: &[&str]) -> TestServer {
    let mut flags = loopback_flags();
    if !extra.contains(&"--store") {
        flags.extend(["--store".to_owned(), "memory".to_owned()]);
    }
    flags.extend(extra.iter().map(|s| (*s).to_owned()));
    let shutdown = CancellationToken::new();
    let (serving, bound) = serve(flags, shutdown.clone());
    let task = tokio::spawn(serving);
    TestServer {
        bound: started(bound).await,
        shutdown,
        task,
    }
}

/// [`spawn_server`] on a SQLite store in `dir`.
pub async fn spawn_sqlite_server(dir: &Path, extra: &[&str]) -> TestServer {
    let data = dir.to_str().expect("a UTF-8 path");
    let mut flags = vec!["--store", "sqlite", "--data", data];
    flags.extend_from_slice(extra);
    spawn_server(&flags).await
}

/// A line-protocol client of the hub at `addr`, past the greeting.
pub async fn hub_line(addr: SocketAddr) -> LineClient {
    LineClient::connect(addr).await.hello(HUB_GREETING).await
}

/// A WebSocket client of the hub's `/ws{query}` at `addr`.
pub async fn hub_ws(addr: SocketAddr, query: &str) -> WsClient {
    WsClient::connect(addr, &format!("/ws{query}")).await
}

/// The addresses a server reports once it listens (bounded by [`WAIT`]).
///
/// # Panics
/// When it does not start in time, or fails before it listens.
async fn started(bound: oneshot::Receiver<Bound>) -> Bound {
    tokio::time::timeout(WAIT, bound)
        .await
        .expect("server starts in time")
        .expect("server reports its addresses")
}

/// `--http` and `--tcp` on loopback ports picked by the OS.
fn loopback_flags() -> Vec<String> {
    ["--http", "127.0.0.1:0", "--tcp", "127.0.0.1:0"]
        .map(str::to_owned)
        .to_vec()
}

/// The server's future for `flags`, and where its addresses arrive once
/// both listeners are bound.
fn serve(
    flags: Vec<String>,
    shutdown: CancellationToken,
) -> (
    impl Future<Output = Result<(), ServeError>> + Send + 'static,
    oneshot::Receiver<Bound>,
) {
    let args = ServeArgs::from_flags(flags).expect("flags");
    let (tx, rx) = oneshot::channel();
    let serving = async move {
        prise_server::run(args, shutdown, move |b| {
            let _ = tx.send(b);
        })
        .await
    };
    (serving, rx)
}
