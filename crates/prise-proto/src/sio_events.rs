//! The hub's events over Socket.IO: what a client emits and what the server
//! emits back, as typed values over the JSON arguments of an event.
//!
//! Two vocabularies share one namespace. The seed chat's single-room API
//! (`joinRoom`, `sendMessage`, `startTyping`, `stopTyping`) acts on the
//! socket's current room and reports failures as `error` events; the
//! multi-room API (`join`, `leave`, `publish`, `history`, `presence`)
//! answers in its ack, `{error: {code, message}}` on failure.
//!
//! Every event the server emits carries, as its last argument, the resume
//! offset of Socket.IO's connection state recovery (the hub-wide seq of the
//! newest message sent to the socket, as a string).
//!
//! ```text
//!  EVENT name, args ──▶ ClientEvent::decode ──▶ hub
//!  hub push ──▶ encode::{message, user_joined, user_left, presence_diff, typing, error} ──▶ args
//!  hub answer ──▶ encode::{join_ack, publish_ack, …} ──▶ ack::args
//! ```

use serde_json::{Value, json};

use crate::message::{Epoch, Message, Offset, User};
use crate::presence::{Diff, Page, put_page};

/// Event names the server emits.
pub mod names {
    /// A message of a room the socket is in.
    pub const MESSAGE: &str = "message";
    /// A user's first session entered a room.
    pub const USER_JOINED: &str = "userJoined";
    /// A user's last session left a room.
    pub const USER_LEFT: &str = "userLeft";
    /// Who came and went in a large room during one interval.
    pub const PRESENCE_DIFF: &str = "presenceDiff";
    /// Someone started or stopped typing.
    pub const TYPING: &str = "typing";
    /// A refusal or an end of session: `{code, message}`.
    pub const ERROR: &str = "error";
}

/// An event a client emits.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// `joinRoom(room)`: leave the current room, join this one.
    JoinRoom(String),
    /// `sendMessage(content, ack)`: publish to the current room.
    SendMessage(Value),
    /// `startTyping()` (true) / `stopTyping()` (false) in the current room.
    Typing(bool),
    /// `join(room | {room, since?, epoch?}, ack)`.
    Join {
        /// Room name.
        room: String,
        /// Replay messages after this offset.
        since: Option<Offset>,
        /// The epoch `since` belongs to.
        epoch: Option<Epoch>,
    },
    /// `leave(room, ack)`.
    Leave(String),
    /// `publish({room, content}, ack)`.
    Publish {
        /// Room name.
        room: String,
        /// Any JSON value.
        content: Value,
    },
    /// `history({room, since?, limit?}, ack)`.
    History {
        /// Room name.
        room: String,
        /// Messages after this offset.
        since: Option<Offset>,
        /// How many at most.
        limit: Option<usize>,
    },
    /// `presence(room | {room, after?, limit?}, ack)`: a page of members.
    Presence {
        /// Room name.
        room: String,
        /// The `next` cursor of the previous page.
        after: Option<String>,
        /// Most members to return.
        limit: Option<usize>,
    },
}

/// Why an event is not one of the hub's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The name is not in the vocabulary (kept to 64 bytes).
    #[error("unknown event {0}")]
    Unknown(String),
}

impl EventError {
    /// The protocol error code.
    pub fn code(&self) -> &'static str {
        "BAD_REQUEST"
    }
}

/// A string argument, or `""` (which the hub refuses as a room name).
fn room_of(v: &Value) -> String {
    v.as_str().unwrap_or("").to_owned()
}

fn field_str(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_owned()
}

fn field_offset(v: &Value, key: &str) -> Option<Offset> {
    v.get(key).and_then(Value::as_u64).map(Offset)
}

fn field_limit(v: &Value) -> Option<usize> {
    v.get("limit")
        .and_then(Value::as_u64)
        .map(|l| usize::try_from(l).unwrap_or(usize::MAX))
}

fn cut(name: &str, max: usize) -> String {
    crate::limits::clip(name, max).to_owned()
}

impl ClientEvent {
    /// Decodes an event from its name and arguments (the ack callback is
    /// not among them). Arguments of the wrong type read as empty, so the
    /// hub's own checks answer them (`BAD_NAME` for a room that is not a
    /// string, say).
    ///
    /// # Errors
    /// [`EventError::Unknown`] for a name outside the vocabulary.
    /// The arguments the event uses are moved out of `args` (content is
    /// never copied); an unknown event leaves them as they were.
    pub fn decode(name: &str, args: &mut [Value]) -> Result<Self, EventError> {
        let mut first = Value::Null;
        let arg = args.first_mut().unwrap_or(&mut first);
        Ok(match name {
            "joinRoom" => Self::JoinRoom(room_of(arg)),
            "sendMessage" => Self::SendMessage(std::mem::take(arg)),
            "startTyping" => Self::Typing(true),
            "stopTyping" => Self::Typing(false),
            "join" => match arg {
                Value::Object(_) => Self::Join {
                    room: field_str(arg, "room"),
                    since: field_offset(arg, "since"),
                    epoch: arg
                        .get("epoch")
                        .and_then(Value::as_str)
                        .map(|e| Epoch(e.to_owned())),
                },
                other => Self::Join {
                    room: room_of(other),
                    since: None,
                    epoch: None,
                },
            },
            "leave" => Self::Leave(room_of(arg)),
            "publish" => Self::Publish {
                room: field_str(arg, "room"),
                content: arg
                    .get_mut("content")
                    .map(std::mem::take)
                    .unwrap_or(Value::Null),
            },
            "history" => Self::History {
                room: field_str(arg, "room"),
                since: field_offset(arg, "since"),
                limit: field_limit(arg),
            },
            "presence" => match arg {
                Value::Object(_) => Self::Presence {
                    room: field_str(arg, "room"),
                    after: arg.get("after").and_then(Value::as_str).map(str::to_owned),
                    limit: field_limit(arg),
                },
                other => Self::Presence {
                    room: room_of(other),
                    after: None,
                    limit: None,
                },
            },
            other => return Err(EventError::Unknown(cut(other, 64))),
        })
    }

    /// Which event this is, without its arguments.
    pub fn kind(&self) -> EventKind {
        match self {
            Self::JoinRoom(_) => EventKind::JoinRoom,
            Self::SendMessage(_) => EventKind::SendMessage,
            Self::Typing(_) => EventKind::Typing,
            Self::Join { .. } => EventKind::Join,
            Self::Leave(_) => EventKind::Leave,
            Self::Publish { .. } => EventKind::Publish,
            Self::History { .. } => EventKind::History,
            Self::Presence { .. } => EventKind::Presence,
        }
    }

    /// See [`EventKind::is_chat`].
    pub fn is_chat(&self) -> bool {
        self.kind().is_chat()
    }

    /// See [`EventKind::has_ack`].
    pub fn has_ack(&self) -> bool {
        self.kind().has_ack()
    }
}

/// The kind of a [`ClientEvent`]: what a transport needs to know of it
/// once its arguments went into a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// `joinRoom`.
    JoinRoom,
    /// `sendMessage`.
    SendMessage,
    /// `startTyping` / `stopTyping`.
    Typing,
    /// `join`.
    Join,
    /// `leave`.
    Leave,
    /// `publish`.
    Publish,
    /// `history`.
    History,
    /// `presence`.
    Presence,
}

impl EventKind {
    /// Is this an event of the seed chat's single-room API, whose failures
    /// are reported as `error` events?
    pub fn is_chat(self) -> bool {
        matches!(self, Self::JoinRoom | Self::SendMessage | Self::Typing)
    }

    /// Does the contract define an ack for this event? A client asking for
    /// one on an event without it is the official client's retry queue,
    /// which reads the first ack argument as an error.
    pub fn has_ack(self) -> bool {
        !matches!(self, Self::JoinRoom | Self::Typing)
    }
}

/// The resume offset argument: a seq as a string.
pub fn seq_arg(seq: u64) -> Value {
    Value::String(seq.to_string())
}

/// `{code, message}`: the body of an `error` event and of a failed ack.
pub fn error_value(code: &str, message: &str) -> Value {
    json!({"code": code, "message": message})
}

/// Arguments of the events the server emits, resume offset last.
pub mod encode {
    use super::*;

    /// `message(msg, offset)`.
    pub fn message(m: &Message, offset: u64) -> Vec<Value> {
        vec![
            serde_json::to_value(m).unwrap_or(Value::Null),
            seq_arg(offset),
        ]
    }

    /// A named event (any event but `message`): its arguments as they were
    /// emitted (`content`, or the elements of `content` when the message
    /// holds an argument list), resume offset last.
    pub fn event(m: &Message, offset: u64) -> Vec<Value> {
        let mut v = match (&m.content, m.args) {
            (Value::Array(items), true) => items.clone(),
            (c, _) => vec![c.clone()],
        };
        v.push(seq_arg(offset));
        v
    }

    /// The ack of a relayed event: `{rooms: [{room, offset}]}`, one entry
    /// per room it was published in (`offset` null when ephemeral).
    pub fn relay_ack<'a>(published: impl Iterator<Item = (&'a str, Offset)>) -> Value {
        let rooms: Vec<Value> = published
            .map(|(room, o)| {
                let offset = if o.is_none() { Value::Null } else { o.0.into() };
                json!({"room": room, "offset": offset})
            })
            .collect();
        json!({"rooms": rooms})
    }

    /// `userJoined({id, name, roomId}, offset)`.
    pub fn user_joined(user: &User, room: &str, offset: u64) -> Vec<Value> {
        vec![
            json!({"id": user.id, "name": user.name, "roomId": room}),
            seq_arg(offset),
        ]
    }

    /// `userLeft(userId, offset)`.
    pub fn user_left(user: &User, offset: u64) -> Vec<Value> {
        vec![Value::String(user.id.clone()), seq_arg(offset)]
    }

    /// `typing({userId, userName, roomId, typing}, offset)`.
    pub fn typing(user: &User, room: &str, typing: bool, offset: u64) -> Vec<Value> {
        vec![
            json!({"userId": user.id, "userName": user.name, "roomId": room, "typing": typing}),
            seq_arg(offset),
        ]
    }

    /// `error({code, message}, offset)`.
    pub fn error(code: &str, message: &str, offset: u64) -> Vec<Value> {
        vec![error_value(code, message), seq_arg(offset)]
    }

    /// `presenceDiff({roomId, joined, left, count, complete}, offset)`.
    pub fn presence_diff(diff: &Diff, offset: u64) -> Vec<Value> {
        vec![
            json!({
                "roomId": diff.room,
                "joined": diff.joined,
                "left": diff.left,
                "count": diff.count,
                "complete": diff.complete,
            }),
            seq_arg(offset),
        ]
    }

    /// The `join` ack: `{room, epoch, offset, members, count, complete,
    /// next?, recovered?}`: the first page of members, not all.
    pub fn join_ack(
        room: &str,
        epoch: &Epoch,
        offset: Offset,
        members: &Page,
        recovered: Option<bool>,
    ) -> Value {
        let mut v = json!({"room": room, "epoch": epoch, "offset": offset});
        put_page(&mut v, members);
        if let (Some(r), Some(o)) = (recovered, v.as_object_mut()) {
            o.insert("recovered".into(), r.into());
        }
        v
    }

    /// The `leave` ack: `{room}`.
    pub fn leave_ack(room: &str) -> Value {
        json!({"room": room})
    }

    /// The `publish` ack: `{room, offset, id}`.
    pub fn publish_ack(room: &str, offset: Offset, id: &str) -> Value {
        json!({"room": room, "offset": offset, "id": id})
    }

    /// The `sendMessage` ack: the message id.
    pub fn send_message_ack(id: &str) -> Value {
        Value::String(id.to_owned())
    }

    /// The `history` ack: `{room, epoch, messages, complete}`.
    pub fn history(
        room: &str,
        epoch: &Epoch,
        messages: &[std::sync::Arc<Message>],
        complete: bool,
    ) -> Value {
        let msgs: Vec<&Message> = messages.iter().map(|m| m.as_ref()).collect();
        json!({"room": room, "epoch": epoch, "messages": msgs, "complete": complete})
    }

    /// The `presence` ack: `{room, members, count, complete, next?}`.
    pub fn presence(room: &str, page: &Page) -> Value {
        let mut v = json!({"room": room});
        put_page(&mut v, page);
        v
    }
}

/// The arguments of an ack.
pub mod ack {
    use super::*;

    /// An ack's arguments: `value` or `{error}` normally; `null, value` or
    /// `error` for error-first clients (the official client's retry queue).
    /// `Ok(None)` answers an event that reports nothing.
    pub fn args(answer: Result<Option<Value>, Value>, error_first: bool) -> Vec<Value> {
        match (answer, error_first) {
            (Ok(v), false) => vec![v.unwrap_or(Value::Null)],
            (Err(e), false) => vec![json!({"error": e})],
            (Ok(Some(v)), true) => vec![Value::Null, v],
            (Ok(None), true) => vec![Value::Null],
            (Err(e), true) => vec![e],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_chat_events_decode() {
        assert_eq!(
            ClientEvent::decode("joinRoom", &mut [json!("general")]),
            Ok(ClientEvent::JoinRoom("general".into()))
        );
        assert_eq!(
            ClientEvent::decode("sendMessage", &mut [json!("hi")]),
            Ok(ClientEvent::SendMessage(json!("hi")))
        );
        assert_eq!(
            ClientEvent::decode("startTyping", &mut []),
            Ok(ClientEvent::Typing(true))
        );
        assert_eq!(
            ClientEvent::decode("stopTyping", &mut []),
            Ok(ClientEvent::Typing(false))
        );
        assert!(ClientEvent::JoinRoom(String::new()).is_chat());
        assert!(!ClientEvent::JoinRoom(String::new()).has_ack());
        assert!(ClientEvent::SendMessage(Value::Null).has_ack());
    }

    #[test]
    fn the_multi_room_events_decode() {
        assert_eq!(
            ClientEvent::decode(
                "join",
                &mut [json!({"room": "a", "since": 3, "epoch": "e"})]
            ),
            Ok(ClientEvent::Join {
                room: "a".into(),
                since: Some(Offset(3)),
                epoch: Some(Epoch("e".into()))
            })
        );
        assert_eq!(
            ClientEvent::decode("join", &mut [json!("a")]),
            Ok(ClientEvent::Join {
                room: "a".into(),
                since: None,
                epoch: None
            })
        );
        assert_eq!(
            ClientEvent::decode("publish", &mut [json!({"room": "a", "content": {"x": 1}})]),
            Ok(ClientEvent::Publish {
                room: "a".into(),
                content: json!({"x": 1})
            })
        );
        assert_eq!(
            ClientEvent::decode("history", &mut [json!({"room": "a", "limit": 5})]),
            Ok(ClientEvent::History {
                room: "a".into(),
                since: None,
                limit: Some(5)
            })
        );
        assert_eq!(
            ClientEvent::decode("leave", &mut [json!("a")]),
            Ok(ClientEvent::Leave("a".into()))
        );
        assert_eq!(
            ClientEvent::decode("presence", &mut [json!("a")]),
            Ok(ClientEvent::Presence {
                room: "a".into(),
                after: None,
                limit: None
            })
        );
        assert_eq!(
            ClientEvent::decode(
                "presence",
                &mut [json!({"room": "a", "after": "YQox", "limit": 10})]
            ),
            Ok(ClientEvent::Presence {
                room: "a".into(),
                after: Some("YQox".into()),
                limit: Some(10)
            })
        );
        // A limit of the wrong type reads as none; the server caps the rest.
        assert_eq!(
            ClientEvent::decode("presence", &mut [json!({"room": "a", "limit": -3})]),
            Ok(ClientEvent::Presence {
                room: "a".into(),
                after: None,
                limit: None
            })
        );
        assert!(
            !ClientEvent::Presence {
                room: "a".into(),
                after: None,
                limit: None
            }
            .is_chat()
        );
    }

    #[test]
    fn wrong_argument_types_read_as_empty_rooms() {
        assert_eq!(
            ClientEvent::decode("join", &mut [json!(5)]),
            Ok(ClientEvent::Join {
                room: String::new(),
                since: None,
                epoch: None
            })
        );
        assert_eq!(
            ClientEvent::decode("publish", &mut []),
            Ok(ClientEvent::Publish {
                room: String::new(),
                content: Value::Null
            })
        );
        assert_eq!(
            ClientEvent::decode("joinRoom", &mut [json!({"room": "a"})]),
            Ok(ClientEvent::JoinRoom(String::new()))
        );
    }

    #[test]
    fn unknown_names_are_cut_on_a_character_boundary() {
        let name = format!("{}\u{5E1A}", "e".repeat(63));
        assert_eq!(
            ClientEvent::decode(&name, &mut []),
            Err(EventError::Unknown("e".repeat(63)))
        );
    }

    #[test]
    fn pushes_carry_the_resume_offset_last() {
        let u = User {
            id: "u1".into(),
            name: "alice".into(),
        };
        assert_eq!(
            encode::user_joined(&u, "a", 7),
            vec![
                json!({"id": "u1", "name": "alice", "roomId": "a"}),
                json!("7")
            ]
        );
        assert_eq!(encode::user_left(&u, 7), vec![json!("u1"), json!("7")]);
        assert_eq!(
            encode::typing(&u, "a", true, 0)[0],
            json!({"userId": "u1", "userName": "alice", "roomId": "a", "typing": true})
        );
        assert_eq!(
            encode::error("RATE_LIMITED", "slow down", 3),
            vec![
                json!({"code": "RATE_LIMITED", "message": "slow down"}),
                json!("3")
            ]
        );
    }

    #[test]
    fn events_keep_their_arguments() {
        let mut m = Message {
            id: "1".into(),
            room_id: "a".into(),
            user_id: "u".into(),
            user_name: "n".into(),
            content: json!([1, 2]),
            timestamp: 0,
            offset: Offset(1),
            event: "move".into(),
            args: true,
            seq: 9,
        };
        assert_eq!(encode::event(&m, 9), vec![json!(1), json!(2), json!("9")]);
        m.args = false;
        assert_eq!(encode::event(&m, 9), vec![json!([1, 2]), json!("9")]);
        assert_eq!(
            encode::relay_ack([("a", Offset(3)), ("b", Offset::ZERO)].into_iter()),
            json!({"rooms": [{"room": "a", "offset": 3}, {"room": "b", "offset": null}]})
        );
    }

    #[test]
    fn acks_are_error_first_only_when_asked() {
        let v = json!({"room": "a"});
        let e = error_value("NO_ROOM", "x");
        assert_eq!(ack::args(Ok(Some(v.clone())), false), vec![v.clone()]);
        assert_eq!(ack::args(Ok(None), false), vec![Value::Null]);
        assert_eq!(ack::args(Err(e.clone()), false), vec![json!({"error": e})]);
        assert_eq!(ack::args(Ok(Some(v.clone())), true), vec![Value::Null, v]);
        assert_eq!(ack::args(Ok(None), true), vec![Value::Null]);
        assert_eq!(ack::args(Err(e.clone()), true), vec![e]);
    }

    #[test]
    fn the_join_ack_names_recovered_only_when_known() {
        let epoch = Epoch("e".into());
        let empty = Page::default();
        let fresh = encode::join_ack("a", &epoch, Offset(2), &empty, None);
        assert!(fresh.get("recovered").is_none());
        let back = encode::join_ack("a", &epoch, Offset(2), &empty, Some(true));
        assert_eq!(back["recovered"], json!(true));
    }

    #[test]
    fn the_join_ack_and_presence_carry_one_page_and_the_count() {
        let u = User {
            id: "u1".into(),
            name: "alice".into(),
        };
        let page = Page {
            members: vec![u.clone()],
            count: 20_000,
            next: Some(crate::presence::Cursor::after(&u)),
        };
        let v = encode::join_ack("a", &Epoch("e".into()), Offset(0), &page, None);
        assert_eq!(v["count"], json!(20_000));
        assert_eq!(v["complete"], json!(false));
        assert_eq!(v["members"], json!([{"id": "u1", "name": "alice"}]));
        assert_eq!(v["next"], json!(page.next_text()));
        let v = encode::presence("a", &Page::default());
        assert_eq!(
            v,
            json!({"room": "a", "members": [], "count": 0, "complete": true})
        );
    }

    #[test]
    fn a_presence_diff_carries_the_resume_offset_last() {
        let d = Diff {
            room: "big".into(),
            joined: Vec::new(),
            left: vec![User {
                id: "u1".into(),
                name: "alice".into(),
            }],
            count: 4,
            complete: false,
        };
        assert_eq!(
            encode::presence_diff(&d, 9),
            vec![
                json!({"roomId": "big", "joined": [], "left": [{"id": "u1", "name": "alice"}],
                       "count": 4, "complete": false}),
                json!("9")
            ]
        );
    }
}
