//! prise-proto: the wire protocols of prise, without I/O.
//!
//! # Design
//!
//! Every protocol prise speaks is a pure function or a small state machine over
//! bytes and strings here: no sockets, no tokio, no clock. The transports in
//! `prise-server` and the toolkit in `prise-net` feed bytes in and write bytes
//! out; everything between is tested with byte literals and fuzzed.
//!
//! ```text
//!  socket bytes ──▶ line::CommandLineDecoder ──▶ line::Command::parse ──▶ hub
//!  hub event    ──▶ line::encode::* / wsjson::encode::* ──▶ socket bytes
//!  text frame   ──▶ wsjson::Request::decode ──▶ hub
//!  Socket.IO EVENT ──▶ sio_events::ClientEvent::decode ──▶ hub ──▶ sio_events::encode::*
//!  hub event    ──▶ sse::encode::* ──▶ text/event-stream bytes
//!  Engine.IO / Socket.IO packets ──▶ engineio / socketio ──▶ prise-sio
//!  toolkit streams ──▶ framing (lines, length prefix) ──▶ prise-net
//!  file transfer   ──▶ transfer (header, resume, verdict) ──▶ prise-net
//!  proxy answers   ──▶ socks5 / http_connect (sized, capped) ──▶ prise-net --proxy
//!  balancer header ──▶ proxy_header (PROXY v1/v2, capped) ──▶ prise-server, prise-proxy
//! ```
//!
//! Every size a peer controls is capped by [`limits::Limits`]. Retry delays
//! ([`backoff`]) are computed here too, from an attempt number and a random
//! source the caller supplies; the caller owns the clock.
#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used)]

pub mod backoff;
pub mod engineio;
pub mod framing;
pub mod glob;
pub mod hexdump;
pub mod http_connect;
pub mod limits;
pub mod line;
pub mod message;
pub mod presence;
pub mod proxy_header;
pub mod sio_events;
pub mod socketio;
pub mod socks5;
pub mod sse;
pub mod transfer;
pub mod wsjson;
