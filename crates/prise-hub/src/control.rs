//! What a backend asks of the sessions of every node (the control API of
//! `prise serve`), and what each node answers.
//!
//! A [`ControlOp`] is applied by [`crate::Hub::control`]: on this node alone
//! in one process, or on every node of a Redis cluster (the broker carries
//! the operation over the shared channel and gathers one [`NodeAnswer`] per
//! node, see [`crate::redis_broker`]). Both are serde types because that is
//! how they travel between nodes.

use prise_proto::message::User;
use serde::{Deserialize, Serialize};

/// Longest idempotency key accepted, in bytes.
pub const MAX_IDEMPOTENCY_KEY: usize = 128;
/// How long the answer of an idempotent call is kept: a repeated key within
/// this time gets the first answer and does nothing.
pub const IDEMPOTENCY_TTL: std::time::Duration = std::time::Duration::from_secs(600);
/// Most answers of idempotent calls kept by one process without a shared
/// engine; beyond it the oldest are forgotten first.
pub const MAX_IDEMPOTENCY_KEYS: usize = 100_000;
/// Most sessions one node lists in one answer.
pub const MAX_LISTED_SESSIONS: usize = 1000;

/// Which sessions an operation is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionTarget {
    /// Every session of this user id, on every node.
    User(String),
    /// One session, by the id the session list shows (`<node>-<n>`).
    Session(String),
}

/// One operation of the control API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum ControlOp {
    /// Ends the sessions with [`crate::CloseReason::Kicked`] and `reason`.
    Disconnect {
        /// Whose sessions.
        target: SessionTarget,
        /// Told to the client with the close.
        reason: String,
    },
    /// Joins every session of `user` to `room` (a server-side join: the
    /// room is one of the session's rooms like any other, so recovery
    /// restores it).
    Subscribe {
        /// User id.
        user: String,
        /// Room (its hub name: `/ns:room`, `user:<id>`).
        room: String,
    },
    /// Makes every session of `user` leave `room`.
    Unsubscribe {
        /// User id.
        user: String,
        /// Room.
        room: String,
    },
    /// Lists sessions, filtered by room and user (both optional).
    Sessions {
        /// Only sessions in this room.
        room: Option<String>,
        /// Only sessions of this user id.
        user: Option<String>,
        /// At most this many per node (capped at [`MAX_LISTED_SESSIONS`]).
        limit: usize,
    },
}

/// One session as the control API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    /// `<node>-<n>`: unique in the cluster.
    pub id: String,
    /// Its user.
    pub user: User,
    /// `tcp`, `ws`, `socketio`, `sse`.
    pub transport: String,
    /// The client's address (behind a trusted balancer, the one it named).
    pub remote: Option<String>,
    /// Its rooms (hub names).
    pub rooms: Vec<String>,
    /// Connected since, in milliseconds since the Unix epoch.
    pub connected_at: u64,
    /// Events waiting in its outbound queue.
    pub queued: usize,
}

/// What one node did with a [`ControlOp`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAnswer {
    /// The node's id.
    pub node: String,
    /// Sessions acted on (disconnected, joined, left) or listed.
    pub count: usize,
    /// Sessions that could not be joined (full room, too many rooms), with
    /// the first refusal's code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<(usize, String)>,
    /// The listed sessions ([`ControlOp::Sessions`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sessions: Vec<SessionInfo>,
    /// More sessions matched than were listed.
    #[serde(default)]
    pub truncated: bool,
}

/// What an idempotency key says about a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is new (now held for this call): do the call, then
    /// [`crate::Hub::settle_key`] with its answer.
    First,
    /// The call was done: its answer.
    Done(String),
    /// The call is being done by another request.
    Pending,
}

/// Whether `key` is an acceptable idempotency key: 1 to
/// [`MAX_IDEMPOTENCY_KEY`] visible ASCII characters.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= MAX_IDEMPOTENCY_KEY && key.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_travel_as_json() {
        let op = ControlOp::Disconnect {
            target: SessionTarget::User("alice".into()),
            reason: "bye".into(),
        };
        let text = serde_json::to_string(&op).unwrap();
        assert_eq!(
            text,
            r#"{"op":"disconnect","target":{"user":"alice"},"reason":"bye"}"#
        );
        assert_eq!(serde_json::from_str::<ControlOp>(&text).unwrap(), op);
    }

    #[test]
    fn keys() {
        assert!(valid_key("order-42"));
        assert!(!valid_key(""));
        assert!(!valid_key("two words"));
        assert!(!valid_key(&"k".repeat(MAX_IDEMPOTENCY_KEY + 1)));
    }
}
