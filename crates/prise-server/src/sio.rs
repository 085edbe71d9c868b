//! Socket.IO at `/socket.io/`: the hub's event contract on top of prise-sio.
//!
//! Each connected namespace socket is one hub session. A pump task per
//! socket turns the session's queued hub events into Socket.IO events;
//! client events become hub calls.
//!
//! # Connection state recovery
//!
//! Recovery is on. Every event the server pushes carries, as its last
//! argument, the hub-wide seq (a string) of the last message this socket was
//! sent — the official client keeps the last argument of every event as its
//! resume offset. On a transport loss the session is suspended under its
//! `pid`; a client coming back with `{pid, offset}` gets its user and rooms
//! back and every message after that seq, in order, and `socket.recovered`
//! becomes true. The hub's history is durable, so this also works after a
//! server restart within `--recovery-window`.
//!
//! | client → server | effect |
//! |---|---|
//! | `joinRoom(room)` | leave the current room, join this one |
//! | `sendMessage(content, ack)` | publish to the current room; `ack(messageId)` |
//! | `startTyping()` / `stopTyping()` | `typing` to the others in the current room |
//! | `join(room \| {room, since, epoch}, ack)` | `ack({room, epoch, offset, members, recovered?})`, then the replay |
//! | `leave(room, ack)`, `publish({room, content}, ack)`, `history({room, since?, limit?}, ack)`, `presence(room, ack)` | multi-room API |
//!
//! Pushes: `message(msg, offset)`, `userJoined({id, name, roomId}, offset)`,
//! `userLeft(userId, offset)`, `typing({userId, userName, roomId, typing}, offset)`,
//! `error({code, message}, offset)`. Acks of the multi-room API answer
//! `{error: {code, message}}` on failure.

use crate::Shared;
use crate::auth::{Denied, Identity};
use crate::ratelimit::MessageLimiter;
use prise_hub::{CloseReason, HubError, Outbound, Session, Transport};
use prise_proto::message::{Epoch, Message, Offset, User};
use prise_sio::{
    Ack, BoxFuture, ConnectOutcome, ConnectRefusal, DisconnectReason, EmitError, EncodedPacket,
    Payload, RecoveryRequest, SioHandler, Socket,
};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::mpsc;

/// Default number of messages a `history` request returns.
const DEFAULT_HISTORY: usize = 50;
/// Most queued hub events turned into Socket.IO events in one go.
const PUMP_BATCH: usize = 64;
/// A far-off instant for timers that are off.
const ONE_DAY: std::time::Duration = std::time::Duration::from_secs(86_400);

/// Rewrites the session's recovery record (its user and rooms) when the
/// store keeps it beyond this process; a session in no room has nothing to
/// recover: its record is dropped.
async fn checkpoint(hub: &prise_hub::Hub, conn: &Conn, pid: &str) {
    if !hub.checkpoints_sessions() {
        return;
    }
    let saved = if conn.session.rooms().is_empty() {
        hub.forget_suspended(pid).await
    } else {
        hub.suspend(&conn.session, pid).await
    };
    if let Err(e) = saved {
        tracing::debug!(error = %e, "cannot save the session for recovery");
    }
}

/// Per-socket state.
struct Conn {
    session: Arc<Session>,
    /// Who the socket authenticated as.
    identity: Identity,
    /// Whether anonymous clients may act on this listener.
    anonymous_ok: bool,
    /// Events per second allowed to this socket.
    limiter: Mutex<MessageLimiter>,
    /// The room of the seed chat's single-room API (`joinRoom`).
    current: Mutex<Option<Arc<str>>>,
    /// The seq sent as the offset of the next non-message event.
    last_seq: AtomicU64,
    pump: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Held by the pump while it emits, and by a join from before it becomes
    /// a member until its replay is queued: live messages of the room can
    /// then never overtake the replay.
    emit_lock: tokio::sync::Mutex<()>,
    /// Acks are sent error-first (`(null, value)` / `(error)`), for clients
    /// using the official client's retry queue.
    error_first: AtomicBool,
}

/// The arguments of an ack: `value` or `{error}` normally; `null, value` or
/// `error` for error-first clients.
fn ack_payload(conn: &Conn, answer: Result<Option<Value>, Value>) -> Payload {
    let error_first = conn.error_first.load(Ordering::Acquire);
    match (answer, error_first) {
        (Ok(v), false) => Payload::one(v.unwrap_or(Value::Null)),
        (Err(e), false) => Payload::one(json!({"error": e})),
        (Ok(Some(v)), true) => Payload::new(vec![Value::Null, v]),
        (Ok(None), true) => Payload::one(Value::Null),
        (Err(e), true) => Payload::one(e),
    }
}

/// The hub's Socket.IO handler.
pub(crate) struct HubSio {
    shared: Weak<Shared>,
    conns: Mutex<HashMap<String, Arc<Conn>>>,
}

impl HubSio {
    pub(crate) fn new(shared: Weak<Shared>) -> Self {
        Self {
            shared,
            conns: Mutex::new(HashMap::new()),
        }
    }

    fn conn(&self, socket: &Socket) -> Option<Arc<Conn>> {
        self.conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(socket.id())
            .cloned()
    }
}

fn seq_arg(seq: u64) -> Value {
    Value::String(seq.to_string())
}

fn error_value(e: &HubError) -> Value {
    json!({"code": e.code(), "message": e.to_string()})
}

/// A `message` event whose resume offset is the message's own seq (live
/// fan-out and recovery replay, where seqs only grow).
fn message_packet(nsp: &str, m: &Message) -> EncodedPacket {
    message_packet_at(nsp, m, m.seq)
}

/// A `message` event with a given resume offset. A join replay sends older
/// messages; they carry the socket's newest seq so the client's resume
/// offset never moves back.
fn message_packet_at(nsp: &str, m: &Message, offset: u64) -> EncodedPacket {
    let msg = serde_json::to_value(m).unwrap_or(Value::Null);
    EncodedPacket::event(nsp, "message", &Payload::new(vec![msg, seq_arg(offset)]))
}

fn user_value(user: &User, room: &str) -> Value {
    json!({"id": user.id, "name": user.name, "roomId": room})
}

/// Keeps the session's recovery record current while it lives (see
/// [`prise_hub::Hub::checkpoints_sessions`]): rewritten at half the
/// recovery window, so it never expires under a live session.
struct Checkpoints {
    hub: prise_hub::Hub,
    every: std::time::Duration,
}

/// Sends the session's queued hub events to the socket until either ends,
/// and rewrites its recovery record on `checkpoints`' schedule.
async fn pump(
    socket: Socket,
    conn: Arc<Conn>,
    mut rx: mpsc::Receiver<Outbound>,
    checkpoints: Option<Checkpoints>,
) {
    let nsp = socket.namespace().to_owned();
    let every = checkpoints.as_ref().map_or(ONE_DAY, |c| c.every);
    // One timer for the life of the pump, reset after each checkpoint.
    let checkpoint_due = tokio::time::sleep(every);
    tokio::pin!(checkpoint_due);
    // A token's expiry ends the session (the client reconnects with a fresh
    // token in its `auth`).
    let expiry = conn
        .identity
        .claims()
        .map(|c| tokio::time::Instant::now() + c.remaining(std::time::SystemTime::now()));
    let expired = async {
        match expiry {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    // The end of the session: closed by the hub, or by the token's expiry,
    // which closes it and falls through to the same handling. Created once:
    // it completes once, and the loop returns when it does.
    let ended = async {
        tokio::select! {
            biased;
            reason = conn.session.closed() => reason,
            () = expired => {
                conn.session.close(CloseReason::AuthExpired);
                conn.session.closed().await
            }
        }
    };
    tokio::pin!(ended);
    loop {
        tokio::select! {
            biased;
            reason = &mut ended => {
                if reason == CloseReason::AuthExpired {
                    let _ = socket.emit("error", &Payload::new(vec![
                        json!({"code": "AUTH_EXPIRED", "message": "authentication expired; reconnect with a fresh token"}),
                        seq_arg(conn.last_seq.load(Ordering::Acquire)),
                    ]));
                    // A namespace disconnect: no recovery with an expired token.
                    socket.disconnect();
                    return;
                }
                if reason == CloseReason::SlowConsumer {
                    let _ = socket.emit("error", &Payload::new(vec![
                        json!({"code": "SLOW_CONSUMER", "message": "too many undelivered messages; reconnecting recovers them"}),
                        seq_arg(conn.last_seq.load(Ordering::Acquire)),
                    ]));
                }
                // Closing the transport (not the namespace) lets the client
                // reconnect and recover what it missed.
                socket.close_transport();
                return;
            }
            () = &mut checkpoint_due, if checkpoints.is_some() => {
                checkpoint_due.as_mut().reset(tokio::time::Instant::now() + every);
                if let Some(c) = &checkpoints
                    && !conn.session.rooms().is_empty()
                {
                    // Boxed: a store write is a large future, and rare here.
                    Box::pin(checkpoint(&c.hub, &conn, &socket.pid())).await;
                }
            }
            ev = rx.recv() => {
                let Some(first) = ev else { return };
                let _emitting = conn.emit_lock.lock().await;
                // What else is already queued goes out under the same lock,
                // up to a batch; without a buffer of its own, so an idle
                // pump holds none.
                let mut next = Some(first);
                let mut emitted = 0;
                while let Some(ev) = next {
                    if emit_push(&socket, &conn, &nsp, &ev).is_err() {
                        // The socket is gone or was closed as a slow consumer
                        // by the Socket.IO layer; its disconnect cleans up.
                        return;
                    }
                    emitted += 1;
                    next = if emitted < PUMP_BATCH { rx.try_recv().ok() } else { None };
                }
            }
        }
    }
}

/// Emits one hub push on the socket.
fn emit_push(socket: &Socket, conn: &Conn, nsp: &str, ev: &Outbound) -> Result<(), EmitError> {
    let seq = || seq_arg(conn.last_seq.load(Ordering::Acquire));
    match ev {
        Outbound::Message(d) => {
            let packet = d.encoded(Transport::SocketIo, |m| message_packet(nsp, m));
            conn.last_seq.fetch_max(d.message.seq, Ordering::AcqRel);
            socket.emit_encoded(&packet)
        }
        Outbound::Joined { room, user } => socket.emit(
            "userJoined",
            &Payload::new(vec![user_value(user, room), seq()]),
        ),
        Outbound::Left { user, .. } => socket.emit(
            "userLeft",
            &Payload::new(vec![Value::String(user.id.clone()), seq()]),
        ),
        Outbound::Typing { room, user, typing } => socket.emit(
            "typing",
            &Payload::new(vec![
                json!({"userId": user.id, "userName": user.name, "roomId": &**room, "typing": typing}),
                seq(),
            ]),
        ),
    }
}

fn name_from_auth(auth: &Value) -> Option<String> {
    auth.get("name").and_then(Value::as_str).map(str::to_owned)
}

impl HubSio {
    async fn do_connect(
        &self,
        socket: Socket,
        auth: Value,
        recovery: Option<RecoveryRequest>,
    ) -> Result<ConnectOutcome, ConnectRefusal> {
        let shared = self
            .shared
            .upgrade()
            .ok_or_else(|| ConnectRefusal::new("server is shutting down"))?;
        let hub = &shared.hub;
        let security = &shared.security;
        let identity = match auth.get("token").and_then(Value::as_str) {
            Some(token) => match security.auth.verify(token) {
                Ok(claims) => Identity::Token(claims),
                Err(e) => {
                    crate::ratelimit::refused("auth_failed");
                    return Err(ConnectRefusal::new("Authentication failed")
                        .with_data(json!({"code": e.code(), "reason": e.to_string()})));
                }
            },
            None if security.anonymous_http => Identity::Anonymous,
            None => {
                crate::ratelimit::refused("auth_failed");
                return Err(ConnectRefusal::new("Authentication failed").with_data(
                    json!({"code": "AUTH_REQUIRED", "reason": "this server needs a token in auth.token"}),
                ));
            }
        };
        let (session, rx) = hub
            .connect(Transport::SocketIo, identity.claims().map(|c| c.user()))
            .map_err(|e| ConnectRefusal::new(e.to_string()))?;
        if let Identity::Anonymous = identity
            && let Some(name) = name_from_auth(&auth)
            && let Err(e) = hub.rename(&session, &name)
        {
            hub.disconnect(&session);
            return Err(ConnectRefusal::new(e.to_string()).with_data(error_value(&e)));
        }
        let conn = Arc::new(Conn {
            session: Arc::clone(&session),
            identity,
            anonymous_ok: security.anonymous_http,
            limiter: Mutex::new(MessageLimiter::new(&security.rate)),
            current: Mutex::new(None),
            last_seq: AtomicU64::new(hub.delivered_seq()),
            pump: Mutex::new(None),
            emit_lock: tokio::sync::Mutex::new(()),
            error_first: AtomicBool::new(false),
        });
        let mut outcome = ConnectOutcome::Fresh;
        if let Some(req) = recovery
            && let Ok(after) = req.offset.parse::<u64>()
        {
            match hub.resume(&session, &req.pid, after).await {
                Ok(Some(resumed)) => {
                    for m in &resumed.replay {
                        let _ = socket.emit_encoded(&message_packet(socket.namespace(), m));
                        conn.last_seq.fetch_max(m.seq, Ordering::AcqRel);
                    }
                    *conn.current.lock().unwrap_or_else(|e| e.into_inner()) =
                        resumed.rooms.first().cloned();
                    // Resuming took the record: write it again under the
                    // pid the client keeps.
                    checkpoint(hub, &conn, &req.pid).await;
                    outcome = ConnectOutcome::Recovered;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "socket.io recovery failed"),
            }
        }
        let checkpoints = hub.checkpoints_sessions().then(|| Checkpoints {
            hub: hub.clone(),
            every: (hub.config().recovery_window / 2).max(std::time::Duration::from_secs(1)),
        });
        let handle = tokio::spawn(pump(socket.clone(), Arc::clone(&conn), rx, checkpoints));
        *conn.pump.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
        self.conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(socket.id().to_owned(), conn);
        Ok(outcome)
    }

    async fn do_disconnect(&self, socket: Socket, reason: DisconnectReason) {
        let Some(conn) = self
            .conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(socket.id())
        else {
            return;
        };
        if let Some(h) = conn.pump.lock().unwrap_or_else(|e| e.into_inner()).take() {
            h.abort();
        }
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let hub = &shared.hub;
        // A lost transport may come back: keep the session for recovery.
        // A deliberate disconnect (either side) ends it.
        if matches!(reason, DisconnectReason::Transport(_)) {
            if let Err(e) = hub.suspend(&conn.session, &socket.pid()).await {
                tracing::warn!(error = %e, "cannot keep the session for recovery");
            }
        } else if hub.checkpoints_sessions()
            && let Err(e) = hub.forget_suspended(&socket.pid()).await
        {
            tracing::debug!(error = %e, "cannot drop the session's recovery record");
        }
        hub.disconnect(&conn.session);
    }

    async fn do_event(&self, socket: Socket, event: String, payload: Payload, ack: Option<Ack>) {
        let (Some(conn), Some(shared)) = (self.conn(&socket), self.shared.upgrade()) else {
            return;
        };
        let allowed = conn
            .limiter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .check();
        if !allowed {
            crate::ratelimit::refused("message_rate");
            let e = json!({"code": "RATE_LIMITED", "message": "too many events; slow down"});
            let _ = socket.emit(
                "error",
                &Payload::new(vec![
                    e.clone(),
                    seq_arg(conn.last_seq.load(Ordering::Acquire)),
                ]),
            );
            if let Some(ack) = ack {
                let _ = ack.send(&ack_payload(&conn, Err(e)));
            }
            return;
        }
        if ack.is_some() && matches!(event.as_str(), "joinRoom" | "startTyping" | "stopTyping") {
            // The contract defines no ack for these: a client asking for one
            // is the official client's retry queue (`retries`), which reads
            // the first ack argument as an error. Answer it error-first.
            conn.error_first.store(true, Ordering::Release);
        }
        let mut ack = ack;
        let answer = self
            .answer(&shared.hub, &socket, &conn, &event, payload, &mut ack)
            .await;
        // Every event that asked for an ack gets one (the official client
        // with `retries` sends its next packet only after the ack).
        if let Some(ack) = ack {
            let _ = ack.send(&ack_payload(&conn, answer));
        }
    }

    /// Handles one event; returns the ack value (`None` for events that
    /// answer nothing) or the error object `{code, message}`.
    async fn answer(
        &self,
        hub: &prise_hub::Hub,
        socket: &Socket,
        conn: &Conn,
        event: &str,
        payload: Payload,
        ack: &mut Option<Ack>,
    ) -> Result<Option<Value>, Value> {
        let session = &conn.session;
        let emit_error = |e: &Value| {
            let _ = socket.emit(
                "error",
                &Payload::new(vec![
                    e.clone(),
                    seq_arg(conn.last_seq.load(Ordering::Acquire)),
                ]),
            );
        };
        if !payload.attachments.is_empty() {
            let e = json!({"code": "BAD_REQUEST", "message": "binary attachments are not supported by the hub; send JSON"});
            emit_error(&e);
            return Err(e);
        }
        let arg = payload.args.into_iter().next().unwrap_or(Value::Null);
        // The seed chat's events report failures as `error` events.
        let chat_error = |e: &HubError| {
            let v = error_value(e);
            emit_error(&v);
            Err(v)
        };
        let denied = |d: Denied, room: &str| json!({"code": d.code(), "message": d.message(room)});
        let may_join = |room: &str| {
            conn.identity
                .check_join(conn.anonymous_ok, room)
                .map_err(|d| denied(d, room))
        };
        let may_publish = |room: &str| {
            conn.identity
                .check_publish(conn.anonymous_ok, room)
                .map_err(|d| denied(d, room))
        };
        match event {
            "joinRoom" => {
                let Some(room) = arg.as_str() else {
                    return chat_error(&HubError::NoRoom(String::new()));
                };
                if let Err(e) = may_join(room) {
                    emit_error(&e);
                    return Err(e);
                }
                let previous = conn
                    .current
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take();
                if let Some(prev) = previous.filter(|p| &**p != room) {
                    let _ = hub.leave(session, &prev);
                }
                match hub.join(session, room, None, None).await {
                    Ok(j) => {
                        *conn.current.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some(Arc::clone(&j.room));
                        checkpoint(hub, conn, &socket.pid()).await;
                        Ok(None)
                    }
                    Err(e) => chat_error(&e),
                }
            }
            "sendMessage" => {
                let current = conn
                    .current
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                let Some(room) = current else {
                    return chat_error(&HubError::NotMember("(none: use joinRoom first)".into()));
                };
                if let Err(e) = may_publish(&room) {
                    emit_error(&e);
                    return Err(e);
                }
                match hub.publish(session, &room, arg).await {
                    Ok(m) => Ok(Some(Value::String(m.id.clone()))),
                    Err(e) => chat_error(&e),
                }
            }
            "startTyping" | "stopTyping" => {
                let current = conn
                    .current
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                match current.map(|room| hub.typing(session, &room, event == "startTyping")) {
                    Some(Err(e)) => chat_error(&e),
                    _ => Ok(None),
                }
            }
            "join" => {
                let (room, since, epoch) = match &arg {
                    Value::String(r) => (r.clone(), None, None),
                    Value::Object(o) => (
                        o.get("room")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_owned(),
                        o.get("since").and_then(Value::as_u64).map(Offset),
                        o.get("epoch")
                            .and_then(Value::as_str)
                            .map(|e| Epoch(e.to_owned())),
                    ),
                    _ => (String::new(), None, None),
                };
                may_join(&room)?;
                let _emitting = conn.emit_lock.lock().await;
                match hub.join(session, &room, since, epoch.as_ref()).await {
                    Ok(j) => {
                        checkpoint(hub, conn, &socket.pid()).await;
                        // The ack first, then the replay, then live messages.
                        let value =
                            join_value(&j.room, &j.epoch, j.offset, &j.members, j.recovered);
                        if let Some(ack) = ack.take() {
                            let _ = ack.send(&ack_payload(conn, Ok(Some(value.clone()))));
                        }
                        let newest = conn.last_seq.load(Ordering::Acquire);
                        for m in &j.replay {
                            let _ = socket.emit_encoded(&message_packet_at(
                                socket.namespace(),
                                m,
                                newest,
                            ));
                        }
                        Ok(Some(value))
                    }
                    Err(e) => Err(error_value(&e)),
                }
            }
            "leave" => {
                let room = arg.as_str().unwrap_or("");
                match hub.leave(session, room) {
                    Ok(()) => {
                        {
                            let mut current =
                                conn.current.lock().unwrap_or_else(|e| e.into_inner());
                            if current.as_deref() == Some(room) {
                                *current = None;
                            }
                        }
                        checkpoint(hub, conn, &socket.pid()).await;
                        Ok(Some(json!({"room": room})))
                    }
                    Err(e) => Err(error_value(&e)),
                }
            }
            "publish" => {
                let room = arg
                    .get("room")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                let content = arg.get("content").cloned().unwrap_or(Value::Null);
                may_publish(&room)?;
                match hub.publish(session, &room, content).await {
                    Ok(m) => Ok(Some(json!({"room": room, "offset": m.offset, "id": m.id}))),
                    Err(e) => Err(error_value(&e)),
                }
            }
            "history" => {
                let room = arg
                    .get("room")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                let since = arg.get("since").and_then(Value::as_u64).map(Offset);
                may_join(&room)?;
                let limit = arg
                    .get("limit")
                    .and_then(Value::as_u64)
                    .map_or(DEFAULT_HISTORY, |l| {
                        usize::try_from(l).unwrap_or(usize::MAX)
                    });
                match hub.history(&room, since, limit).await {
                    Ok((epoch, page)) => {
                        let msgs: Vec<&Message> =
                            page.messages.iter().map(|m| m.as_ref()).collect();
                        Ok(Some(
                            json!({"room": room, "epoch": epoch, "messages": msgs, "complete": page.complete}),
                        ))
                    }
                    Err(e) => Err(error_value(&e)),
                }
            }
            "presence" => {
                let room = arg.as_str().unwrap_or("");
                may_join(room)?;
                Ok(Some(json!({"room": room, "members": hub.presence(room)})))
            }
            other => {
                let e = json!({"code": "BAD_REQUEST", "message": format!("unknown event {other}")});
                emit_error(&e);
                Err(e)
            }
        }
    }
}

fn join_value(
    room: &str,
    epoch: &Epoch,
    offset: Offset,
    members: &[User],
    recovered: Option<bool>,
) -> Value {
    let mut v = json!({"room": room, "epoch": epoch, "offset": offset, "members": members});
    if let (Some(r), Some(o)) = (recovered, v.as_object_mut()) {
        o.insert("recovered".into(), r.into());
    }
    v
}

impl SioHandler for HubSio {
    fn connect<'a>(
        &'a self,
        socket: Socket,
        auth: Value,
        recovery: Option<RecoveryRequest>,
    ) -> BoxFuture<'a, Result<ConnectOutcome, ConnectRefusal>> {
        Box::pin(self.do_connect(socket, auth, recovery))
    }

    fn event<'a>(
        &'a self,
        socket: Socket,
        event: String,
        payload: Payload,
        ack: Option<Ack>,
    ) -> BoxFuture<'a, ()> {
        Box::pin(self.do_event(socket, event, payload, ack))
    }

    fn disconnect<'a>(&'a self, socket: Socket, reason: DisconnectReason) -> BoxFuture<'a, ()> {
        Box::pin(self.do_disconnect(socket, reason))
    }
}
