//! The application API of the Socket.IO layer: what the server calls, and
//! the values it passes.

use std::future::Future;
use std::pin::Pin;

use serde_json::Value;

use crate::engine::CloseReason;
use crate::payload::Payload;
use crate::socket::{Ack, Socket};

/// A boxed, sendable future (what [`SioHandler`] methods return).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a client that wants its previous session back sent in its CONNECT
/// (`{…auth, pid, offset}`; only with [`crate::SioConfig::recovery`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryRequest {
    /// The private id of the previous session, as the server gave it.
    pub pid: String,
    /// The offset of the last event the client received (the last argument
    /// of every broadcast event).
    pub offset: String,
}

/// A namespace connection accepted by [`SioHandler::connect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectOutcome {
    /// A new session: the CONNECT answer carries a new `pid`.
    Fresh,
    /// The session in the [`RecoveryRequest`] was restored (the application
    /// has replayed, or will replay, what the client missed): the CONNECT
    /// answer carries the client's own `pid`, which makes the official
    /// client set `socket.recovered = true`.
    Recovered,
}

/// A refused namespace connection: the client gets
/// `CONNECT_ERROR {"message": message, "data": data}` (its `connect_error`).
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectRefusal {
    /// Human-readable reason (`err.message` on the client).
    pub message: String,
    /// Extra details (`err.data` on the client), if any.
    pub data: Option<Value>,
}

impl ConnectRefusal {
    /// A refusal with a message only.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            data: None,
        }
    }

    /// Adds `data`.
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }
}

/// Why a namespace socket disconnected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client left the namespace (`socket.disconnect()` on the client).
    ClientNamespaceDisconnect,
    /// The application called [`Socket::disconnect`].
    ServerNamespaceDisconnect,
    /// The Engine.IO session closed underneath.
    Transport(CloseReason),
}

impl DisconnectReason {
    /// The reason as the reference implementation words it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientNamespaceDisconnect => "client namespace disconnect",
            Self::ServerNamespaceDisconnect => "server namespace disconnect",
            Self::Transport(r) => r.as_str(),
        }
    }
}

/// The application behind a Socket.IO server.
///
/// For one Engine.IO session, `connect`, `event` and `disconnect` are called
/// one at a time, in the order the client sent the packets, so events of one
/// client are handled in order. While a call runs, further packets of that
/// client wait (up to [`crate::SioConfig::inbound_queue`], then reading
/// stops): long work belongs in a spawned task. Acks from the client are
/// resolved outside this sequence, so awaiting
/// [`Socket::emit_with_ack`] inside `event` works (it only delays the next
/// event of that client).
pub trait SioHandler: Send + Sync + 'static {
    /// A client asks to join a namespace ([`Socket::namespace`]) with its
    /// `auth` payload (`{}` when none; `pid`/`offset` removed and given as
    /// `recovery` when recovery is on).
    ///
    /// Emits from here are sent right after the CONNECT answer.
    ///
    /// # Errors
    /// A [`ConnectRefusal`] refuses the connection with a `CONNECT_ERROR`.
    fn connect<'a>(
        &'a self,
        socket: Socket,
        auth: Value,
        recovery: Option<RecoveryRequest>,
    ) -> BoxFuture<'a, Result<ConnectOutcome, ConnectRefusal>>;

    /// An event from the client: its name, its arguments, and the ack to
    /// answer when the client asked for one.
    fn event<'a>(
        &'a self,
        socket: Socket,
        event: String,
        payload: Payload,
        ack: Option<Ack>,
    ) -> BoxFuture<'a, ()>;

    /// The socket left its namespace (called once per connected socket).
    fn disconnect<'a>(&'a self, socket: Socket, reason: DisconnectReason) -> BoxFuture<'a, ()>;

    /// The refusal of a CONNECT to a namespace the server does not serve
    /// (not in [`crate::SioConfig::namespaces`]). The default is the
    /// reference server's `{"message": "Invalid namespace"}`; an
    /// application may add `data` (a code, say).
    fn unknown_namespace(&self, nsp: &str) -> ConnectRefusal {
        let _ = nsp;
        ConnectRefusal::new("Invalid namespace")
    }
}
