//! Everything the server writes on a line connection: answers, pushes,
//! errors and the greeting. Each function appends whole lines (ending in
//! `\n`) to `out`; user-supplied text is kept to one line.

use std::fmt::Write as _;

use crate::message::{Message, Offset, RoomInfo};
use crate::presence::Diff;

/// Replaces line breaks so `text` cannot start a line of its own.
fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains(['\r', '\n']) {
        std::borrow::Cow::Owned(text.replace(['\r', '\n'], " "))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// `HELLO prise/<version> line/1 name=<name>[ auth=required] (HELP for commands)`.
pub fn hello(out: &mut String, version: &str, name: &str, auth_required: bool) {
    let auth = if auth_required { " auth=required" } else { "" };
    let _ = writeln!(
        out,
        "HELLO prise/{version} {} name={name}{auth} (HELP for commands)",
        super::PROTOCOL
    );
}

/// An offset as a word: `-` for none (an ephemeral message).
fn offset_word(o: Offset) -> OffsetWord {
    OffsetWord(o)
}

struct OffsetWord(Offset);

impl std::fmt::Display for OffsetWord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_none() {
            f.write_str("-")
        } else {
            self.0.fmt(f)
        }
    }
}

/// An event name as one word: bare when it is one already, else quoted as
/// a JSON string (`"chat message"`), as [`super::Command::parse`] reads it.
pub fn event_word(name: &str) -> std::borrow::Cow<'_, str> {
    if name.is_empty() || name.starts_with('"') || name.contains(char::is_whitespace) {
        std::borrow::Cow::Owned(serde_json::Value::String(name.to_owned()).to_string())
    } else {
        std::borrow::Cow::Borrowed(name)
    }
}

/// A message, live or replayed: `MSG room offset user text` for a chat
/// message, `EVENT room offset user event json` for any other event. The
/// offset of an ephemeral message is `-`.
pub fn message(out: &mut String, m: &Message) {
    if m.is_chat() {
        let _ = writeln!(
            out,
            "MSG {} {} {} {}",
            m.room_id,
            offset_word(m.offset),
            m.user_name,
            m.content_text()
        );
    } else {
        let _ = writeln!(
            out,
            "EVENT {} {} {} {} {}",
            m.room_id,
            offset_word(m.offset),
            m.user_name,
            event_word(&m.event),
            m.content
        );
    }
}

/// `OK offset`: published (`OK -` for an ephemeral message).
pub fn published(out: &mut String, offset: Offset) {
    let _ = writeln!(out, "OK {}", offset_word(offset));
}

/// `ERR CODE message`.
pub fn error(out: &mut String, code: &str, message: &str) {
    let _ = writeln!(out, "ERR {code} {}", one_line(message));
}

/// `BYE [reason]`: the last line before the server closes.
pub fn bye(out: &mut String, reason: Option<&str>) {
    match reason {
        Some(r) => {
            let _ = writeln!(out, "BYE {}", one_line(r));
        }
        None => out.push_str("BYE\n"),
    }
}

/// `OK`: a command with nothing to report succeeded.
pub fn ok(out: &mut String) {
    out.push_str("OK\n");
}

/// `OK word`: a name, a room or a count.
pub fn ok_with(out: &mut String, word: impl std::fmt::Display) {
    let _ = writeln!(out, "OK {word}");
}

/// `OK name exp=<unix seconds>`: authenticated.
pub fn authenticated(out: &mut String, name: &str, exp: u64) {
    let _ = writeln!(out, "OK {name} exp={exp}");
}

/// `OK room offset=<n> members=<n> epoch=<epoch>`: joined.
pub fn joined_room(out: &mut String, room: &str, offset: Offset, members: usize, epoch: &str) {
    let _ = writeln!(
        out,
        "OK {room} offset={offset} members={members} epoch={epoch}"
    );
}

/// `PONG [token]`.
pub fn pong(out: &mut String, token: Option<&str>) {
    match token {
        Some(t) => {
            let _ = writeln!(out, "PONG {}", one_line(t));
        }
        None => out.push_str("PONG\n"),
    }
}

/// `TIME <RFC 3339>`.
pub fn time(out: &mut String, rfc3339: &str) {
    let _ = writeln!(out, "TIME {rfc3339}");
}

/// `MEMBERS room <count> name…`: a page of members; `count` is the room's
/// whole count, which the page may be shorter than (then `NEXT` follows).
pub fn members<'a>(
    out: &mut String,
    room: &str,
    count: usize,
    names: impl Iterator<Item = &'a str>,
) {
    let _ = write!(out, "MEMBERS {room} {count} ");
    let mut first = true;
    for n in names {
        if !first {
            out.push(' ');
        }
        out.push_str(n);
        first = false;
    }
    out.push('\n');
}

/// `NEXT room <cursor>`: after a `MEMBERS` page that does not reach the end,
/// the cursor to pass to `WHO room <cursor>` for the next page.
pub fn next(out: &mut String, room: &str, cursor: &str) {
    let _ = writeln!(out, "NEXT {room} {cursor}");
}

/// `PRESENCE room <count> +joined… -left…[ *]`: who came and went in a
/// large room during one interval; `*` ends a diff cut at
/// [`crate::presence::MAX_DIFF_USERS`] a way.
pub fn presence_diff(out: &mut String, diff: &Diff) {
    let _ = write!(out, "PRESENCE {} {}", diff.room, diff.count);
    for u in &diff.joined {
        let _ = write!(out, " +{}", u.name);
    }
    for u in &diff.left {
        let _ = write!(out, " -{}", u.name);
    }
    if !diff.complete {
        out.push_str(" *");
    }
    out.push('\n');
}

/// `ROOM name members offset`: one line of a `ROOMS` answer.
pub fn room(out: &mut String, r: &RoomInfo) {
    let _ = writeln!(out, "ROOM {} {} {}", r.name, r.members, r.offset);
}

/// The `HELP` answer: one `HELP …` line per command, then `OK`.
pub fn help(out: &mut String) {
    for h in super::HELP {
        let _ = writeln!(out, "HELP {h}");
    }
    ok(out);
}

/// `JOINED room name`: a user's first session entered the room.
pub fn joined(out: &mut String, room: &str, name: &str) {
    let _ = writeln!(out, "JOINED {room} {name}");
}

/// `LEFT room name`: a user's last session left the room.
pub fn left(out: &mut String, room: &str, name: &str) {
    let _ = writeln!(out, "LEFT {room} {name}");
}

/// `TYPING room name on|off`.
pub fn typing(out: &mut String, room: &str, name: &str, on: bool) {
    let on = if on { "on" } else { "off" };
    let _ = writeln!(out, "TYPING {room} {name} {on}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_single_lines() {
        let mut out = String::new();
        error(&mut out, "BAD_REQUEST", "two\nlines\r");
        bye(&mut out, Some("slow\nconsumer"));
        pong(&mut out, Some("x\ny"));
        assert_eq!(
            out,
            "ERR BAD_REQUEST two lines \nBYE slow consumer\nPONG x y\n"
        );
    }

    #[test]
    fn every_line_kind_has_its_documented_shape() {
        let mut out = String::new();
        hello(&mut out, "0.1.0", "guest-1", true);
        ok(&mut out);
        ok_with(&mut out, 42);
        authenticated(&mut out, "alice", 1_700_000_000);
        joined_room(&mut out, "general", Offset(3), 2, "01JD");
        pong(&mut out, None);
        time(&mut out, "2026-11-22T00:41:07.120Z");
        members(&mut out, "general", 2, ["alice", "bob"].into_iter());
        members(&mut out, "empty", 0, std::iter::empty());
        members(&mut out, "big", 300, ["alice"].into_iter());
        next(&mut out, "big", "YWxpY2UKMQ");
        room(
            &mut out,
            &RoomInfo {
                name: "general".into(),
                members: 2,
                offset: Offset(3),
            },
        );
        joined(&mut out, "general", "bob");
        left(&mut out, "general", "bob");
        typing(&mut out, "general", "bob", false);
        bye(&mut out, None);
        let expected = "HELLO prise/0.1.0 line/1 name=guest-1 auth=required (HELP for commands)\n\
            OK\nOK 42\nOK alice exp=1700000000\nOK general offset=3 members=2 epoch=01JD\n\
            PONG\nTIME 2026-11-22T00:41:07.120Z\nMEMBERS general 2 alice bob\nMEMBERS empty 0 \n\
            MEMBERS big 300 alice\nNEXT big YWxpY2UKMQ\n\
            ROOM general 2 3\nJOINED general bob\nLEFT general bob\nTYPING general bob off\nBYE\n";
        assert_eq!(out, expected);
    }

    #[test]
    fn events_are_one_line_with_a_quoted_name_when_needed() {
        let mut m = Message {
            id: "x".into(),
            room_id: "/game:a".into(),
            user_id: "u".into(),
            user_name: "bob".into(),
            content: serde_json::json!({"t": "a\nb"}),
            timestamp: 0,
            offset: Offset(4),
            event: "move".into(),
            args: false,
            seq: 0,
        };
        let mut out = String::new();
        message(&mut out, &m);
        m.event = "chat message".into();
        m.offset = Offset::ZERO;
        message(&mut out, &m);
        published(&mut out, Offset(4));
        published(&mut out, Offset::ZERO);
        assert_eq!(
            out,
            "EVENT /game:a 4 bob move {\"t\":\"a\\nb\"}\n\
             EVENT /game:a - bob \"chat message\" {\"t\":\"a\\nb\"}\nOK 4\nOK -\n"
        );
    }

    #[test]
    fn a_presence_diff_is_one_line_of_signed_names() {
        let user = |n: &str| crate::message::User {
            id: n.into(),
            name: n.into(),
        };
        let mut diff = Diff {
            room: "big".into(),
            joined: vec![user("a"), user("b")],
            left: vec![user("c")],
            count: 1200,
            complete: true,
        };
        let mut out = String::new();
        presence_diff(&mut out, &diff);
        diff.joined.clear();
        diff.complete = false;
        presence_diff(&mut out, &diff);
        assert_eq!(out, "PRESENCE big 1200 +a +b -c\nPRESENCE big 1200 -c *\n");
    }

    #[test]
    fn help_ends_with_ok() {
        let mut out = String::new();
        help(&mut out);
        assert!(out.lines().all(|l| l.starts_with("HELP ") || l == "OK"));
        assert!(out.ends_with("\nOK\n"));
    }
}
