//! What a client asks of the hub, whatever its transport: each transport's
//! decoder (`prise_proto::line`, `prise_proto::wsjson`,
//! `prise_proto::sio_events`) produces one of these.

use super::reply::Refusal;
use prise_proto::message::{Epoch, Offset};
use serde_json::Value;

/// The room a request acts on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Target {
    /// A named room.
    Room(String),
    /// The session's current room (the seed chat's single-room API:
    /// `joinRoom`, then `sendMessage` and typing without a room).
    Current,
}

/// One request of a client.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Request {
    /// Answered `Pong` with the same token.
    Ping(Option<Value>),
    /// The server's time.
    Time,
    /// Authenticate with a token, or refresh the token of an authenticated
    /// session (same subject).
    Authenticate(String),
    /// Go on without a token (where the listener allows it), optionally
    /// under a display name.
    Anonymous(Option<String>),
    /// Choose a display name.
    Rename(String),
    /// Join a room; with `since`, replay what came after that offset.
    Join {
        /// Room name.
        room: String,
        /// Replay messages after this offset.
        since: Option<Offset>,
        /// The epoch `since` belongs to.
        epoch: Option<Epoch>,
        /// A display name to take first (anonymous sessions only).
        name: Option<String>,
        /// Leave the current room first and make this one current.
        switch: bool,
    },
    /// Leave a room.
    Leave(String),
    /// Publish content in a room.
    Publish {
        /// Where.
        room: Target,
        /// Any JSON value.
        content: Value,
    },
    /// Publish a named event in a room (TCP `EMIT`, WebSocket `emit`).
    Emit {
        /// Room name.
        room: String,
        /// Event name.
        event: String,
        /// Any JSON value.
        data: Value,
    },
    /// A Socket.IO event outside the hub's vocabulary: relayed to the
    /// rooms the sender is in when its namespace says `relay = "rooms"`.
    Relay {
        /// Event name, as the client sent it.
        event: String,
        /// Its arguments.
        args: Vec<Value>,
        /// The client asked for an ack (with `relay = "hook"` such an event
        /// is an RPC).
        wants_answer: bool,
    },
    /// A request only the backend answers, through its `rpc` hook
    /// (WebSocket `rpc`, TCP `RPC`).
    Rpc {
        /// What is asked (`placeOrder`).
        method: String,
        /// Its argument.
        data: Value,
    },
    /// Typing on or off in a room.
    Typing {
        /// Where.
        room: Target,
        /// Typing or stopped.
        on: bool,
    },
    /// A page of a room's members, in sort order.
    Presence {
        /// Room name.
        room: String,
        /// The cursor (`next`) of the previous page, as the client sent it.
        after: Option<String>,
        /// How many at most (default and cap in [`prise_proto::presence`]).
        limit: Option<usize>,
    },
    /// A room's history: the last `limit` messages, or those after `since`.
    History {
        /// Room name.
        room: String,
        /// Messages after this offset.
        since: Option<Offset>,
        /// How many at most (default [`super::DEFAULT_HISTORY`]).
        limit: Option<usize>,
    },
    /// Rooms with members (those the session may join).
    Rooms,
    /// The list of commands.
    Help,
    /// End the session.
    Quit,
    /// Input the decoder could not read: answered with this refusal, after
    /// the rate check like any request.
    Malformed(Refusal),
}

impl Request {
    /// The room name of the request, to be qualified with the client's
    /// namespace.
    pub(crate) fn room_mut(&mut self) -> Option<&mut String> {
        match self {
            Self::Join { room, .. }
            | Self::Leave(room)
            | Self::Publish {
                room: Target::Room(room),
                ..
            }
            | Self::Emit { room, .. }
            | Self::Typing {
                room: Target::Room(room),
                ..
            }
            | Self::Presence { room, .. }
            | Self::History { room, .. } => Some(room),
            _ => None,
        }
    }

    /// May an unauthenticated session send this where the listener
    /// requires a token?
    pub(crate) fn is_open(&self) -> bool {
        matches!(
            self,
            Self::Ping(_)
                | Self::Time
                | Self::Help
                | Self::Quit
                | Self::Authenticate(_)
                | Self::Anonymous(_)
                | Self::Malformed(_)
        )
    }
}

impl From<prise_proto::line::Command> for Request {
    fn from(c: prise_proto::line::Command) -> Self {
        use prise_proto::line::Command;
        match c {
            Command::Ping(token) => Self::Ping(token.map(Value::String)),
            Command::Time => Self::Time,
            Command::Nick(name) => Self::Rename(name),
            Command::Auth(token) => Self::Authenticate(token),
            Command::Join { room, since } => Self::Join {
                room,
                since,
                epoch: None,
                name: None,
                switch: false,
            },
            Command::Leave(room) => Self::Leave(room),
            Command::Say { room, text } => Self::Publish {
                room: Target::Room(room),
                content: Value::String(text),
            },
            Command::Emit { room, event, data } => Self::Emit { room, event, data },
            Command::Rpc { method, data } => Self::Rpc { method, data },
            Command::Typing { room, on } => Self::Typing {
                room: Target::Room(room),
                on,
            },
            Command::Who { room, after, limit } => Self::Presence { room, after, limit },
            Command::History { room, count } => Self::History {
                room,
                since: None,
                limit: count,
            },
            Command::Rooms => Self::Rooms,
            Command::Help => Self::Help,
            Command::Quit => Self::Quit,
        }
    }
}

impl From<prise_proto::wsjson::ClientFrame> for Request {
    fn from(f: prise_proto::wsjson::ClientFrame) -> Self {
        use prise_proto::wsjson::ClientFrame;
        match f {
            ClientFrame::Auth {
                token: Some(token), ..
            } => Self::Authenticate(token),
            ClientFrame::Auth { token: None, name } => Self::Anonymous(name),
            ClientFrame::Ping { timestamp } => Self::Ping(timestamp),
            ClientFrame::Join {
                room,
                since,
                epoch,
                name,
            } => Self::Join {
                room,
                since,
                epoch,
                name,
                switch: false,
            },
            ClientFrame::Leave { room } => Self::Leave(room),
            ClientFrame::Message { room, content } => Self::Publish {
                room: Target::Room(room),
                content,
            },
            ClientFrame::Emit { room, event, data } => Self::Emit { room, event, data },
            ClientFrame::Rpc { method, data } => Self::Rpc { method, data },
            ClientFrame::Typing { room, typing } => Self::Typing {
                room: Target::Room(room),
                on: typing,
            },
            ClientFrame::History { room, since, limit } => Self::History { room, since, limit },
            ClientFrame::Presence { room, after, limit } => Self::Presence { room, after, limit },
            ClientFrame::Rooms => Self::Rooms,
        }
    }
}

impl From<prise_proto::sio_events::ClientEvent> for Request {
    fn from(e: prise_proto::sio_events::ClientEvent) -> Self {
        use prise_proto::sio_events::ClientEvent;
        match e {
            ClientEvent::JoinRoom(room) => Self::Join {
                room,
                since: None,
                epoch: None,
                name: None,
                switch: true,
            },
            ClientEvent::SendMessage(content) => Self::Publish {
                room: Target::Current,
                content,
            },
            ClientEvent::Typing(on) => Self::Typing {
                room: Target::Current,
                on,
            },
            ClientEvent::Join { room, since, epoch } => Self::Join {
                room,
                since,
                epoch,
                name: None,
                switch: false,
            },
            ClientEvent::Leave(room) => Self::Leave(room),
            ClientEvent::Publish { room, content } => Self::Publish {
                room: Target::Room(room),
                content,
            },
            ClientEvent::History { room, since, limit } => Self::History { room, since, limit },
            ClientEvent::Presence { room, after, limit } => Self::Presence { room, after, limit },
        }
    }
}
