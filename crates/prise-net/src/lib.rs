//! prise-net: the prise network toolkit — `connect`, `listen`, `bridge`,
//! `echo`, `send`/`recv`, `probe` and `discover` over TCP, TLS, UDP,
//! WebSocket and Unix sockets, a Socket.IO client, an HTTP forward proxy
//! (`http-proxy`) and a socket lister (`ss`).
//!
//! # Design
//!
//! Every command is a library function taking its parsed arguments
//! (`*Args`, derived with clap so the binary only flattens them) and
//! returning `Result<_, NetError>`; [`NetError::exit_code`] gives the
//! documented exit code and its `Display` the one line a user sees.
//!
//! - [`endpoint`] parses the one URL syntax into an [`Endpoint`].
//! - [`transport`] opens and accepts connections step by step (TCP connect,
//!   TLS handshake, WebSocket handshake) and yields a [`transport::Conn`].
//! - [`tls`] builds rustls configs: verification on by default.
//! - [`backoff`] (from `prise_proto`) computes retry delays with full jitter
//!   from an injected RNG.
//! - [`relay`] moves bytes between stdin/stdout and a `Conn`, with framing
//!   ([`codec`], over `prise_proto::framing`), hex dumps and JSON events.
//! - [`proxy_client`] opens TCP streams through SOCKS5 or HTTP CONNECT
//!   (`--proxy`), with sans-IO handshakes.
//! - [`bridge`] accepts on one URL and pumps each connection to another
//!   (messages both ways, half-close); [`exec`] makes a process one side of
//!   it (`--exec`).
//! - [`sio_client`] is `connect sio://`, over the hub's packet codecs.
//! - [`http_proxy`] is an HTTP/1.1 forward proxy with an access log.
//! - [`ss`] lists this machine's sockets (sock_diag netlink, or `/proc/net`).
//! - [`echo`], [`transfer`], [`probe`] and [`discover`] are the servers and
//!   tools built on those; [`zerocopy`] holds the `sendfile`/`splice` data
//!   paths of [`transfer`] over plain sockets.
//!
//! # Data flow of `prise connect`
//!
//! ```text
//!  URL ─parse─▶ Endpoint ─connect_with_retry(Backoff)─▶ Conn
//!  stdin ─▶ Input ─framing─▶ Conn ─framing─▶ Events ─▶ stdout (+ --hex on stderr)
//! ```
//!
//! Sizes a peer controls are capped: lines and frames (`--max-message`),
//! WebSocket messages ([`prise_ws::WsConfig`]), transfer names and sizes
//! ([`prise_proto::transfer::TransferLimits`]), concurrent echo clients.

#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used)]

pub mod bridge;
pub mod codec;
pub mod connect;
pub mod discover;
pub mod echo;
pub mod endpoint;
pub mod error;
pub mod exec;
pub mod http_proxy;
pub mod listen;
pub mod probe;
pub mod proxy_client;
pub mod relay;
pub mod sio_client;
pub mod ss;
pub mod tls;
pub mod transfer;
pub mod transport;
pub mod zerocopy;

/// Retry delays with full jitter; the workspace's one backoff lives in
/// `prise-proto`.
pub use prise_proto::backoff;

pub use endpoint::{Endpoint, Scheme};
pub use error::NetError;
