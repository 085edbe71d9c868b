//! Real backends and a proxy on 127.0.0.1:0 for the integration tests; the
//! clients and bounded waits come from `prise-testkit`.
#![allow(dead_code, missing_docs)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prise_proxy::{CheckKind, Proxy, ProxyConfig, ProxyHandle};
// Each test binary uses its own part of these.
#[allow(unused_imports)]
pub(crate) use prise_testkit::{LineClient, WAIT, eventually};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A backend that answers every line `x` with `name:x` and counts the clients that sent
/// at least one line (health checks send nothing, so they are not counted).
pub(crate) struct TestBackend {
    pub addr: SocketAddr,
    pub name: String,
    pub served: watch::Receiver<usize>,
    task: JoinHandle<()>,
}

impl TestBackend {
    pub(crate) async fn start(name: &str) -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap(), name).await
    }

    pub(crate) async fn start_on(addr: SocketAddr, name: &str) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, served) = watch::channel(0usize);
        let n = name.to_owned();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                let tx = tx.clone();
                let n = n.clone();
                conns.spawn(async move {
                    let (r, mut w) = sock.into_split();
                    let mut lines = BufReader::new(r).lines();
                    let mut counted = false;
                    while let Ok(Some(line)) = lines.next_line().await {
                        if !counted {
                            counted = true;
                            tx.send_modify(|c| *c += 1);
                        }
                        if w.write_all(format!("{n}:{line}\n").as_bytes())
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                });
            }
        });
        Self {
            addr,
            name: name.to_owned(),
            served,
            task,
        }
    }

    pub(crate) fn served(&self) -> usize {
        *self.served.borrow()
    }

    /// Closes the listener and every connection (as a crashed server would).
    pub(crate) async fn kill(self) -> SocketAddr {
        self.task.abort();
        let _ = self.task.await;
        self.addr
    }
}

/// A proxy running in the background.
pub(crate) struct TestProxy {
    pub handle: ProxyHandle,
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<()>,
}

pub(crate) fn config(backends: &[SocketAddr]) -> ProxyConfig {
    let mut cfg = ProxyConfig::new("127.0.0.1:0".parse().unwrap(), backends.to_vec());
    cfg.check.kind = CheckKind::None;
    cfg
}

pub(crate) async fn spawn_proxy(cfg: ProxyConfig) -> TestProxy {
    let proxy = Proxy::bind(cfg).await.unwrap();
    let handle = proxy.handle();
    let addr = proxy.local_addr();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(proxy.run(shutdown.clone()));
    TestProxy {
        handle,
        addr,
        shutdown,
        task,
    }
}

/// A backend and a proxy configuration for it.
pub(crate) async fn one_backend(name: &str) -> (TestBackend, ProxyConfig) {
    let b = TestBackend::start(name).await;
    let cfg = config(&[b.addr]);
    (b, cfg)
}

/// Two backends and a proxy configuration for both, in that order.
pub(crate) async fn two_backends(x: &str, y: &str) -> (TestBackend, TestBackend, ProxyConfig) {
    let (x, y) = (TestBackend::start(x).await, TestBackend::start(y).await);
    let cfg = config(&[x.addr, y.addr]);
    (x, y, cfg)
}

/// The value of one of the proxy's counters.
pub(crate) fn count(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// Connects, sends one line and returns the name of the backend that answered.
pub(crate) async fn which_backend(addr: SocketAddr) -> String {
    let mut c = LineClient::connect(addr).await;
    let reply = c.reply("hi").await.expect("a reply through the proxy");
    reply.split(':').next().unwrap().to_owned()
}

/// Like [`which_backend`], from source address `src`.
pub(crate) async fn which_backend_from(addr: SocketAddr, src: std::net::IpAddr) -> String {
    let mut c = LineClient::connect_from(addr, src).await;
    let reply = c.reply("hi").await.expect("a reply through the proxy");
    reply.split(':').next().unwrap().to_owned()
}

/// Sends one HTTP/1.1 request and returns the status code and body.
pub(crate) async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let r = prise_testkit::HttpRequest::new(method, path)
        .header("Content-Type", "application/json")
        .body(body)
        .send(addr)
        .await;
    (r.status, r.text().to_owned())
}

/// Waits (bounded) until a backend's up flag equals `up`.
pub(crate) async fn wait_state(rx: &mut watch::Receiver<bool>, up: bool, bound: Duration) -> bool {
    tokio::time::timeout(bound, rx.wait_for(|v| *v == up))
        .await
        .is_ok_and(|r| r.is_ok())
}
