//! A node of a cluster on its own runtime and thread, so a test can kill it
//! like `kill -9`: its runtime is dropped without any graceful step
//! (sockets close, heartbeats stop, nothing is cleaned up in Redis).

use std::sync::mpsc;
use std::thread::JoinHandle;

use prise_server::CancellationToken;

use super::{Bound, hub_line, hub_ws, loopback_flags, serve, started};
use crate::{LineClient, WsClient};

/// A node; stopped gracefully when dropped unless it was killed.
#[derive(Debug)]
pub struct Node {
    /// Where it listens.
    pub bound: Bound,
    /// true: kill; false: graceful stop.
    stop: Option<mpsc::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
}

impl Node {
    /// Starts a node on Redis at `redis` with key prefix `prefix`, a
    /// presence TTL of 1 s, a shutdown timeout of 2 s and `extra` flags.
    ///
    /// # Panics
    /// When it does not report its addresses in time.
    pub async fn spawn(redis: &str, prefix: &str, extra: &[&str]) -> Node {
        let mut flags = loopback_flags();
        flags.extend(
            [
                "--redis",
                redis,
                "--redis-prefix",
                prefix,
                "--presence-ttl",
                "1s",
                "--shutdown-timeout",
                "2s",
            ]
            .map(str::to_owned),
        );
        flags.extend(extra.iter().map(|s| (*s).to_owned()));
        let (stop_tx, stop_rx) = mpsc::channel::<bool>();
        let token = CancellationToken::new();
        let (serving, bound) = serve(flags, token.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("runtime");
            let task = rt.spawn(serving);
            // true (or the test going away): kill; false: graceful stop.
            if stop_rx.recv().unwrap_or(true) {
                rt.shutdown_background();
            } else {
                token.cancel();
                let _ = rt.block_on(task);
            }
        });
        Node {
            bound: started(bound).await,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// `n` nodes sharing Redis at `redis` and key prefix `prefix`.
    pub async fn cluster(redis: &str, prefix: &str, n: usize) -> Vec<Node> {
        let mut nodes = Vec::with_capacity(n);
        for _ in 0..n {
            nodes.push(Node::spawn(redis, prefix, &[]).await);
        }
        nodes
    }

    /// Like `kill -9`: the runtime is dropped, nothing graceful runs.
    pub fn kill(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(true);
        }
        if let Some(t) = self.thread.take() {
            t.join().expect("node thread");
        }
    }

    /// A line-protocol client past the greeting.
    pub async fn line(&self) -> LineClient {
        hub_line(self.bound.tcp).await
    }

    /// A WebSocket client of `/ws`.
    pub async fn ws(&self) -> WsClient {
        hub_ws(self.bound.http, "").await
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(false);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
