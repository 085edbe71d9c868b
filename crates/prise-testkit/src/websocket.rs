//! A WebSocket client for tests: connect, send and receive JSON or text,
//! wait for a frame of one type or for the close code, each bounded; and a
//! hand-written upgrade for requests a client library will not send.

use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use prise_ws::{Message, WebSocket, WsConfig, WsError};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::WAIT;

/// `dGhlIHNhbXBsZSBub25jZQ==`, the key of RFC 6455's example handshake.
pub const SAMPLE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// A client-side WebSocket whose every read is bounded by its wait
/// ([`WAIT`] unless [`WsClient::with_wait`]).
///
/// It dereferences to the [`WebSocket`], so `send`/`next` of the sink and
/// stream traits and `get_ref` stay at hand for frames the helpers do not
/// cover.
#[derive(Debug)]
pub struct WsClient<S = TcpStream> {
    ws: WebSocket<S>,
    wait: Duration,
}

impl WsClient<TcpStream> {
    /// Connects to `ws://addr{path}` with the default configuration.
    ///
    /// # Panics
    /// When the connection or the handshake fails.
    pub async fn connect(addr: SocketAddr, path: &str) -> Self {
        Self::connect_with(addr, path, WsConfig::default()).await
    }

    /// Connects to `ws://addr{path}` with `config` (e.g. with deflate).
    ///
    /// # Panics
    /// When the connection or the handshake fails.
    pub async fn connect_with(addr: SocketAddr, path: &str, config: WsConfig) -> Self {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .unwrap_or_else(|_| panic!("connect to {addr} in time"))
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        Self::handshake(stream, &format!("ws://{addr}{path}"), config)
            .await
            .unwrap_or_else(|e| panic!("ws handshake with {addr}{path}: {e}"))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsClient<S> {
    /// The client handshake for `url` on a connected stream (TLS included).
    ///
    /// # Errors
    /// When the server refuses the upgrade or the stream fails.
    pub async fn handshake(stream: S, url: &str, config: WsConfig) -> Result<Self, WsError> {
        let (ws, _) = prise_ws::connect(stream, url, &Default::default(), config).await?;
        Ok(Self { ws, wait: WAIT })
    }

    /// The same client with another bound on each read.
    pub fn with_wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Sends `v` as a text frame.
    ///
    /// # Panics
    /// When the send fails.
    pub async fn send_json(&mut self, v: Value) {
        self.send_text(&v.to_string()).await;
    }

    /// Sends a text frame.
    ///
    /// # Panics
    /// When the send fails.
    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.expect("ws send");
    }

    /// The next item of the stream: `None` at its end.
    ///
    /// # Panics
    /// When nothing arrives within the wait.
    pub async fn next_item(&mut self) -> Option<Result<Message, WsError>> {
        tokio::time::timeout(self.wait, self.ws.next())
            .await
            .expect("a frame or the end arrives in time")
    }

    /// The next frame of any kind.
    ///
    /// # Panics
    /// When the stream ends or fails, or nothing arrives within the wait.
    pub async fn message(&mut self) -> Message {
        self.next_item()
            .await
            .expect("stream open")
            .expect("a frame")
    }

    /// The text of the next frame (empty when it is not text).
    pub async fn text(&mut self) -> String {
        self.message()
            .await
            .to_text()
            .unwrap_or_default()
            .to_owned()
    }

    /// The next JSON text frame, skipping control frames.
    ///
    /// # Panics
    /// On a close frame, the end of the stream or a timeout.
    pub async fn recv_json(&mut self) -> Value {
        loop {
            match self.message().await {
                Message::Text(t) => return serde_json::from_str(&t).expect("json"),
                Message::Close(c) => panic!("closed: {c:?}"),
                _ => {}
            }
        }
    }

    /// Reads JSON frames until one has `"type": t`; returns it.
    pub async fn until(&mut self, t: &str) -> Value {
        loop {
            let v = self.recv_json().await;
            if v["type"] == t {
                return v;
            }
        }
    }

    /// Reads until a close frame and returns its code; `None` when the
    /// stream ends (or fails) without one.
    pub async fn close_code(&mut self) -> Option<u16> {
        loop {
            match self.next_item().await {
                None | Some(Err(_)) => return None,
                Some(Ok(Message::Close(c))) => return c.map(|c| u16::from(c.code)),
                Some(Ok(_)) => {}
            }
        }
    }

    /// Reads until the stream ends or fails (within the wait, frames
    /// skipped); true if it did.
    pub async fn ended(&mut self) -> bool {
        let ws = &mut self.ws;
        tokio::time::timeout(self.wait, async {
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await
        .is_ok()
    }
}

impl<S> Deref for WsClient<S> {
    type Target = WebSocket<S>;

    fn deref(&self) -> &WebSocket<S> {
        &self.ws
    }
}

impl<S> DerefMut for WsClient<S> {
    fn deref_mut(&mut self) -> &mut WebSocket<S> {
        &mut self.ws
    }
}

/// Writes an upgrade request for `path` by hand (with `extra` header lines,
/// each ending in CRLF) and reads the response head.
///
/// For what a client library refuses to do: send invalid frames, offer
/// odd extensions, or read a refusal. Returns the stream, positioned after
/// the head, and the head itself.
///
/// # Panics
/// When the connection fails or the head does not arrive within [`WAIT`].
pub async fn raw_upgrade(addr: SocketAddr, path: &str, extra: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {SAMPLE_KEY}\r\n{extra}\r\n"
    );
    s.write_all(req.as_bytes()).await.expect("write upgrade");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        tokio::time::timeout(WAIT, s.read_exact(&mut b))
            .await
            .expect("response head in time")
            .expect("response head");
        head.push(b[0]);
    }
    (s, String::from_utf8_lossy(&head).into_owned())
}
