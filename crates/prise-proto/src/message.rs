//! The message object every transport carries, and the ids around it.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;

/// The event name of a chat message, and of every message published without one.
pub const MESSAGE_EVENT: &str = "message";
/// Longest event name, in bytes.
pub const MAX_EVENT_NAME: usize = 64;

/// A room's message offset: 1 for the first message, growing by one per message.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Offset(pub u64);

impl Offset {
    /// The offset before the first message: `since 0` replays everything.
    /// It is also the offset of an ephemeral message (one that is never
    /// stored, in a room whose policy says `history = "none"`).
    pub const ZERO: Offset = Offset(0);

    /// Is this no offset at all (an ephemeral message)?
    pub fn is_none(&self) -> bool {
        self.0 == 0
    }

    /// The next offset.
    #[must_use]
    pub fn next(self) -> Offset {
        Offset(self.0 + 1)
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The generation of a room's history: it changes when the history is lost or
/// reset, so a client holding an offset of another epoch knows it cannot resume.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Epoch(pub String);

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A user as other members see them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct User {
    /// Stable id: the token's `sub`, or the session id of an anonymous user.
    pub id: String,
    /// Display name.
    pub name: String,
}

/// A published message or event, as stored and delivered on every transport.
///
/// JSON form (the protocol contract):
/// `{id, roomId, userId, userName, content, timestamp, offset, event?, args?}`:
/// `event` is left out for `message` (a chat message), `args` when false,
/// `offset` for an ephemeral message (never stored, no offset).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// Unique, sortable id (a ULID).
    pub id: String,
    /// The room.
    pub room_id: String,
    /// The author's id.
    pub user_id: String,
    /// The author's display name.
    pub user_name: String,
    /// Any JSON value; a string for chat.
    pub content: serde_json::Value,
    /// Milliseconds since the Unix epoch, at the server.
    pub timestamp: u64,
    /// Position in the room's history; [`Offset::ZERO`] for an ephemeral
    /// message.
    #[serde(default, skip_serializing_if = "Offset::is_none")]
    pub offset: Offset,
    /// The event name ([`MESSAGE_EVENT`] for chat), at most
    /// [`MAX_EVENT_NAME`] bytes.
    #[serde(default = "message_event", skip_serializing_if = "is_message_event")]
    pub event: Cow<'static, str>,
    /// `content` is the list of a Socket.IO event's arguments (zero or
    /// several), to be emitted as separate arguments again; otherwise
    /// `content` is the event's one argument.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub args: bool,
    /// Hub-wide sequence number, increasing over all rooms in publish order.
    /// Internal (recovery of a session in several rooms); not part of the JSON form.
    #[serde(skip)]
    pub seq: u64,
}

fn message_event() -> Cow<'static, str> {
    Cow::Borrowed(MESSAGE_EVENT)
}

fn is_message_event(e: &str) -> bool {
    e == MESSAGE_EVENT
}

impl Message {
    /// Is this a chat message (event [`MESSAGE_EVENT`])?
    pub fn is_chat(&self) -> bool {
        self.event == MESSAGE_EVENT
    }

    /// The content as one line of text: a string as is (newlines escaped), any
    /// other JSON value as compact JSON.
    pub fn content_text(&self) -> String {
        match &self.content {
            serde_json::Value::String(s) => s.replace('\r', "\\r").replace('\n', "\\n"),
            other => other.to_string(),
        }
    }
}

/// A room as listed by `rooms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomInfo {
    /// Room name.
    pub name: String,
    /// Members now.
    pub members: usize,
    /// Last offset.
    pub offset: Offset,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_form_matches_the_contract() {
        let m = Message {
            id: "01J".into(),
            room_id: "general".into(),
            user_id: "u1".into(),
            user_name: "alice".into(),
            content: "hi".into(),
            timestamp: 5,
            offset: Offset(3),
            event: MESSAGE_EVENT.into(),
            args: false,
            seq: 99,
        };
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"id":"01J","roomId":"general","userId":"u1","userName":"alice","content":"hi","timestamp":5,"offset":3}"#
        );
        assert_eq!(m.content_text(), "hi");
        let m = Message {
            content: serde_json::json!({"a": "x\ny"}),
            ..m
        };
        assert_eq!(m.content_text(), r#"{"a":"x\ny"}"#);
        let e = Message {
            event: "move".into(),
            args: true,
            offset: Offset::ZERO,
            content: serde_json::json!([1, 2]),
            ..m
        };
        let text = serde_json::to_string(&e).unwrap();
        assert_eq!(
            text,
            r#"{"id":"01J","roomId":"general","userId":"u1","userName":"alice","content":[1,2],"timestamp":5,"event":"move","args":true}"#
        );
        let back: Message = serde_json::from_str(&text).unwrap();
        assert_eq!(back, Message { seq: 0, ..e });
        let old: Message = serde_json::from_str(
            r#"{"id":"1","roomId":"r","userId":"u","userName":"n","content":1,"timestamp":1,"offset":2}"#,
        )
        .unwrap();
        assert!(old.is_chat() && !old.args && old.offset == Offset(2));
    }
}
