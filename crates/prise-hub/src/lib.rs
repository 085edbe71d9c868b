//! prise-hub: sessions, rooms, presence, ordered and durable publishing.
//!
//! # Design
//!
//! The hub knows nothing of sockets. A transport registers a [`Session`] with
//! [`Hub::connect`] and gets the receiving end of the session's bounded queue,
//! or attaches an [`Outbox`] of its own that the fan-out appends to directly
//! ([`outbox`]); it turns client requests into hub calls and [`Outbound`]
//! events into its own wire format.
//!
//! ```text
//!  transport ──join/leave/typing──▶ Hub (rooms in 16 shards, sorted rosters, O(1) counts)
//!  large room: joins and leaves ──▶ one presence diff per interval ──▶ session queues
//!  transport ──publish──▶ Hub ──▶ Broker (order) ──▶ HistoryStore (commit)
//!                                    └──deliver, in order──▶ Hub ──offer──▶ session queues / outboxes
//!  session queue full ──▶ session closed as a slow consumer (counted)
//!  backend ──control (kick, join, list)──▶ Hub::control ──▶ this node, or every node via the Broker
//! ```
//!
//! Seams: [`store::HistoryStore`] (memory, SQLite, Redis) and
//! [`broker::Broker`] (local, or [`redis_broker`] for several nodes sharing
//! rooms, history and presence through Redis), both behind `Arc<dyn …>`.
#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used)]

pub mod activity;
pub mod broker;
pub mod clock;
pub mod control;
mod hub;
pub mod outbox;
pub mod policy;
pub mod presence;
pub mod redis_broker;
pub mod session;
pub mod stats;
pub mod store;
#[cfg(any(test, feature = "conformance"))]
pub mod testing;

pub use hub::{Event, Hub, Joined, Resumed};
pub use outbox::{Offer, Outbox};
pub use session::{CloseReason, Delivery, Outbound, PresenceDiff, Session, SessionId};

use prise_proto::limits::{Limits, NameError};
use std::time::Duration;

/// Default time a disconnected session can be resumed: 2 minutes.
pub const DEFAULT_RECOVERY_WINDOW: Duration = Duration::from_secs(120);
/// Default interval of a large room's presence diffs: 1 second. A room with
/// more members on the node than `max_presence_fanout` pushes at most one
/// diff per interval instead of one `joined`/`left` per change.
pub const DEFAULT_PRESENCE_INTERVAL: Duration = Duration::from_secs(1);

/// The transports the hub serves, for metrics and per-transport encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// The TCP line protocol.
    Tcp = 0,
    /// WebSocket JSON at `/ws`.
    Ws = 1,
    /// Socket.IO at `/socket.io/`.
    SocketIo = 2,
    /// Server-Sent Events at `/sse` (receive only).
    Sse = 3,
}

impl Transport {
    /// Number of transports.
    pub const COUNT: usize = 4;
    /// Every transport.
    pub const ALL: [Transport; Self::COUNT] = [
        Transport::Tcp,
        Transport::Ws,
        Transport::SocketIo,
        Transport::Sse,
    ];

    /// Label used in metrics and `/stats`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Ws => "ws",
            Self::SocketIo => "socketio",
            Self::Sse => "sse",
        }
    }
}

/// Hub settings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HubConfig {
    /// Caps on what peers control.
    pub limits: Limits,
    /// How long a disconnected session can be resumed.
    pub recovery_window: Duration,
    /// Namespaces and room policies.
    pub policies: std::sync::Arc<policy::Policies>,
    /// How often a large room pushes its presence diff, at most
    /// ([`DEFAULT_PRESENCE_INTERVAL`]).
    pub presence_interval: Duration,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            recovery_window: DEFAULT_RECOVERY_WINDOW,
            policies: std::sync::Arc::default(),
            presence_interval: DEFAULT_PRESENCE_INTERVAL,
        }
    }
}

/// Why a hub operation was refused. [`HubError::code`] is the code every
/// transport shows (`ERR CODE …`, `error {code}`).
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The room does not exist.
    #[error("no room {0}")]
    NoRoom(String),
    /// The session is not in the room.
    #[error("not in room {0}; JOIN it first")]
    NotMember(String),
    /// The content is larger than the limit.
    #[error("message larger than {0} bytes")]
    TooLarge(usize),
    /// The session is in as many rooms as allowed.
    #[error("already in {0} rooms")]
    TooManyRooms(usize),
    /// The hub holds as many rooms as allowed.
    #[error("too many rooms on this server")]
    RoomLimit,
    /// A room or user name is invalid.
    #[error("invalid name: {0}")]
    BadName(NameError),
    /// An event name is invalid (empty, over 64 bytes, control characters).
    #[error("invalid event name: {0}")]
    BadEvent(NameError),
    /// The room names a namespace this server does not serve.
    #[error("no namespace {0} on this server")]
    UnknownNamespace(String),
    /// The room has as many members as its policy allows.
    #[error("room {0} is full ({1} members)")]
    RoomFull(String, usize),
    /// The room is the personal room of another user.
    #[error("room {0} is the personal room of another user")]
    NotYours(String),
    /// The connection limit is reached.
    #[error("server is full")]
    Full,
    /// Publishing failed; the message is not acknowledged.
    #[error("send failed: {0}")]
    Send(#[from] broker::BrokerError),
    /// The history store failed.
    #[error("history store: {0}")]
    Store(#[from] store::StoreError),
}

impl HubError {
    /// The protocol error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoRoom(_) | Self::NotMember(_) => "NO_ROOM",
            Self::TooLarge(_) => "TOO_LARGE",
            Self::TooManyRooms(_) | Self::RoomLimit => "TOO_MANY_ROOMS",
            Self::BadName(_) | Self::BadEvent(_) => "BAD_REQUEST",
            Self::UnknownNamespace(_) => "UNKNOWN_NAMESPACE",
            Self::RoomFull(..) => "ROOM_FULL",
            Self::NotYours(_) => "FORBIDDEN",
            Self::Full => "SERVER_FULL",
            Self::Send(_) | Self::Store(_) => "SEND_ERROR",
        }
    }
}
