//! The WebSocket stack shared by the hub (`prise serve`) and the toolkit
//! (`prise connect ws://…`, `prise echo ws://…`).
//!
//! # Design
//!
//! Every WebSocket in prise goes through this crate so that frame limits, buffer
//! sizes and close codes are decided in one place. The framing itself is
//! `tungstenite`'s (RFC 6455, Autobahn-clean); this crate adds:
//!
//! - [`WsConfig`]: every size a peer controls, capped, with documented defaults;
//! - [`upgrade`]: the server side of the HTTP/1.1 upgrade for a request already
//!   parsed by hyper (or axum), so the hub serves `/ws` and `/socket.io/` on the
//!   same port as its page and metrics;
//! - [`accept`] and [`connect`]: handshakes over any byte stream (plain TCP or
//!   TLS), for the toolkit's listeners and clients;
//! - [`close_code`]: the close codes of the protocol contract, named;
//! - permessage-deflate (RFC 7692), off unless [`WsConfig::deflate`] is set:
//!   [`extension`] negotiates it in the handshakes, [`deflate`] compresses and
//!   inflates, [`WsIo`] runs the codec between the socket and tungstenite.
//!
//! ```text
//!  hyper request ──upgrade()──▶ (101 response, PendingUpgrade) ──finish()──▶ WebSocket
//!  TcpStream/TlsStream ──accept()/connect()──────────────────────────────▶ WebSocket
//!
//!  WebSocket<S> = tungstenite framing ─▶ WsIo<S> ─[deflate codec if negotiated]─▶ S
//! ```
//!
//! # Why permessage-deflate is a layer beneath tungstenite
//!
//! tungstenite has no permessage-deflate and refuses frames with RSV1 set.
//! Rather than switching every caller to another engine (yawc has the
//! extension, but a different API, and declines several offers in one
//! header), the extension is a small frame-rewriting layer under tungstenite:
//! inbound compressed frames are inflated and handed up as plain frames,
//! outbound data frames are compressed on their way to the socket. Framing,
//! UTF-8 checks, control frames and the close handshake stay tungstenite's,
//! Autobahn-clean; the public types stay `tokio-tungstenite`'s, so callers only
//! name the stream type [`WebSocket`]. Inflation is streamed in 16 KiB steps
//! and stops as soon as a message passes `max_message_size`, which surfaces as
//! the same [`WsError::Capacity`] as any oversize message (close 1009).
//! Compression uses `flate2` on the pure-Rust zlib-rs backend (window bits
//! need a zlib API; no C library).
//!
//! Memory: buffers start small and grow only while a large frame is in flight,
//! so an idle connection costs little (see `docs/PERFORMANCE.md`). A
//! connection without the extension carries one empty `Option` for it; the
//! compression state (about 300 KiB with the default window) is allocated
//! only when the handshake agreed on it.
#![warn(clippy::unwrap_used)]

pub mod deflate;
pub mod extension;
mod io;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
pub use tokio_tungstenite::WebSocketStream;
pub use tokio_tungstenite::tungstenite::error::ProtocolError;
pub use tokio_tungstenite::tungstenite::protocol::CloseFrame;
pub use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
pub use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::tungstenite::{
    client::IntoClientRequest, handshake::derive_accept_key, protocol::Role,
    protocol::WebSocketConfig,
};

use crate::deflate::Side;
pub use crate::extension::{DeflateConfig, Negotiated, NegotiationError};
pub use crate::io::WsIo;

/// A WebSocket over the stream `S`: tungstenite's framing on [`WsIo`], which
/// adds permessage-deflate when the handshake agreed on it.
pub type WebSocket<S> = WebSocketStream<WsIo<S>>;

/// A WebSocket over a stream upgraded from an HTTP/1.1 request.
pub type UpgradedWebSocket = WebSocket<TokioIo<hyper::upgrade::Upgraded>>;

/// Default cap on one message (after reassembly of fragments): 1 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 1 << 20;
/// Default cap on one frame: 1 MiB.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 1 << 20;
/// Default size of each read from the socket. Small, so an idle connection
/// holds little memory (the buffer is reserved per connection); large
/// messages still arrive, in more reads.
pub const DEFAULT_READ_BUFFER_SIZE: usize = 1024;
/// Default size up to which frames fed without a flush are held back, so that
/// a backlog of frames leaves in one `write(2)` at the next flush (corked
/// writes). Every caller flushes after feeding, so nothing waits longer than
/// its own batch; the buffer only grows while a batch is being written.
pub const DEFAULT_WRITE_BUFFER_SIZE: usize = 64 * 1024;
/// Default cap on bytes waiting to be written. A peer that stops reading makes
/// writes fail with [`WsError::WriteBufferFull`] instead of growing memory.
pub const DEFAULT_MAX_WRITE_BUFFER_SIZE: usize = 4 << 20;

/// Longest WebSocket frame header (2 + 8 length bytes + 4 mask bytes).
const MAX_FRAME_HEADER: usize = 14;

/// Close codes used by prise (RFC 6455 §7.4 and the hub's own 4xxx codes).
pub mod close_code {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The server is going away (shutdown).
    pub const GOING_AWAY: u16 = 1001;
    /// A frame violated the protocol.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A text frame was not valid UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// A policy was violated (rate, slow consumer, bad request).
    pub const POLICY: u16 = 1008;
    /// A message was larger than the configured cap.
    pub const TOO_BIG: u16 = 1009;
    /// The server hit an unexpected condition.
    pub const INTERNAL_ERROR: u16 = 1011;
    /// The server is full or overloaded: try again later.
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// Authentication failed or expired.
    pub const AUTH: u16 = 4001;
}

/// Limits and buffer sizes of one WebSocket. Every size the peer controls is capped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct WsConfig {
    /// Largest message accepted, after reassembly; larger ones close with 1009.
    pub max_message_size: usize,
    /// Largest single frame accepted.
    pub max_frame_size: usize,
    /// Bytes asked of the socket per read.
    pub read_buffer_size: usize,
    /// Bytes of fed frames held back before a write reaches the socket; a
    /// flush writes whatever is held (0 writes each message at once).
    pub write_buffer_size: usize,
    /// Most bytes buffered for writing before writes fail.
    pub max_write_buffer_size: usize,
    /// permessage-deflate (RFC 7692): `None` (the default) neither offers nor
    /// accepts it. Inflated messages are capped by `max_message_size` like any
    /// other, checked as they inflate.
    pub deflate: Option<DeflateConfig>,
}

impl WsConfig {
    /// The defaults, with messages and frames capped at `max_message`
    /// bytes and permessage-deflate as given.
    pub fn capped(max_message: usize, deflate: Option<DeflateConfig>) -> Self {
        Self {
            max_message_size: max_message,
            max_frame_size: max_message,
            deflate,
            ..Self::default()
        }
    }

    /// The same settings with permessage-deflate offered and accepted.
    pub fn with_deflate(mut self, deflate: DeflateConfig) -> Self {
        self.deflate = Some(deflate);
        self
    }
}

impl Default for WsConfig {
    fn default() -> Self {
        Self {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            read_buffer_size: DEFAULT_READ_BUFFER_SIZE,
            write_buffer_size: DEFAULT_WRITE_BUFFER_SIZE,
            max_write_buffer_size: DEFAULT_MAX_WRITE_BUFFER_SIZE,
            deflate: None,
        }
    }
}

impl WsConfig {
    fn tungstenite(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            .read_buffer_size(self.read_buffer_size)
            .write_buffer_size(self.write_buffer_size)
            // The write buffer must hold at least one whole message of the
            // largest size allowed (plus its frame header), or echoing one
            // fails with WriteBufferFull.
            .max_write_buffer_size(
                self.max_write_buffer_size
                    .max(self.write_buffer_size + 1)
                    .max(self.max_message_size.saturating_add(MAX_FRAME_HEADER)),
            )
            .max_message_size(Some(self.max_message_size))
            .max_frame_size(Some(self.max_frame_size))
    }
}

/// Why an HTTP request could not be upgraded to a WebSocket.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UpgradeError {
    /// The request is not a GET.
    #[error("websocket upgrade needs GET")]
    NotGet,
    /// `Connection: upgrade` / `Upgrade: websocket` are missing.
    #[error("not a websocket upgrade request")]
    NotUpgrade,
    /// `Sec-WebSocket-Version` is not 13.
    #[error("unsupported websocket version")]
    BadVersion,
    /// `Sec-WebSocket-Key` is missing.
    #[error("missing sec-websocket-key")]
    MissingKey,
    /// The connection cannot be upgraded (e.g. HTTP/2 without extended CONNECT).
    #[error("connection cannot be upgraded")]
    NotUpgradable,
}

impl UpgradeError {
    /// The HTTP status that answers this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotGet => StatusCode::METHOD_NOT_ALLOWED,
            Self::BadVersion => StatusCode::UPGRADE_REQUIRED,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// An accepted upgrade whose 101 response has not been sent yet.
///
/// Return the response to hyper first, then await [`PendingUpgrade::finish`].
pub struct PendingUpgrade {
    on_upgrade: hyper::upgrade::OnUpgrade,
    config: WsConfig,
    deflate: Option<Negotiated>,
}

impl std::fmt::Debug for PendingUpgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingUpgrade")
            .field("config", &self.config)
            .field("deflate", &self.deflate)
            .finish()
    }
}

impl PendingUpgrade {
    /// Waits for hyper to hand over the connection and wraps it as a WebSocket.
    ///
    /// # Errors
    /// Fails when the client went away before the upgrade completed.
    pub async fn finish(self) -> Result<UpgradedWebSocket, hyper::Error> {
        let upgraded = self.on_upgrade.await?;
        let io = WsIo::framed(
            TokioIo::new(upgraded),
            Side::Server,
            self.deflate,
            self.config.max_message_size,
            self.config.max_frame_size,
        );
        Ok(
            WebSocketStream::from_raw_socket(io, Role::Server, Some(self.config.tungstenite()))
                .await,
        )
    }
}

fn header_has_token(value: Option<&HeaderValue>, token: &str) -> bool {
    value
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// Is this request a WebSocket upgrade (GET with `Upgrade: websocket`)?
pub fn is_upgrade_request<B>(req: &Request<B>) -> bool {
    req.method() == http::Method::GET
        && header_has_token(req.headers().get(header::UPGRADE), "websocket")
}

/// Validates a WebSocket upgrade request and prepares the 101 response.
///
/// `protocol` is the subprotocol to answer with, if the caller chose one.
///
/// # Errors
/// An [`UpgradeError`] when the request is not a valid RFC 6455 opening handshake;
/// [`UpgradeError::status`] gives the HTTP status to answer with.
pub fn upgrade<B>(
    req: &mut Request<B>,
    config: WsConfig,
    protocol: Option<&str>,
) -> Result<(Response<Empty<Bytes>>, PendingUpgrade), UpgradeError> {
    if req.method() != http::Method::GET {
        return Err(UpgradeError::NotGet);
    }
    let headers = req.headers();
    if !header_has_token(headers.get(header::CONNECTION), "upgrade")
        || !header_has_token(headers.get(header::UPGRADE), "websocket")
    {
        return Err(UpgradeError::NotUpgrade);
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err(UpgradeError::BadVersion);
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or(UpgradeError::MissingKey)?;
    let accept = derive_accept_key(key.as_bytes());
    let on_upgrade = req
        .extensions_mut()
        .remove::<hyper::upgrade::OnUpgrade>()
        .ok_or(UpgradeError::NotUpgradable)?;
    let mut builder = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept);
    if let Some(p) = protocol {
        builder = builder.header(header::SEC_WEBSOCKET_PROTOCOL, p);
    }
    let deflate = negotiate(req.headers(), &config);
    if let Some((answer, _)) = &deflate {
        builder = builder.header(header::SEC_WEBSOCKET_EXTENSIONS, answer.as_str());
    }
    // The builder only fails on invalid header values; every value above is
    // either static or base64 (the accept key), so this cannot fail.
    let response = builder
        .body(Empty::new())
        .unwrap_or_else(|_| Response::new(Empty::new()));
    Ok((
        response,
        PendingUpgrade {
            on_upgrade,
            config,
            deflate: deflate.map(|(_, n)| n),
        },
    ))
}

/// Server side of permessage-deflate: the answer header and agreed parameters,
/// when `config` enables the extension and the request offers it acceptably.
fn negotiate(headers: &http::HeaderMap, config: &WsConfig) -> Option<(String, Negotiated)> {
    let deflate = config.deflate.as_ref()?;
    let offers = headers
        .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|v| v.to_str().ok());
    extension::accept_offer(offers, deflate)
}

/// Accepts a WebSocket opening handshake on a raw stream (server side).
///
/// # Errors
/// Fails when the peer's handshake is invalid or the stream fails.
pub async fn accept<S>(stream: S, config: WsConfig) -> Result<WebSocket<S>, WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut agreed = None;
    // The error type is tungstenite's (an HTTP response); this callback never fails.
    #[allow(clippy::result_large_err)]
    let callback = |req: &http::Request<()>, mut resp: http::Response<()>| {
        if let Some((answer, n)) = negotiate(req.headers(), &config) {
            // The answer is built from tokens and digits only.
            if let Ok(v) = HeaderValue::from_str(&answer) {
                resp.headers_mut()
                    .insert(header::SEC_WEBSOCKET_EXTENSIONS, v);
                agreed = Some(n);
            }
        }
        Ok(resp)
    };
    let mut ws = tokio_tungstenite::accept_hdr_async_with_config(
        WsIo::handshaking(stream),
        callback,
        Some(config.tungstenite()),
    )
    .await?;
    ws.get_mut().start(
        Side::Server,
        agreed,
        config.max_message_size,
        config.max_frame_size,
    );
    Ok(ws)
}

/// Options of a client handshake.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ClientOptions {
    /// Extra request headers (name, value).
    pub headers: Vec<(String, String)>,
    /// Subprotocols to offer in `Sec-WebSocket-Protocol`.
    pub subprotocols: Vec<String>,
}

/// Performs the client opening handshake for `url` (`ws://` or `wss://`) over
/// an already connected stream (plain or TLS; the caller owns TLS).
///
/// Returns the socket and the subprotocol the server chose, if any.
///
/// # Errors
/// Fails on an invalid URL or header, a refused handshake or a stream error.
pub async fn connect<S>(
    stream: S,
    url: &str,
    options: &ClientOptions,
    config: WsConfig,
) -> Result<(WebSocket<S>, Option<String>), WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut request = url.into_client_request()?;
    for (name, value) in &options.headers {
        let name = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| WsError::HttpFormat(e.into()))?;
        let value = HeaderValue::from_str(value).map_err(|e| WsError::HttpFormat(e.into()))?;
        request.headers_mut().append(name, value);
    }
    if !options.subprotocols.is_empty() {
        let value = HeaderValue::from_str(&options.subprotocols.join(", "))
            .map_err(|e| WsError::HttpFormat(e.into()))?;
        request
            .headers_mut()
            .insert(header::SEC_WEBSOCKET_PROTOCOL, value);
    }
    if let Some(deflate) = &config.deflate {
        let value = HeaderValue::from_str(&extension::offer(deflate))
            .map_err(|e| WsError::HttpFormat(e.into()))?;
        request
            .headers_mut()
            .insert(header::SEC_WEBSOCKET_EXTENSIONS, value);
    }
    let (mut ws, response) = tokio_tungstenite::client_async_with_config(
        request,
        WsIo::handshaking(stream),
        Some(config.tungstenite()),
    )
    .await?;
    let answers = response
        .headers()
        .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .map(|v| v.to_str().unwrap_or("\0"));
    let refused = || {
        WsError::Protocol(ProtocolError::InvalidHeader(Box::new(
            header::SEC_WEBSOCKET_EXTENSIONS,
        )))
    };
    let agreed = match &config.deflate {
        Some(deflate) => extension::check_answer(answers, deflate).map_err(|_| refused())?,
        // An extension we did not offer fails the connection (RFC 6455 §4.1).
        None if answers.count() > 0 => return Err(refused()),
        None => None,
    };
    ws.get_mut().start(
        Side::Client,
        agreed,
        config.max_message_size,
        config.max_frame_size,
    );
    let protocol = response
        .headers()
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok((ws, protocol))
}

/// Builds a close message with a code and a reason (truncated to fit a control frame).
pub fn close_message(code: u16, reason: &str) -> Message {
    let mut end = reason.len().min(120);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    Message::Close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: Utf8Bytes::from(&reason[..end]),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{SinkExt, StreamExt};

    fn request(version: &str) -> Request<()> {
        Request::builder()
            .method("GET")
            .uri("/ws")
            .header("connection", "keep-alive, Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", version)
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .body(())
            .unwrap()
    }

    #[test]
    fn upgrade_rejects_bad_requests() {
        let mut r = request("12");
        assert_eq!(
            upgrade(&mut r, WsConfig::default(), None).unwrap_err(),
            UpgradeError::BadVersion
        );
        let mut r = request("13");
        r.headers_mut().remove("upgrade");
        assert_eq!(
            upgrade(&mut r, WsConfig::default(), None).unwrap_err(),
            UpgradeError::NotUpgrade
        );
        // No hyper connection behind this request: it cannot be upgraded.
        let mut r = request("13");
        assert_eq!(
            upgrade(&mut r, WsConfig::default(), None).unwrap_err(),
            UpgradeError::NotUpgradable
        );
        assert!(is_upgrade_request(&request("13")));
    }

    #[tokio::test]
    async fn client_and_server_exchange_and_cap_messages() {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let config = WsConfig {
            max_message_size: 16,
            max_frame_size: 16,
            ..WsConfig::default()
        };
        let server = tokio::spawn(async move {
            let mut ws = accept(b, config).await.unwrap();
            let first = ws.next().await.unwrap().unwrap();
            ws.send(first).await.unwrap();
            // The second message is over the cap: reading it fails.
            ws.next().await.unwrap().is_err()
        });
        let (mut ws, proto) = connect(
            a,
            "ws://x/ws",
            &ClientOptions::default(),
            WsConfig::default(),
        )
        .await
        .unwrap();
        assert_eq!(proto, None);
        ws.send(Message::text("hello")).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello"));
        ws.send(Message::text("x".repeat(64))).await.unwrap();
        assert!(server.await.unwrap());
    }

    fn deflate_config(max: usize) -> WsConfig {
        WsConfig {
            max_message_size: max,
            max_frame_size: max,
            deflate: Some(DeflateConfig::default()),
            ..WsConfig::default()
        }
    }

    #[tokio::test]
    async fn deflate_is_negotiated_and_messages_round_trip() {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move {
            let mut ws = accept(b, deflate_config(1 << 20)).await.unwrap();
            assert!(ws.get_ref().is_deflate());
            while let Some(m) = ws.next().await {
                let m = m.unwrap();
                if m.is_text() || m.is_binary() {
                    ws.send(m).await.unwrap();
                }
            }
        });
        let (mut ws, _) = connect(
            a,
            "ws://x/ws",
            &ClientOptions::default(),
            deflate_config(1 << 20),
        )
        .await
        .unwrap();
        assert!(ws.get_ref().is_deflate());
        let big = "prise ".repeat(50_000);
        for m in [
            Message::text("hello"),
            Message::text(""),
            Message::binary(vec![7u8; 100_000]),
            Message::text(big),
            Message::text("hello"),
        ] {
            ws.send(m.clone()).await.unwrap();
            // A ping between messages passes through untouched.
            ws.send(Message::Ping(Bytes::from_static(b"p")))
                .await
                .unwrap();
            let mut back = ws.next().await.unwrap().unwrap();
            while back.is_pong() {
                back = ws.next().await.unwrap().unwrap();
            }
            assert_eq!(back, m);
        }
        ws.close(None).await.unwrap();
        while ws.next().await.is_some() {}
        server.await.unwrap();
    }

    #[tokio::test]
    async fn deflate_is_off_unless_both_sides_enable_it() {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move {
            let mut ws = accept(b, WsConfig::default()).await.unwrap();
            assert!(!ws.get_ref().is_deflate());
            let m = ws.next().await.unwrap().unwrap();
            ws.send(m).await.unwrap();
        });
        let (mut ws, _) = connect(
            a,
            "ws://x/ws",
            &ClientOptions::default(),
            deflate_config(1 << 20),
        )
        .await
        .unwrap();
        assert!(!ws.get_ref().is_deflate());
        ws.send(Message::text("plain")).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("plain"));
        server.await.unwrap();
    }

    #[tokio::test]
    async fn an_inflated_message_over_the_cap_is_a_capacity_error() {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move {
            let mut ws = accept(b, deflate_config(64 * 1024)).await.unwrap();
            ws.next().await.unwrap()
        });
        // The client may send 1 MiB; it compresses to about 1 KiB.
        let (mut ws, _) = connect(
            a,
            "ws://x/ws",
            &ClientOptions::default(),
            deflate_config(1 << 20),
        )
        .await
        .unwrap();
        ws.send(Message::binary(vec![0u8; 1 << 20])).await.unwrap();
        let err = server.await.unwrap().unwrap_err();
        assert!(matches!(err, WsError::Capacity(_)), "{err}");
    }

    #[test]
    fn close_reason_is_truncated_on_a_char_boundary() {
        let Message::Close(Some(frame)) = close_message(1000, &"é".repeat(100)) else {
            panic!("not a close frame");
        };
        assert!(frame.reason.len() <= 120);
    }
}
