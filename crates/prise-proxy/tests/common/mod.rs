//! Real backends and a proxy on 127.0.0.1:0 for the integration tests.
#![allow(dead_code, missing_docs)]

use std::net::SocketAddr;
use std::time::Duration;

use prise_proxy::{CheckKind, Proxy, ProxyConfig, ProxyHandle};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Bound on every wait in the tests.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

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

/// A client connection that speaks lines.
pub(crate) struct LineClient {
    r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
}

impl LineClient {
    pub(crate) async fn connect(addr: SocketAddr) -> Self {
        let s = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .unwrap()
            .unwrap();
        Self::from_stream(s)
    }

    /// Connects from source address `src` (any of 127.0.0.0/8 works on Linux loopback).
    pub(crate) async fn connect_from(addr: SocketAddr, src: std::net::IpAddr) -> Self {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(SocketAddr::new(src, 0)).unwrap();
        let s = tokio::time::timeout(WAIT, sock.connect(addr))
            .await
            .unwrap()
            .unwrap();
        Self::from_stream(s)
    }

    pub(crate) fn from_stream(s: TcpStream) -> Self {
        let (r, w) = s.into_split();
        Self {
            r: BufReader::new(r),
            w,
        }
    }

    /// Sends `line` and returns the reply line, or `None` if the connection closed.
    pub(crate) async fn ask(&mut self, line: &str) -> Option<String> {
        self.w
            .write_all(format!("{line}\n").as_bytes())
            .await
            .ok()?;
        let mut reply = String::new();
        let n = tokio::time::timeout(WAIT, self.r.read_line(&mut reply))
            .await
            .expect("reply within the wait bound")
            .ok()?;
        (n > 0).then(|| reply.trim_end().to_owned())
    }

    /// Reads one line as it comes (without sending anything); 0 at end of stream.
    pub(crate) async fn read_line(&mut self, out: &mut String) -> usize {
        self.r.read_line(out).await.unwrap_or(0)
    }

    /// Waits for the connection to be closed by the far side (bounded).
    pub(crate) async fn closed(&mut self) -> bool {
        let mut buf = [0u8; 64];
        matches!(
            tokio::time::timeout(WAIT, self.r.read(&mut buf)).await,
            Ok(Ok(0) | Err(_))
        )
    }
}

/// Connects, sends one line and returns the name of the backend that answered.
pub(crate) async fn which_backend(addr: SocketAddr) -> String {
    let mut c = LineClient::connect(addr).await;
    let reply = c.ask("hi").await.expect("a reply through the proxy");
    reply.split(':').next().unwrap().to_owned()
}

/// Like [`which_backend`], from source address `src`.
pub(crate) async fn which_backend_from(addr: SocketAddr, src: std::net::IpAddr) -> String {
    let mut c = LineClient::connect_from(addr, src).await;
    let reply = c.ask("hi").await.expect("a reply through the proxy");
    reply.split(':').next().unwrap().to_owned()
}

/// Sends one HTTP/1.1 request and returns the status code and body.
pub(crate) async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    (code, body.to_owned())
}

/// Waits (bounded) until a backend's up flag equals `up`.
pub(crate) async fn wait_state(rx: &mut watch::Receiver<bool>, up: bool, bound: Duration) -> bool {
    tokio::time::timeout(bound, rx.wait_for(|v| *v == up))
        .await
        .is_ok_and(|r| r.is_ok())
}

/// Waits (bounded) until `cond` holds, for state another thread updates without an event.
pub(crate) async fn eventually(cond: impl Fn() -> bool) -> bool {
    tokio::time::timeout(WAIT, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .is_ok()
}
