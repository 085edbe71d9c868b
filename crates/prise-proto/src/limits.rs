//! Caps on everything a peer controls, in one place, with documented defaults.

use serde::{Deserialize, Serialize};

/// Default longest TCP line, terminator excluded: 8 KiB.
pub const DEFAULT_MAX_LINE: usize = 8 * 1024;
/// Default largest message content, as encoded JSON: 64 KiB.
pub const DEFAULT_MAX_MESSAGE: usize = 64 * 1024;
/// Default largest WebSocket frame or message: 128 KiB (a 64 KiB message plus its envelope).
pub const DEFAULT_MAX_FRAME: usize = 128 * 1024;
/// Default longest room name, in bytes.
pub const DEFAULT_MAX_ROOM_NAME: usize = 128;
/// Default longest user name, in bytes.
pub const DEFAULT_MAX_NAME: usize = 64;
/// Default most rooms one session may be in at once.
pub const DEFAULT_MAX_ROOMS_PER_SESSION: usize = 64;
/// Default most concurrent connections over all transports.
pub const DEFAULT_MAX_CONNECTIONS: usize = 20_000;
/// Default depth of each session's outbound queue, in events. A session whose
/// queue is full is disconnected as a slow consumer.
pub const DEFAULT_QUEUE_DEPTH: usize = 1024;
/// Default most messages one history request or replay returns.
pub const DEFAULT_MAX_HISTORY: usize = 1000;
/// Default most rooms the hub keeps in memory at once.
pub const DEFAULT_MAX_ROOMS: usize = 100_000;
/// Default most pushes one join or leave announcement may cost a node: in a
/// room with more members than this on the node, joins and leaves are not
/// announced one by one (presence stays queryable). Without a cap, n members
/// joining a room cost n(n-1)/2 pushes.
pub const DEFAULT_MAX_PRESENCE_FANOUT: usize = 1000;

/// Caps on everything a peer controls. Every field has a documented default;
/// a violation gets the transport's documented answer (an `ERR` line, close
/// 1009, an `error` event) and never grows memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
#[non_exhaustive]
pub struct Limits {
    /// Longest TCP line, terminator excluded ([`DEFAULT_MAX_LINE`]).
    pub max_line: usize,
    /// Largest message content as encoded JSON ([`DEFAULT_MAX_MESSAGE`]).
    pub max_message: usize,
    /// Largest WebSocket frame or message ([`DEFAULT_MAX_FRAME`]).
    pub max_frame: usize,
    /// Longest room name ([`DEFAULT_MAX_ROOM_NAME`]).
    pub max_room_name: usize,
    /// Longest user name ([`DEFAULT_MAX_NAME`]).
    pub max_name: usize,
    /// Most rooms per session ([`DEFAULT_MAX_ROOMS_PER_SESSION`]).
    pub max_rooms_per_session: usize,
    /// Most concurrent connections ([`DEFAULT_MAX_CONNECTIONS`]).
    pub max_connections: usize,
    /// Outbound queue depth per session ([`DEFAULT_QUEUE_DEPTH`]).
    pub queue_depth: usize,
    /// Most messages per history answer or replay ([`DEFAULT_MAX_HISTORY`]).
    pub max_history: usize,
    /// Most rooms held in memory ([`DEFAULT_MAX_ROOMS`]).
    pub max_rooms: usize,
    /// Most members of a room on this node a join or leave is announced to;
    /// 0 announces to any number ([`DEFAULT_MAX_PRESENCE_FANOUT`]).
    pub max_presence_fanout: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_line: DEFAULT_MAX_LINE,
            max_message: DEFAULT_MAX_MESSAGE,
            max_frame: DEFAULT_MAX_FRAME,
            max_room_name: DEFAULT_MAX_ROOM_NAME,
            max_name: DEFAULT_MAX_NAME,
            max_rooms_per_session: DEFAULT_MAX_ROOMS_PER_SESSION,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            queue_depth: DEFAULT_QUEUE_DEPTH,
            max_history: DEFAULT_MAX_HISTORY,
            max_rooms: DEFAULT_MAX_ROOMS,
            max_presence_fanout: DEFAULT_MAX_PRESENCE_FANOUT,
        }
    }
}

/// Why a room or user name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("name is empty")]
    Empty,
    /// The name is longer than allowed.
    #[error("name is longer than {0} bytes")]
    TooLong(usize),
    /// The name contains whitespace or a control character.
    #[error("name contains whitespace or control characters")]
    BadChar,
}

/// The longest prefix of `s` of at most `max` bytes that ends on a
/// character boundary (for names and messages echoed in errors).
pub fn clip(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Checks a room or user name: non-empty, at most `max` bytes, no whitespace
/// or control characters (so it stays one token in the line protocol).
///
/// # Errors
/// A [`NameError`] saying what is wrong.
pub fn check_name(name: &str, max: usize) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > max {
        return Err(NameError::TooLong(max));
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(NameError::BadChar);
    }
    Ok(())
}

/// Checks an event name: non-empty, at most
/// [`crate::message::MAX_EVENT_NAME`] bytes, no control characters. Spaces
/// are allowed (`chat message`); the line protocol quotes such names.
///
/// # Errors
/// A [`NameError`] saying what is wrong.
pub fn check_event(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > crate::message::MAX_EVENT_NAME {
        return Err(NameError::TooLong(crate::message::MAX_EVENT_NAME));
    }
    if name.chars().any(char::is_control) {
        return Err(NameError::BadChar);
    }
    Ok(())
}

#[cfg(test)]
mod tests {

    #[test]
    fn clip_cuts_on_a_character_boundary() {
        assert_eq!(clip("abc", 2), "ab");
        assert_eq!(clip("abc", 9), "abc");
        assert_eq!(clip("é", 1), "");
        assert_eq!(clip("aé", 2), "a");
    }
    use super::*;

    #[test]
    fn event_names_are_checked() {
        assert_eq!(check_event("chat message"), Ok(()));
        assert_eq!(check_event(&"e".repeat(64)), Ok(()));
        assert_eq!(check_event(&"e".repeat(65)), Err(NameError::TooLong(64)));
        assert_eq!(check_event(""), Err(NameError::Empty));
        assert_eq!(check_event("a\nb"), Err(NameError::BadChar));
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(check_name("general", 8), Ok(()));
        assert_eq!(check_name("", 8), Err(NameError::Empty));
        assert_eq!(check_name("a-long-name", 8), Err(NameError::TooLong(8)));
        assert_eq!(check_name("a b", 8), Err(NameError::BadChar));
        assert_eq!(check_name("a\u{7}", 8), Err(NameError::BadChar));
    }
}
