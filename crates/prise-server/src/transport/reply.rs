//! What the request layer answers, and every refusal's code and wording:
//! the transports only encode these.

use crate::security::auth::AuthError;
use prise_hub::store::HistoryPage;
use prise_hub::{CloseReason, HubError, Joined, Session, Transport};
use prise_proto::limits::clip;
use prise_proto::message::{Epoch, Message, RoomInfo, User};
use prise_proto::presence::{CursorError, Page};
use serde_json::Value;
use std::borrow::Cow;
use std::sync::Arc;

/// The answer to one request.
#[derive(Debug, Clone)]
pub(crate) enum Reply {
    /// Nothing to answer (typing).
    Nothing,
    /// The token of the ping, echoed.
    Pong(Option<Value>),
    /// The server's time, milliseconds since the Unix epoch.
    Time(u64),
    /// Authenticated (or refreshed) as `user` until `exp` (Unix seconds).
    Authenticated {
        /// Who.
        user: User,
        /// Token expiry, Unix seconds.
        exp: u64,
    },
    /// The session's user, after an anonymous `auth` or a rename.
    Named(User),
    /// Joined; the replay follows the answer.
    Joined(Joined),
    /// Left the room.
    Left(String),
    /// Published: the stored message (or the ephemeral one, without an
    /// offset).
    Published(Arc<Message>),
    /// A Socket.IO event relayed: one message per room it went to.
    Relayed(Vec<Arc<Message>>),
    /// A page of a room's members.
    Presence {
        /// Room name.
        room: String,
        /// Distinct users in sort order, the room's count, the next cursor.
        page: Page,
    },
    /// A page of a room's history.
    History {
        /// Room name.
        room: String,
        /// The room's epoch.
        epoch: Epoch,
        /// The messages and whether retention kept them all.
        page: HistoryPage,
    },
    /// Rooms with members.
    Rooms(Vec<RoomInfo>),
    /// The backend's answer to an RPC (its `result`).
    RpcResult(Value),
    /// The list of commands.
    Help,
    /// The session ends at the client's request.
    Bye,
    /// The request was refused; the session goes on.
    Refused(Refusal),
    /// The request was refused and the session ends (a failed
    /// authentication).
    Ended(Refusal),
}

/// A refusal: a protocol code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// The protocol code (`RATE_LIMITED`, `FORBIDDEN`, …, or a backend's
    /// own code from a hook).
    pub(crate) code: Cow<'static, str>,
    /// What went wrong, in words.
    pub(crate) message: String,
}

impl Refusal {
    pub(crate) fn new(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }

    /// Is this the hub's connection limit?
    pub(crate) fn is_server_full(&self) -> bool {
        self.code == HubError::Full.code()
    }

    /// Too many requests on this connection.
    pub(crate) fn rate_limited() -> Self {
        Self::new("RATE_LIMITED", "too many requests; slow down")
    }

    /// Not authenticated where the listener requires it; the hint names
    /// the transport's way to authenticate.
    pub(crate) fn auth_required(transport: Transport) -> Self {
        let how = match transport {
            Transport::Tcp => "AUTH token",
            Transport::Ws => r#"{"type":"auth","token":…} or /ws?token="#,
            Transport::SocketIo => "auth.token in the handshake",
            Transport::Sse => "Authorization: Bearer <token> or /sse?token=",
        };
        Self::new("AUTH_REQUIRED", format!("authenticate first ({how})"))
    }

    /// The token does not allow this room.
    pub(crate) fn forbidden_room(room: &str) -> Self {
        Self::new(
            "FORBIDDEN",
            format!("your token does not allow room {room}"),
        )
    }

    /// An authenticated session cannot choose its name.
    pub(crate) fn name_from_token() -> Self {
        Self::new("FORBIDDEN", "your name comes from your token")
    }

    /// A token was refused.
    pub(crate) fn auth(e: &AuthError) -> Self {
        Self::new(e.code(), e.to_string())
    }

    /// No token where one is required, at the handshake.
    pub(crate) fn token_required() -> Self {
        Self::new("AUTH_REQUIRED", "a token is required on this server")
    }

    /// The time to authenticate ran out.
    pub(crate) fn auth_timeout(transport: Transport) -> Self {
        let what = match transport {
            Transport::Tcp => "AUTH",
            Transport::Ws | Transport::SocketIo | Transport::Sse => "token",
        };
        Self::new("AUTH_REQUIRED", format!("no {what} in time"))
    }

    /// The hub refused.
    pub(crate) fn hub(e: &HubError) -> Self {
        Self::new(e.code(), e.to_string())
    }

    /// A Socket.IO event outside the vocabulary where the namespace does
    /// not relay (`relay = "deny"`, the default).
    pub(crate) fn unknown_event(name: &str) -> Self {
        Self::bad_request(format!("unknown event {}", clip(name, 64)))
    }

    /// With `relay = "hook"`, an event that asks for no ack: an RPC needs
    /// one to carry its result.
    pub(crate) fn rpc_without_ack(name: &str) -> Self {
        Self::bad_request(format!(
            "event {} is an RPC here (relay = \"hook\"): send it with an ack (emitWithAck)",
            clip(name, 64)
        ))
    }

    /// An RPC where no `rpc` hook is on for the namespace.
    pub(crate) fn no_rpc_hook() -> Self {
        Self::new(
            "NOT_AVAILABLE",
            "no rpc hook is configured for this namespace (--hook-url, --hooks rpc)",
        )
    }

    /// The room's policy says `client_publish = false`.
    pub(crate) fn client_publish(room: &str) -> Self {
        Self::new(
            "FORBIDDEN",
            format!("clients may not publish in room {room}; only the HTTP API publishes there"),
        )
    }

    /// A relayed event from a socket in no room it may publish in.
    pub(crate) fn no_rooms() -> Self {
        Self::new("NO_ROOM", "not in any room to relay to; join one first")
    }

    /// A Socket.IO room name with a namespace prefix of its own.
    pub(crate) fn prefixed_room(room: &str) -> Self {
        Self::bad_request(format!(
            "room {room}: a Socket.IO socket names rooms of its own namespace, without a / prefix"
        ))
    }

    /// A CONNECT to a namespace that is not configured.
    pub(crate) fn unknown_namespace(nsp: &str) -> Self {
        Self::hub(&HubError::UnknownNamespace(nsp.to_owned()))
    }

    /// A join's `since` reaches back past what is retained.
    pub(crate) fn history_gap() -> Self {
        Self::new(
            "HISTORY_GAP",
            "some messages after that offset are no longer retained",
        )
    }

    /// A presence cursor that is not one the server handed out.
    pub(crate) fn bad_cursor(e: CursorError) -> Self {
        Self::new("BAD_REQUEST", format!("after: {e}"))
    }

    /// Input that is not a request of the protocol.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new("BAD_REQUEST", message)
    }

    /// Why the hub ended a session, as told to the client before it is
    /// closed; `None` where the close itself says enough.
    pub(crate) fn for_close(reason: CloseReason, transport: Transport) -> Option<Self> {
        let again = match transport {
            Transport::Tcp => "reconnect and JOIN with SINCE",
            Transport::Ws => "reconnect and join with since",
            Transport::SocketIo => "reconnecting recovers them",
            Transport::Sse => "reconnect with Last-Event-ID",
        };
        match reason {
            CloseReason::SlowConsumer => Some(Self::new(
                "SLOW_CONSUMER",
                format!("too many undelivered messages; {again}"),
            )),
            CloseReason::AuthExpired => Some(Self::new(
                "AUTH_EXPIRED",
                "token expired; reconnect with a fresh token",
            )),
            CloseReason::Kicked => Some(Self::kicked(None)),
            CloseReason::Shutdown => None,
        }
    }

    /// [`Refusal::for_close`] of a session the hub closed, with the reason
    /// a backend gave when it kicked it.
    pub(crate) fn for_session(
        session: &Session,
        reason: CloseReason,
        transport: Transport,
    ) -> Option<Self> {
        match reason {
            CloseReason::Kicked => Some(Self::kicked(session.close_detail())),
            _ => Self::for_close(reason, transport),
        }
    }

    /// Ended through the control API (`POST /api/disconnect`).
    fn kicked(detail: Option<&str>) -> Self {
        Self::new(
            "KICKED",
            detail
                .filter(|d| !d.is_empty())
                .unwrap_or("disconnected by the server"),
        )
    }
}
