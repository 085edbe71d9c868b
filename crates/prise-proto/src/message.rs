//! The message object every transport carries, and the ids around it.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A room's message offset: 1 for the first message, growing by one per message.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Offset(pub u64);

impl Offset {
    /// The offset before the first message: `since 0` replays everything.
    pub const ZERO: Offset = Offset(0);

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

/// A published message, as stored and delivered on every transport.
///
/// JSON form (the protocol contract):
/// `{id, roomId, userId, userName, content, timestamp, offset}`.
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
    /// Position in the room's history.
    pub offset: Offset,
    /// Hub-wide sequence number, increasing over all rooms in publish order.
    /// Internal (recovery of a session in several rooms); not part of the JSON form.
    #[serde(skip)]
    pub seq: u64,
}

impl Message {
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
    }
}
