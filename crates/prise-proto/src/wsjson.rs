//! The WebSocket JSON protocol at `/ws`: one JSON object per text frame, tagged
//! by `type`.
//!
//! Requests may carry an `id` (any JSON value) that the answer echoes
//! unchanged. Requests: `auth`, `ping`, `join`, `leave`, `message`, `emit`,
//! `rpc`, `typing`, `history`, `presence`, `rooms`. Answers and pushes:
//! `auth_success`, `auth_failed`, `pong`, `ack`, `rpc_result`, `message`,
//! `event`, `joined`, `left`, `presence_diff`, `typing`, `history`,
//! `presence`, `rooms`, `error`.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::message::{Epoch, Message, Offset, RoomInfo, User};
use crate::presence::{Diff, Page, put_page};

/// A request from a client.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// `{"type":"auth","token"?,"name"?}`.
    Auth {
        /// A token (JWT) to check.
        token: Option<String>,
        /// A display name, for anonymous access.
        name: Option<String>,
    },
    /// `{"type":"ping","timestamp"?}` → `pong` with the same timestamp.
    Ping {
        /// Echoed back unchanged.
        timestamp: Option<Value>,
    },
    /// `{"type":"join","room","since"?,"name"?}`.
    Join {
        /// Room name.
        room: String,
        /// Replay messages after this offset.
        since: Option<Offset>,
        /// The epoch the `since` offset belongs to, if the client knows it.
        epoch: Option<Epoch>,
        /// A display name, for anonymous access.
        name: Option<String>,
    },
    /// `{"type":"leave","room"}`.
    Leave {
        /// Room name.
        room: String,
    },
    /// `{"type":"message","room","content"}` → `ack {offset}`.
    Message {
        /// Room name.
        room: String,
        /// Any JSON value.
        content: Value,
    },
    /// `{"type":"emit","room","event","data"}` → `ack {room, offset}`: a
    /// named event.
    Emit {
        /// Room name.
        room: String,
        /// Event name.
        event: String,
        /// Any JSON value (null when absent).
        #[serde(default)]
        data: Value,
    },
    /// `{"type":"rpc","method","data"}` → `rpc_result {id, result}` or
    /// `rpc_result {id, error: {code, message}}`: a request the backend's
    /// `rpc` hook answers.
    Rpc {
        /// What is asked.
        method: String,
        /// Its argument (null when absent).
        #[serde(default)]
        data: Value,
    },
    /// `{"type":"typing","room","typing"}`.
    Typing {
        /// Room name.
        room: String,
        /// Typing or stopped (default true).
        #[serde(default = "yes")]
        typing: bool,
    },
    /// `{"type":"history","room","since"?,"limit"?}`.
    History {
        /// Room name.
        room: String,
        /// Messages after this offset; without it, the last `limit`.
        since: Option<Offset>,
        /// Most messages to return.
        limit: Option<usize>,
    },
    /// `{"type":"presence","room","after"?,"limit"?}`: a page of members.
    Presence {
        /// Room name.
        room: String,
        /// The `next` cursor of the previous page.
        after: Option<String>,
        /// Most members to return (capped at [`crate::presence::MAX_PAGE`]).
        limit: Option<usize>,
    },
    /// `{"type":"rooms"}`.
    Rooms,
}

/// A decoded request with its optional correlation id.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The client's `id`, echoed in the answer.
    pub id: Option<Value>,
    /// The request.
    pub frame: ClientFrame,
}

/// Why a text frame was refused. The `id` is kept when it could be read, so the
/// `error` answer can carry it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct DecodeError {
    /// The request id, if the frame was an object with one.
    pub id: Option<Value>,
    /// What is wrong, for the `error` answer.
    pub message: String,
}

fn yes() -> bool {
    true
}

impl Request {
    /// Decodes one text frame. The caller has already capped the frame size.
    ///
    /// # Errors
    /// A [`DecodeError`] when the text is not a JSON object with a known
    /// `type` and the fields that type needs.
    pub fn decode(text: &str) -> Result<Request, DecodeError> {
        let mut value: Value = serde_json::from_str(text).map_err(|e| DecodeError {
            id: None,
            message: format!("invalid JSON: {e}"),
        })?;
        let Some(obj) = value.as_object_mut() else {
            return Err(DecodeError {
                id: None,
                message: "expected a JSON object".into(),
            });
        };
        let id = obj.remove("id");
        let frame: ClientFrame = serde_json::from_value(value).map_err(|e| DecodeError {
            id: id.clone(),
            message: e.to_string(),
        })?;
        Ok(Request { id, frame })
    }
}

fn with_id(mut v: Value, id: Option<&Value>) -> String {
    if let (Some(id), Some(obj)) = (id, v.as_object_mut()) {
        obj.insert("id".into(), id.clone());
    }
    v.to_string()
}

/// Encoders for everything the server sends. Each returns one text frame.
pub mod encode {
    use super::*;

    /// `{"type":"auth_success","user":{id,name}}`.
    pub fn auth_success(user: &User) -> String {
        json!({"type": "auth_success", "user": user}).to_string()
    }

    /// `{"type":"auth_failed","message"}` (the server then closes with 4001).
    pub fn auth_failed(message: &str) -> String {
        json!({"type": "auth_failed", "message": message}).to_string()
    }

    /// `{"type":"pong","timestamp"}`.
    pub fn pong(timestamp: Option<&Value>) -> String {
        json!({"type": "pong", "timestamp": timestamp}).to_string()
    }

    /// `{"type":"ack","id"?, …fields}`: the answer to join, leave and message.
    pub fn ack(id: Option<&Value>, fields: Value) -> String {
        let mut v = json!({"type": "ack"});
        if let (Some(o), Value::Object(f)) = (v.as_object_mut(), fields) {
            o.extend(f);
        }
        with_id(v, id)
    }

    /// The answer to an `rpc`: `{"type":"rpc_result","id"?,"result"}`.
    pub fn rpc_result(id: Option<&Value>, result: &Value) -> String {
        with_id(json!({"type": "rpc_result", "result": result}), id)
    }

    /// A refused `rpc`: `{"type":"rpc_result","id"?,"error":{code,message}}`.
    pub fn rpc_error(id: Option<&Value>, code: &str, message: &str) -> String {
        with_id(
            json!({"type": "rpc_result", "error": {"code": code, "message": message}}),
            id,
        )
    }

    /// The join answer: `ack {id?, room, epoch, offset, members, count,
    /// complete, next?, recovered?}`: the first page of members, not all.
    pub fn join_ack(
        id: Option<&Value>,
        room: &str,
        epoch: &Epoch,
        offset: Offset,
        members: &Page,
        recovered: Option<bool>,
    ) -> String {
        let mut f = json!({"room": room, "epoch": epoch, "offset": offset});
        put_page(&mut f, members);
        if let (Some(r), Some(o)) = (recovered, f.as_object_mut()) {
            o.insert("recovered".into(), r.into());
        }
        ack(id, f)
    }

    /// An offset as JSON: `null` for none (an ephemeral message).
    pub fn offset(o: Offset) -> Value {
        if o.is_none() { Value::Null } else { o.0.into() }
    }

    /// A message push, live or replayed: `{"type":"message","message":{…}}`
    /// for a chat message, [`event`] for any other event.
    pub fn message(m: &Message) -> String {
        if m.is_chat() {
            json!({"type": "message", "message": m}).to_string()
        } else {
            event(m)
        }
    }

    /// `{"type":"event","room","event","data","user":{id,name},"offset"}`:
    /// a named event (`offset` null when it is ephemeral).
    pub fn event(m: &Message) -> String {
        json!({
            "type": "event",
            "room": m.room_id,
            "event": m.event,
            "data": m.content,
            "user": {"id": m.user_id, "name": m.user_name},
            "offset": offset(m.offset),
        })
        .to_string()
    }

    /// `{"type":"joined","room","user"}`.
    pub fn joined(room: &str, user: &User) -> String {
        json!({"type": "joined", "room": room, "user": user}).to_string()
    }

    /// `{"type":"left","room","user"}`.
    pub fn left(room: &str, user: &User) -> String {
        json!({"type": "left", "room": room, "user": user}).to_string()
    }

    /// `{"type":"typing","roomId","userId","userName","typing"}`.
    pub fn typing(room: &str, user: &User, typing: bool) -> String {
        json!({"type": "typing", "roomId": room, "userId": user.id, "userName": user.name, "typing": typing})
            .to_string()
    }

    /// `{"type":"history","id"?,"room","epoch","messages":[…],"complete"}`.
    /// `complete` is false when retention dropped part of what was asked for.
    pub fn history(
        id: Option<&Value>,
        room: &str,
        epoch: &Epoch,
        messages: &[std::sync::Arc<Message>],
        complete: bool,
    ) -> String {
        let msgs: Vec<&Message> = messages.iter().map(|m| m.as_ref()).collect();
        with_id(
            json!({"type": "history", "room": room, "epoch": epoch, "messages": msgs, "complete": complete}),
            id,
        )
    }

    /// `{"type":"presence","id"?,"room","members":[…],"count","complete","next"?}`.
    pub fn presence(id: Option<&Value>, room: &str, page: &Page) -> String {
        let mut v = json!({"type": "presence", "room": room});
        put_page(&mut v, page);
        with_id(v, id)
    }

    /// `{"type":"presence_diff","room","joined":[…],"left":[…],"count","complete"}`.
    pub fn presence_diff(diff: &Diff) -> String {
        json!({
            "type": "presence_diff",
            "room": diff.room,
            "joined": diff.joined,
            "left": diff.left,
            "count": diff.count,
            "complete": diff.complete,
        })
        .to_string()
    }

    /// `{"type":"rooms","id"?,"rooms":[…]}`.
    pub fn rooms(id: Option<&Value>, rooms: &[RoomInfo]) -> String {
        with_id(json!({"type": "rooms", "rooms": rooms}), id)
    }

    /// `{"type":"error","id"?,"code","message"}`.
    pub fn error(id: Option<&Value>, code: &str, message: &str) -> String {
        with_id(
            json!({"type": "error", "code": code, "message": message}),
            id,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_decode_with_their_id() {
        let r = Request::decode(r#"{"type":"join","room":"general","since":3,"id":7}"#).unwrap();
        assert_eq!(r.id, Some(json!(7)));
        assert_eq!(
            r.frame,
            ClientFrame::Join {
                room: "general".into(),
                since: Some(Offset(3)),
                epoch: None,
                name: None
            }
        );
        let r = Request::decode(r#"{"type":"auth","token":"t"}"#).unwrap();
        assert_eq!(
            r.frame,
            ClientFrame::Auth {
                token: Some("t".into()),
                name: None
            }
        );
        let r = Request::decode(r#"{"type":"ping","timestamp":12}"#).unwrap();
        assert_eq!(
            r.frame,
            ClientFrame::Ping {
                timestamp: Some(json!(12))
            }
        );
        assert_eq!(
            Request::decode(r#"{"type":"rooms"}"#).unwrap().frame,
            ClientFrame::Rooms
        );
        let r = Request::decode(r#"{"type":"message","room":"a","content":{"x":[1]},"id":"q"}"#)
            .unwrap();
        assert_eq!(r.id, Some(json!("q")));
    }

    #[test]
    fn rpc_decodes_and_its_answers_encode() {
        assert_eq!(
            Request::decode(r#"{"type":"rpc","method":"placeOrder","data":{"n":1},"id":7}"#)
                .unwrap(),
            Request {
                id: Some(json!(7)),
                frame: ClientFrame::Rpc {
                    method: "placeOrder".into(),
                    data: json!({"n": 1})
                }
            }
        );
        assert!(Request::decode(r#"{"type":"rpc"}"#).is_err());
        let ok: Value =
            serde_json::from_str(&encode::rpc_result(Some(&json!(7)), &json!([1]))).unwrap();
        assert_eq!(ok, json!({"type": "rpc_result", "id": 7, "result": [1]}));
        let err: Value =
            serde_json::from_str(&encode::rpc_error(Some(&json!(7)), "NOPE", "no")).unwrap();
        assert_eq!(err["error"], json!({"code": "NOPE", "message": "no"}));
    }

    #[test]
    fn emit_decodes_and_events_encode() {
        let r =
            Request::decode(r#"{"type":"emit","room":"/g:a","event":"move","data":[1],"id":4}"#)
                .unwrap();
        assert_eq!(
            r.frame,
            ClientFrame::Emit {
                room: "/g:a".into(),
                event: "move".into(),
                data: json!([1]),
            }
        );
        let m = Message {
            id: "1".into(),
            room_id: "/g:a".into(),
            user_id: "u".into(),
            user_name: "bob".into(),
            content: json!([1]),
            timestamp: 0,
            offset: Offset(2),
            event: "move".into(),
            args: false,
            seq: 0,
        };
        let v: Value = serde_json::from_str(&encode::message(&m)).unwrap();
        assert_eq!(
            v,
            json!({"type":"event","room":"/g:a","event":"move","data":[1],
                   "user":{"id":"u","name":"bob"},"offset":2})
        );
    }

    #[test]
    fn bad_requests_keep_the_id() {
        let e = Request::decode(r#"{"type":"frob","id":5}"#).unwrap_err();
        assert_eq!(e.id, Some(json!(5)));
        let e = Request::decode(r#"{"type":"join","id":"a"}"#).unwrap_err();
        assert_eq!(e.id, Some(json!("a")));
        assert!(e.message.contains("room"));
        assert_eq!(Request::decode("[1,2]").unwrap_err().id, None);
        assert_eq!(Request::decode("{not json").unwrap_err().id, None);
    }

    #[test]
    fn answers_echo_the_id() {
        let s = encode::error(Some(&json!(3)), "NO_ROOM", "not in room");
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(
            v,
            json!({"type":"error","id":3,"code":"NO_ROOM","message":"not in room"})
        );
        let s = encode::ack(Some(&json!("x")), json!({"room": "r", "offset": 4}));
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v, json!({"type":"ack","id":"x","room":"r","offset":4}));
        let s = encode::ack(
            Some(&json!(1)),
            json!({"offset": encode::offset(Offset::ZERO)}),
        );
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v, json!({"type":"ack","id":1,"offset":null}));
        let s = encode::pong(Some(&json!(99)));
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v, json!({"type":"pong","timestamp":99}));
    }

    #[test]
    fn presence_requests_page() {
        let r =
            Request::decode(r#"{"type":"presence","room":"a","after":"YQox","limit":5}"#).unwrap();
        assert_eq!(
            r.frame,
            ClientFrame::Presence {
                room: "a".into(),
                after: Some("YQox".into()),
                limit: Some(5)
            }
        );
        let r = Request::decode(r#"{"type":"presence","room":"a"}"#).unwrap();
        assert_eq!(
            r.frame,
            ClientFrame::Presence {
                room: "a".into(),
                after: None,
                limit: None
            }
        );
        assert!(Request::decode(r#"{"type":"presence","room":"a","limit":-1}"#).is_err());
    }

    fn page(n: usize, count: usize, more: bool) -> Page {
        let members: Vec<User> = (0..n)
            .map(|i| User {
                id: format!("u{i}"),
                name: format!("n{i}"),
            })
            .collect();
        let next = more.then(|| crate::presence::Cursor::after(&members[n - 1]));
        Page {
            members,
            count,
            next,
        }
    }

    #[test]
    fn presence_answers_carry_the_count_and_the_cursor() {
        let p = page(2, 300, true);
        let v: Value = serde_json::from_str(&encode::presence(Some(&json!(1)), "a", &p)).unwrap();
        assert_eq!(v["count"], json!(300));
        assert_eq!(v["complete"], json!(false));
        assert_eq!(v["members"].as_array().unwrap().len(), 2);
        assert_eq!(v["id"], json!(1));
        let next = v["next"].as_str().unwrap();
        assert_eq!(crate::presence::Cursor::decode(next).unwrap().name, "n1");
        let v: Value =
            serde_json::from_str(&encode::presence(None, "a", &page(2, 2, false))).unwrap();
        assert_eq!(v["complete"], json!(true));
        assert!(v.get("next").is_none());
    }

    #[test]
    fn the_join_answer_holds_one_page_and_the_count() {
        let s = encode::join_ack(
            None,
            "a",
            &Epoch("e".into()),
            Offset(4),
            &page(3, 5000, true),
            Some(true),
        );
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["type"], json!("ack"));
        assert_eq!(v["count"], json!(5000));
        assert_eq!(v["complete"], json!(false));
        assert_eq!(v["members"].as_array().unwrap().len(), 3);
        assert_eq!(v["recovered"], json!(true));
        assert!(v["next"].is_string());
    }

    #[test]
    fn a_presence_diff_lists_both_ways() {
        let d = Diff {
            room: "big".into(),
            joined: vec![User {
                id: "1".into(),
                name: "a".into(),
            }],
            left: Vec::new(),
            count: 1001,
            complete: true,
        };
        let v: Value = serde_json::from_str(&encode::presence_diff(&d)).unwrap();
        assert_eq!(
            v,
            json!({"type":"presence_diff","room":"big","joined":[{"id":"1","name":"a"}],
                   "left":[],"count":1001,"complete":true})
        );
    }
}
