//! A room's members as every transport shows them: a page of the sorted
//! member list with the room's count and a cursor to the next page, and the
//! coalesced diff a large room pushes instead of one `joined`/`left` per
//! member.
//!
//! Members are sorted by name, then id (bytewise). A page ends with a
//! [`Cursor`] naming its last member; the next page starts after it, so a
//! member who joins or leaves between two pages never shifts the others: a
//! member present through the whole walk is listed exactly once.
//!
//! ```text
//!  presence {room, after?, limit?} ──▶ Page {members ≤ limit, count, next?}
//!  join ──▶ the first DEFAULT_PAGE members, the count, `complete`
//!  many joins and leaves within an interval ──▶ Diff {joined, left, count}
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::message::User;
use serde_json::{Value, json};

/// Members a join's answer lists, and a presence request returns when it
/// names no limit: 100.
pub const DEFAULT_PAGE: usize = 100;
/// Most members one presence request returns, whatever limit it names: 1000.
pub const MAX_PAGE: usize = 1000;
/// Longest cursor a client may send back, in bytes: 1024 (the longest name
/// and a long token subject fit with room to spare).
pub const MAX_CURSOR: usize = 1024;
/// Most users a presence diff lists each way (joined, left): 100. Beyond it
/// the diff is cut and marked incomplete; the count stays exact.
pub const MAX_DIFF_USERS: usize = 100;

/// Where a page of members starts: after this (name, id). Opaque to
/// clients: base64url (no padding) of `name`, a line feed, and `id`. Names
/// hold no control characters, so the first line feed ends the name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    /// The last listed member's name.
    pub name: String,
    /// The last listed member's id.
    pub id: String,
}

/// Why a cursor was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    /// Longer than [`MAX_CURSOR`].
    #[error("cursor longer than {MAX_CURSOR} bytes")]
    TooLong,
    /// Not a cursor this server handed out.
    #[error("not a presence cursor")]
    Invalid,
}

impl Cursor {
    /// The cursor after `user`.
    pub fn after(user: &User) -> Self {
        Self {
            name: user.name.clone(),
            id: user.id.clone(),
        }
    }

    /// The text form sent to clients.
    pub fn encode(&self) -> String {
        let mut raw = Vec::with_capacity(self.name.len() + 1 + self.id.len());
        raw.extend_from_slice(self.name.as_bytes());
        raw.push(b'\n');
        raw.extend_from_slice(self.id.as_bytes());
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Reads a cursor a client sent back.
    ///
    /// # Errors
    /// [`CursorError::TooLong`] past [`MAX_CURSOR`] bytes,
    /// [`CursorError::Invalid`] for anything [`Cursor::encode`] does not make.
    pub fn decode(text: &str) -> Result<Self, CursorError> {
        if text.len() > MAX_CURSOR {
            return Err(CursorError::TooLong);
        }
        let raw = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| CursorError::Invalid)?;
        let raw = String::from_utf8(raw).map_err(|_| CursorError::Invalid)?;
        let (name, id) = raw.split_once('\n').ok_or(CursorError::Invalid)?;
        Ok(Self {
            name: name.to_owned(),
            id: id.to_owned(),
        })
    }
}

/// The limit a presence request gets: its own, between 1 and [`MAX_PAGE`],
/// or [`DEFAULT_PAGE`].
pub fn page_limit(asked: Option<usize>) -> usize {
    asked.map_or(DEFAULT_PAGE, |n| n.clamp(1, MAX_PAGE))
}

/// A page of a room's members.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// Members (distinct users) in sort order, at most the limit asked for.
    pub members: Vec<User>,
    /// How many members the room has, in all.
    pub count: usize,
    /// Where the next page starts; `None` when this page reaches the end.
    pub next: Option<Cursor>,
}

impl Page {
    /// Whether this page reaches the end of the list.
    pub fn complete(&self) -> bool {
        self.next.is_none()
    }

    /// The cursor's text form, for the encoders.
    pub fn next_text(&self) -> Option<String> {
        self.next.as_ref().map(Cursor::encode)
    }
}

/// Adds a page's `members`, `count`, `complete` and (when there is more)
/// `next` to a JSON object: the same fields in every JSON answer (WebSocket,
/// Socket.IO, HTTP).
pub fn put_page(v: &mut Value, page: &Page) {
    if let Some(o) = v.as_object_mut() {
        o.insert("members".into(), json!(page.members));
        o.insert("count".into(), page.count.into());
        o.insert("complete".into(), page.complete().into());
        if let Some(next) = page.next_text() {
            o.insert("next".into(), next.into());
        }
    }
}

/// Who came and went in a room during one interval, pushed at most once per
/// interval to each member on the node instead of one `joined`/`left` per
/// change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    /// The room.
    pub room: String,
    /// Users whose first session entered (at most [`MAX_DIFF_USERS`]).
    pub joined: Vec<User>,
    /// Users whose last session left (at most [`MAX_DIFF_USERS`]).
    pub left: Vec<User>,
    /// The room's member count after these changes.
    pub count: usize,
    /// False when more users came or went than the lists hold: read
    /// presence again for the whole picture.
    pub complete: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_stay_one_token() {
        let c = Cursor {
            name: "zoë".into(),
            id: "sub with spaces\nand a newline".into(),
        };
        let text = c.encode();
        assert!(!text.contains([' ', '\n', '+', '/', '=']));
        assert_eq!(Cursor::decode(&text), Ok(c));
    }

    #[test]
    fn bad_cursors_are_refused_not_panicked_on() {
        assert_eq!(Cursor::decode("!!"), Err(CursorError::Invalid));
        // Valid base64 without the separator.
        assert_eq!(
            Cursor::decode(&URL_SAFE_NO_PAD.encode("alice")),
            Err(CursorError::Invalid)
        );
        // Not UTF-8.
        assert_eq!(
            Cursor::decode(&URL_SAFE_NO_PAD.encode([0xff, b'\n', 0xfe])),
            Err(CursorError::Invalid)
        );
        assert_eq!(
            Cursor::decode(&"A".repeat(MAX_CURSOR + 1)),
            Err(CursorError::TooLong)
        );
        assert_eq!(Cursor::decode(""), Err(CursorError::Invalid));
    }

    #[test]
    fn limits_are_capped() {
        assert_eq!(page_limit(None), DEFAULT_PAGE);
        assert_eq!(page_limit(Some(0)), 1);
        assert_eq!(page_limit(Some(7)), 7);
        assert_eq!(page_limit(Some(usize::MAX)), MAX_PAGE);
    }
}
