//! Shared helpers: a real server on 127.0.0.1:0 and real clients.
#![allow(dead_code)]

pub(crate) mod node;
pub(crate) mod sse;

use futures_util::{SinkExt, StreamExt};
use prise_server::{Bound, CancellationToken, ServeArgs};
use prise_ws::{Message, WebSocket};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Every wait in these tests is bounded by this.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

pub(crate) struct TestServer {
    pub bound: Bound,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<Result<(), prise_server::ServeError>>,
}

impl TestServer {
    pub(crate) async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("server stops within the deadline")
            .expect("server task")
            .expect("server result");
    }
}

/// Starts a server with `extra` flags on loopback ports picked by the OS.
/// Without `--store`/`--data` in `extra`, a memory store is used.
pub(crate) async fn spawn_server(extra: &[&str]) -> TestServer {
    let mut flags = vec!["--http", "127.0.0.1:0", "--tcp", "127.0.0.1:0"];
    if !extra.contains(&"--store") {
        flags.extend(["--store", "memory"]);
    }
    flags.extend_from_slice(extra);
    let args = ServeArgs::from_flags(flags).expect("flags");
    let shutdown = CancellationToken::new();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let token = shutdown.clone();
    let task = tokio::spawn(async move {
        prise_server::run(args, token, move |b| {
            let _ = tx.send(b);
        })
        .await
    });
    let bound = tokio::time::timeout(WAIT, rx)
        .await
        .expect("server starts")
        .expect("server reports its addresses");
    TestServer {
        bound,
        shutdown,
        task,
    }
}

pub(crate) async fn spawn_sqlite_server(dir: &Path, extra: &[&str]) -> TestServer {
    let data = dir.to_str().expect("utf-8 path").to_owned();
    let mut flags = vec!["--store", "sqlite", "--data"];
    let data: &'static str = Box::leak(data.into_boxed_str());
    flags.push(data);
    flags.extend_from_slice(extra);
    spawn_server(&flags).await
}

/// A line-protocol client.
pub(crate) struct LineClient {
    pub reader: BufReader<OwnedReadHalf>,
    pub writer: OwnedWriteHalf,
    pub greeting: String,
}

impl LineClient {
    pub(crate) async fn connect(server: &TestServer) -> Self {
        let stream = TcpStream::connect(server.bound.tcp)
            .await
            .expect("tcp connect");
        Self::from_stream(stream).await
    }

    pub(crate) async fn from_stream(stream: TcpStream) -> Self {
        let (r, w) = stream.into_split();
        let mut c = Self {
            reader: BufReader::new(r),
            writer: w,
            greeting: String::new(),
        };
        c.greeting = c.line().await.expect("greeting");
        assert!(c.greeting.starts_with("HELLO prise/"), "{}", c.greeting);
        c
    }

    pub(crate) async fn send(&mut self, line: &str) {
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write");
    }

    /// The next line, or None at end of stream.
    pub(crate) async fn line(&mut self) -> Option<String> {
        let mut s = String::new();
        let n = tokio::time::timeout(WAIT, self.reader.read_line(&mut s))
            .await
            .expect("a line arrives in time")
            .ok()?;
        if n == 0 {
            return None;
        }
        Some(s.trim_end_matches(['\r', '\n']).to_owned())
    }

    /// Reads lines until one starts with `prefix`; returns it.
    pub(crate) async fn until(&mut self, prefix: &str) -> String {
        loop {
            let l = self
                .line()
                .await
                .unwrap_or_else(|| panic!("stream ended before {prefix}"));
            if l.starts_with(prefix) {
                return l;
            }
        }
    }

    /// Sends a command and returns the first line starting with `prefix`.
    pub(crate) async fn ask(&mut self, line: &str, prefix: &str) -> String {
        self.send(line).await;
        self.until(prefix).await
    }
}

pub(crate) type Ws = WebSocket<TcpStream>;

pub(crate) async fn ws_connect(server: &TestServer) -> Ws {
    let stream = TcpStream::connect(server.bound.http)
        .await
        .expect("connect");
    let url = format!("ws://{}/ws", server.bound.http);
    let (ws, _) = prise_ws::connect(stream, &url, &Default::default(), Default::default())
        .await
        .expect("ws handshake");
    ws
}

pub(crate) async fn ws_send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string()))
        .await
        .expect("ws send");
}

/// The next JSON text frame; panics on close or timeout.
pub(crate) async fn ws_recv(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame arrives in time")
            .expect("stream open")
            .expect("frame");
        match m {
            Message::Text(t) => return serde_json::from_str(&t).expect("json"),
            Message::Close(c) => panic!("closed: {c:?}"),
            _ => {}
        }
    }
}

/// Reads frames until one has `type == t`.
pub(crate) async fn ws_until(ws: &mut Ws, t: &str) -> Value {
    loop {
        let v = ws_recv(ws).await;
        if v["type"] == t {
            return v;
        }
    }
}

/// Reads until a close frame; returns its code (None if the stream just ended).
pub(crate) async fn ws_close_code(ws: &mut Ws) -> Option<u16> {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("close in time")
        {
            None => return None,
            Some(Err(_)) => return None,
            Some(Ok(Message::Close(c))) => return c.map(|c| u16::from(c.code)),
            Some(Ok(_)) => {}
        }
    }
}
