//! prise-sio: an Engine.IO v4 and Socket.IO v5 server on axum/hyper and
//! `prise-ws`, with the wire formats from `prise-proto` (no I/O there).
//!
//! # Design
//!
//! Two layers, kept apart:
//!
//! - [`engine`]: Engine.IO sessions over HTTP long-polling and WebSocket,
//!   the upgrade between them, the heartbeat (the server pings every
//!   `pingInterval`, a missing pong closes after `pingTimeout`), CORS for
//!   polling. Each session has one bounded outbound queue of encoded
//!   [`Frame`]s that whichever transport is current drains; sending never
//!   blocks, and a full queue closes the session as a slow consumer
//!   (`prise_slow_consumer_disconnects_total{transport="socketio"}`). The
//!   application side of a session is an [`EngineConn`]; a raw Engine.IO
//!   server (the conformance echo) implements it directly.
//! - Socket.IO ([`SioLayer`]): namespaces, CONNECT with auth, acks both
//!   ways, binary attachments, connect timeout, connection state recovery
//!   hand-off. It is an [`EngineHandler`]; the application implements
//!   [`SioHandler`] and talks to clients through [`Socket`] handles.
//! - Clustering ([`SessionCluster`]): a server that is one of several behind
//!   a balancer without sticky sessions claims its polling sessions and
//!   hands requests for sessions it does not hold to the cluster, which
//!   forwards them to the server that does.
//!
//! # Data flow
//!
//! ```text
//!  client ──HTTP/WS──▶ engine (decode EIO) ──▶ SioConn (decode SIO, reassemble
//!                                                │ attachments, resolve acks)
//!                                                ▼ bounded channel
//!                                          client task ──▶ SioHandler::connect/event/disconnect
//!  SioHandler / any task ──▶ Socket::emit ──▶ session queue (bounded) ──▶ poll GET / WS writer
//!  fan-out: EncodedPacket::event (serialize once) ──▶ Socket::emit_encoded × N (refcount bumps)
//! ```
//!
//! # Limits
//!
//! Every size and count a peer controls is capped in [`EngineConfig`] and
//! [`SioConfig`]: payload and message size (`maxPayload`), packets per
//! payload, attachments per packet and their bytes, namespace length, ack
//! id length, pending acks, queued packets and bytes, open sessions, the
//! time a long-poll waits, the time to upgrade and to join a namespace.

#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used)]

mod config;
pub mod engine;
mod handler;
mod payload;
mod sio;
mod socket;

pub use config::*;
pub use engine::{
    CloseReason, Engine, EngineConn, EngineHandler, EngineMessage, Frame, Session, SessionCluster,
    SharedCluster,
};
pub use handler::{
    BoxFuture, ConnectOutcome, ConnectRefusal, DisconnectReason, RecoveryRequest, SioHandler,
};
pub use payload::{EncodedPacket, Payload};
pub use sio::{SioConn, SioEngine, SioLayer};
pub use socket::{Ack, AckError, EmitError, Socket};
