//! Server-Sent Events (`text/event-stream`, the WHATWG HTML standard's
//! `EventSource` format): the encoder of `GET /sse`.
//!
//! An event is a block of `field: value` lines ended by an empty line:
//!
//! ```text
//! id: 42
//! event: message
//! data: {"id":"01J…","roomId":"general",…,"offset":7}
//!
//! ```
//!
//! `id` is the hub-wide sequence number of a message; a reconnecting
//! `EventSource` sends the last one it saw as `Last-Event-ID`. Events
//! without an `id` line (presence, typing, errors) leave the client's last
//! id as it was. A line starting with `:` is a comment: the keep-alive.
//!
//! The encoder never lets a value break the framing: a newline in `data`
//! starts another `data:` line (the client joins them with `\n`), and
//! newlines in an event name or a comment are replaced by spaces.

use crate::message::{Epoch, Message, Offset, User};
use serde_json::json;
use std::fmt::Write as _;

/// The `event:` name of a chat message.
pub const MESSAGE: &str = "message";
/// The first event of every stream: who the client is and where each room
/// stands.
pub const READY: &str = "ready";
/// A user joined one of the stream's rooms.
pub const JOINED: &str = "joined";
/// A user left one of the stream's rooms.
pub const LEFT: &str = "left";
/// A user started or stopped typing.
pub const TYPING: &str = "typing";
/// A large room's coalesced presence changes.
pub const PRESENCE_DIFF: &str = "presence_diff";
/// The history no longer covers what came after the client's
/// `Last-Event-ID`: some messages cannot be replayed.
pub const GAP: &str = "gap";
/// The server ends the stream (token expired, slow consumer); the data says
/// why.
pub const ERROR: &str = "error";

/// Appends one event to `out`.
///
/// `id` is written when given. The `event` line is always written, so every
/// event names itself (`message` is also the name `EventSource.onmessage`
/// listens to). Newlines in `data` become separate `data:` lines.
pub fn event(out: &mut String, id: Option<u64>, event: &str, data: &str) {
    if let Some(id) = id {
        // Writing to a String cannot fail.
        let _ = writeln!(out, "id: {id}");
    }
    out.push_str("event: ");
    push_single_line(out, event);
    out.push('\n');
    for line in lines(data) {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
}

/// Appends a comment (`: text`) and a blank line, which clients ignore (a
/// block without data dispatches nothing): a keep-alive that keeps proxies
/// from timing the stream out and finds peers that went away.
pub fn comment(out: &mut String, text: &str) {
    out.push_str(": ");
    push_single_line(out, text);
    out.push_str("\n\n");
}

/// Appends a `retry:` field: how long, in milliseconds, a client waits
/// before reconnecting.
pub fn retry(out: &mut String, millis: u64) {
    let _ = writeln!(out, "retry: {millis}\n");
}

/// The lines of `data`, split on `\r\n`, `\n` and `\r` as the client does.
fn lines(data: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let s = rest?;
        match s.find(['\r', '\n']) {
            Some(i) => {
                let skip = if s[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&s[i + skip..]);
                Some(&s[..i])
            }
            None => {
                rest = None;
                Some(s)
            }
        }
    })
}

fn push_single_line(out: &mut String, s: &str) {
    out.extend(
        s.chars()
            .map(|c| if c == '\r' || c == '\n' { ' ' } else { c }),
    );
}

/// Encoders of each event `/sse` sends; each appends one event to `out`.
pub mod encode {
    use super::*;

    /// `id: <seq>`, `event: <its event name>` (`message` for chat),
    /// `data: <the message object>`.
    pub fn message(out: &mut String, m: &Message) {
        let data = serde_json::to_string(m).unwrap_or_default();
        event(out, Some(m.seq), &m.event, &data);
    }

    /// `event: joined`, `data: {"room","user":{id,name}}`.
    pub fn joined(out: &mut String, room: &str, user: &User) {
        let data = json!({"room": room, "user": user}).to_string();
        event(out, None, JOINED, &data);
    }

    /// `event: left`, `data: {"room","user":{id,name}}`.
    pub fn left(out: &mut String, room: &str, user: &User) {
        let data = json!({"room": room, "user": user}).to_string();
        event(out, None, LEFT, &data);
    }

    /// `event: typing`, `data: {"room","user":{id,name},"typing"}`.
    pub fn typing(out: &mut String, room: &str, user: &User, typing: bool) {
        let data = json!({"room": room, "user": user, "typing": typing}).to_string();
        event(out, None, TYPING, &data);
    }

    /// `event: presence_diff`, `data: {"room","joined":[…],"left":[…],"count","complete"}`:
    /// a large room's changes of one interval.
    pub fn presence_diff(out: &mut String, diff: &crate::presence::Diff) {
        let data = json!({
            "room": diff.room,
            "joined": diff.joined,
            "left": diff.left,
            "count": diff.count,
            "complete": diff.complete,
        })
        .to_string();
        event(out, None, PRESENCE_DIFF, &data);
    }

    /// A room of the `ready` event: its epoch and last offset at the join.
    #[derive(Debug, Clone, Copy)]
    pub struct RoomState<'a> {
        /// Room name.
        pub room: &'a str,
        /// The room's history generation.
        pub epoch: &'a Epoch,
        /// Its last offset when the stream joined it.
        pub offset: Offset,
        /// Members, the stream's own user included.
        pub members: &'a [User],
    }

    /// `event: ready`, `data: {"user","rooms":[{room,epoch,offset,members}],"resumed"}`,
    /// with `id` when the stream sets the client's resume point (a fresh
    /// stream, or one whose resume fell into a gap).
    pub fn ready(
        out: &mut String,
        id: Option<u64>,
        user: &User,
        rooms: &[RoomState<'_>],
        resumed: bool,
    ) {
        let rooms: Vec<_> = rooms
            .iter()
            .map(|r| json!({"room": r.room, "epoch": r.epoch, "offset": r.offset, "members": r.members}))
            .collect();
        let data = json!({"user": user, "rooms": rooms, "resumed": resumed}).to_string();
        event(out, id, READY, &data);
    }

    /// `event: gap`, `data: {"lastEventId","message"}`: what came after
    /// `last_event_id` is no longer all retained.
    pub fn gap(out: &mut String, last_event_id: u64) {
        let data = json!({
            "lastEventId": last_event_id,
            "message": "some messages after this id are no longer retained; read the rooms' history",
        })
        .to_string();
        event(out, None, GAP, &data);
    }

    /// `event: error`, `data: {"code","message"}`: the server ends the
    /// stream.
    pub fn error(out: &mut String, code: &str, message: &str) {
        let data = json!({"code": code, "message": message}).to_string();
        event(out, None, ERROR, &data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(id: Option<u64>, name: &str, data: &str) -> String {
        let mut s = String::new();
        event(&mut s, id, name, data);
        s
    }

    #[test]
    fn an_event_is_its_fields_and_a_blank_line() {
        assert_eq!(
            one(Some(42), "message", r#"{"a":1}"#),
            "id: 42\nevent: message\ndata: {\"a\":1}\n\n"
        );
        assert_eq!(one(None, "joined", "x"), "event: joined\ndata: x\n\n");
    }

    #[test]
    fn newlines_in_data_become_data_lines() {
        assert_eq!(
            one(None, "m", "a\nb\r\nc\rd"),
            "event: m\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
        );
        assert_eq!(one(None, "m", ""), "event: m\ndata: \n\n");
        assert_eq!(one(None, "m", "a\n"), "event: m\ndata: a\ndata: \n\n");
    }

    #[test]
    fn names_and_comments_stay_on_one_line() {
        assert_eq!(one(None, "a\nid: 9", "x"), "event: a id: 9\ndata: x\n\n");
        let mut s = String::new();
        comment(&mut s, "keep\r\nalive");
        assert_eq!(s, ": keep  alive\n\n");
        let mut s = String::new();
        retry(&mut s, 2000);
        assert_eq!(s, "retry: 2000\n\n");
    }

    #[test]
    fn a_message_carries_its_seq_and_its_json_form() {
        let m = Message {
            id: "01J".into(),
            room_id: "general".into(),
            user_id: "u1".into(),
            user_name: "alice".into(),
            content: "two\nlines".into(),
            timestamp: 5,
            offset: Offset(3),
            seq: 99,
            event: crate::message::MESSAGE_EVENT.into(),
            args: false,
        };
        let mut s = String::new();
        encode::message(&mut s, &m);
        assert_eq!(
            s,
            "id: 99\nevent: message\ndata: {\"id\":\"01J\",\"roomId\":\"general\",\"userId\":\"u1\",\
             \"userName\":\"alice\",\"content\":\"two\\nlines\",\"timestamp\":5,\"offset\":3}\n\n"
        );
    }

    #[test]
    fn presence_typing_gap_and_error_have_no_id() {
        let u = User {
            id: "u1".into(),
            name: "alice".into(),
        };
        let mut s = String::new();
        encode::joined(&mut s, "a", &u);
        encode::left(&mut s, "a", &u);
        encode::typing(&mut s, "a", &u, true);
        encode::gap(&mut s, 7);
        encode::error(&mut s, "AUTH_EXPIRED", "token expired");
        assert!(!s.contains("id: "), "{s}");
        assert!(s.starts_with(
            "event: joined\ndata: {\"room\":\"a\",\"user\":{\"id\":\"u1\",\"name\":\"alice\"}}\n\n"
        ));
        assert!(
            s.contains("event: typing\ndata: {\"room\":\"a\",\"typing\":true,"),
            "{s}"
        );
        assert!(s.contains("event: gap\ndata: {\"lastEventId\":7,"), "{s}");
        assert!(s.ends_with(
            "event: error\ndata: {\"code\":\"AUTH_EXPIRED\",\"message\":\"token expired\"}\n\n"
        ));
    }

    #[test]
    fn ready_names_the_rooms() {
        let u = User {
            id: "u1".into(),
            name: "alice".into(),
        };
        let epoch = Epoch("E".into());
        let mut s = String::new();
        encode::ready(
            &mut s,
            Some(12),
            &u,
            &[encode::RoomState {
                room: "a",
                epoch: &epoch,
                offset: Offset(4),
                members: std::slice::from_ref(&u),
            }],
            false,
        );
        assert!(s.starts_with("id: 12\nevent: ready\ndata: {"), "{s}");
        let data = s.lines().nth(2).unwrap().strip_prefix("data: ").unwrap();
        let v: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(v["rooms"][0]["room"], "a");
        assert_eq!(v["rooms"][0]["offset"], 4);
        assert_eq!(v["resumed"], false);
    }
}
