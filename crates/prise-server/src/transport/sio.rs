//! Socket.IO at `/socket.io/`: the hub's event contract on top of prise-sio.
//!
//! Each connected namespace socket is one hub session. The session's
//! outbox is the socket itself ([`SioOutbox`], attached with
//! [`Session::attach`]): the hub's fan-out encodes each event once (shared
//! by every socket of the namespace) and queues it on the Engine.IO
//! session, which wakes the connection's one writer task; no task of its
//! own per socket. Token expiry and recovery checkpoints are deadlines in
//! the server's shared [`Timers`]. Client events become hub calls.
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
//! | `join(room \| {room, since, epoch}, ack)` | `ack({room, epoch, offset, members, count, complete, next?, recovered?})` (the first 100 members), then the replay |
//! | `leave(room, ack)`, `publish({room, content}, ack)`, `history({room, since?, limit?}, ack)` | multi-room API |
//! | `presence(room \| {room, after?, limit?}, ack)` | `ack({room, members, count, complete, next?})`: one page |
//!
//! | any other event (where the namespace says `relay = "rooms"`) | broadcast to the socket's rooms, name and arguments unchanged; `ack({rooms: [{room, offset}]})` once committed |
//!
//! Each namespace is a room space: a socket of `/game` names its rooms as
//! they are (`a`), the hub knows them as `/game:a`; every name the socket
//! is shown is its own namespace's. On connect, the socket joins the
//! namespace's `auto_join` rooms (`user:{user}`: its personal room).
//!
//! Pushes: `message(msg, offset)`, any named event `name(...args, offset)`,
//! `userJoined({id, name, roomId}, offset)`,
//! `userLeft(userId, offset)`, `presenceDiff({roomId, joined, left, count, complete}, offset)`
//! (large rooms, once per interval), `typing({userId, userName, roomId, typing}, offset)`,
//! `error({code, message}, offset)`. Acks of the multi-room API answer
//! `{error: {code, message}}` on failure.

use super::client::{Client, Credentials, Deadline, Handshake};
use super::handoff::{Handoff, Pushed};
use super::reply::{Refusal, Reply};
use super::request::Request;
use super::timers::{Timed, Timers};
use crate::Shared;
use prise_hub::policy::{ROOT_NAMESPACE, USER_PLACEHOLDER};
use prise_hub::{CloseReason, Offer, Outbound, Outbox, Session, Transport};
use prise_proto::message::Message;
use prise_proto::presence::Diff;
use prise_proto::sio_events::{ClientEvent, EventKind, ack, encode, error_value, names};
use prise_sio::{
    Ack, BoxFuture, ConnectOutcome, ConnectRefusal, DisconnectReason, EmitError, EncodedPacket,
    Payload, RecoveryRequest, SioHandler, Socket,
};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

/// [`Timers`] tag: the socket's token expired.
const EXPIRY: u8 = 0;
/// [`Timers`] tag: rewrite the socket's recovery record.
const CHECKPOINT: u8 = 1;

/// Rewrites the session's recovery record (its user and rooms) when the
/// store keeps it beyond this process; a session in no room has nothing to
/// recover: its record is dropped.
async fn checkpoint(hub: &prise_hub::Hub, session: &Arc<Session>, pid: &str) {
    if !hub.checkpoints_sessions() {
        return;
    }
    let saved = if session.rooms().is_empty() {
        hub.forget_suspended(pid).await
    } else {
        hub.suspend(session, pid).await
    };
    if let Err(e) = saved {
        tracing::debug!(error = %e, "cannot save the session for recovery");
    }
}

/// Per-socket state.
struct Conn {
    session: Arc<Session>,
    /// The request state. Events of a socket are handled one at a time, so
    /// this lock is never contended; deliveries do not take it.
    client: tokio::sync::Mutex<Client>,
    /// The socket's outbox, attached to the session.
    out: Arc<SioOutbox>,
    /// Acks are sent error-first (`(null, value)` / `(error)`), for clients
    /// using the official client's retry queue.
    error_first: AtomicBool,
    /// Rewrites the recovery record on the shared timers' schedule.
    checkpoints: Option<Checkpoints>,
    /// The server, for a refresh hook at the deadline.
    shared: Weak<Shared>,
}

impl Conn {
    fn seq(&self) -> u64 {
        self.out.seq()
    }

    fn ack(&self, ack: Ack, answer: Result<Option<Value>, Value>) {
        let error_first = self.error_first.load(Ordering::Acquire);
        let _ = ack.send(&Payload::new(ack::args(answer, error_first)));
    }

    fn emit_error(&self, socket: &Socket, r: &Refusal) {
        self.out.emit_error(socket, r);
    }
}

impl Timed for Conn {
    fn fire(self: Arc<Self>, tag: u8, timers: &Arc<Timers>) {
        match tag {
            // A session the backend admitted may be extended by its
            // refresh hook (a call: its own short task); otherwise closing
            // runs the outbox's close: error event, namespace disconnect
            // (no recovery with an expired token).
            EXPIRY => {
                let timers = Arc::clone(timers);
                tokio::spawn(async move {
                    let Some(shared) = self.shared.upgrade() else {
                        return self.session.close(CloseReason::AuthExpired);
                    };
                    let mut client = self.client.lock().await;
                    if client.deadline_passed(shared.ctx()).await == Deadline::Extended
                        && let Some(at) = client.deadline()
                    {
                        drop(client);
                        let again = Arc::downgrade(&self) as Weak<dyn Timed>;
                        timers.at(at, EXPIRY, again);
                    } else {
                        self.session.close(CloseReason::AuthExpired);
                    }
                });
            }
            _ => {
                let Some(c) = &self.checkpoints else { return };
                if !self.out.socket.is_connected() {
                    return;
                }
                let every = c.every;
                if !self.session.rooms().is_empty() {
                    let conn = Arc::clone(&self);
                    // A store write: its own short task, once per interval.
                    tokio::spawn(async move {
                        if let Some(c) = &conn.checkpoints {
                            checkpoint(&c.hub, &conn.session, &conn.out.socket.pid()).await;
                        }
                    });
                }
                let again = Arc::downgrade(&self) as Weak<dyn Timed>;
                timers.at(tokio::time::Instant::now() + every, CHECKPOINT, again);
            }
        }
    }
}

/// A socket as its session's outbox (see [`prise_hub::outbox`]): the hub's
/// events are encoded and queued on the Engine.IO session as they are
/// offered, whose bounded queue is the only one between the hub and the
/// socket (full: the session closes as a slow consumer, counted once, by
/// prise-sio). While a join or a recovery emits its replay, events wait
/// here instead (bounded by the same depth), so live messages never
/// overtake it.
struct SioOutbox {
    socket: Socket,
    /// Its session, for the detail of a kick (weak: the session holds the
    /// outbox).
    session: Weak<Session>,
    /// The seq sent as the offset of the next non-message event.
    last_seq: AtomicU64,
    /// Holds live events back while a replay is written.
    handoff: Handoff<Outbound>,
}

impl std::fmt::Debug for SioOutbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SioOutbox")
            .field("socket", &self.socket.id())
            .finish_non_exhaustive()
    }
}

impl SioOutbox {
    fn seq(&self) -> u64 {
        self.last_seq.load(Ordering::Acquire)
    }

    /// Holds the hub's events back until the guard is dropped.
    fn hold(&self) -> Release<'_> {
        self.handoff.hold();
        Release(self)
    }

    /// Emits the events held back, then lets the next ones through.
    fn release(&self) {
        self.handoff.release(|ev| self.emit(ev));
    }

    fn emit_error(&self, socket: &Socket, r: &Refusal) {
        let _ = socket.emit(
            names::ERROR,
            &Payload::new(encode::error(&r.code, &r.message, self.seq())),
        );
    }

    /// Emits one hub push on the socket.
    fn emit(&self, ev: &Outbound) -> Result<(), EmitError> {
        let socket = &self.socket;
        let nsp = socket.namespace();
        match ev {
            Outbound::Message(d) if d.message.seq == 0 => {
                // Ephemeral: no seq of its own, so the socket's newest is its
                // resume offset, which differs per socket: not cached.
                socket.emit_encoded(&message_packet(nsp, &d.message, self.seq()))
            }
            Outbound::Message(d) => {
                let packet = d.encoded(Transport::SocketIo, |m| message_packet(nsp, m, m.seq));
                self.last_seq.fetch_max(d.message.seq, Ordering::AcqRel);
                socket.emit_encoded(&packet)
            }
            Outbound::Joined { room, user } => socket.emit(
                names::USER_JOINED,
                &Payload::new(encode::user_joined(user, local(nsp, room), self.seq())),
            ),
            Outbound::Left { user, .. } => socket.emit(
                names::USER_LEFT,
                &Payload::new(encode::user_left(user, self.seq())),
            ),
            Outbound::PresenceDiff(d) => {
                // Encoded once for the sockets whose resume offset matches the
                // first one's (in a room of one conversation, nearly all).
                let seq = self.seq();
                let cached = d.encoded(Transport::SocketIo, |diff| {
                    (seq, presence_diff_packet(nsp, diff, seq))
                });
                if cached.0 == seq {
                    socket.emit_encoded(&cached.1)
                } else {
                    socket.emit_encoded(&presence_diff_packet(nsp, &d.diff, seq))
                }
            }
            Outbound::Typing { room, user, typing } => socket.emit(
                names::TYPING,
                &Payload::new(encode::typing(user, local(nsp, room), *typing, self.seq())),
            ),
        }
    }
}

/// Releases the events a [`SioOutbox::hold`] kept back, when dropped (also
/// when the handling future is dropped halfway).
struct Release<'a>(&'a SioOutbox);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.0.release();
    }
}

impl Outbox for SioOutbox {
    fn push(&self, ev: &Outbound) -> Offer {
        match self.handoff.push(ev, |ev| self.emit(ev)) {
            Pushed::Emitted(Ok(())) | Pushed::Held => Offer::Queued,
            Pushed::Full => Offer::Full,
            // prise-sio closed the session as a slow consumer and counted it.
            Pushed::Emitted(Err(_)) => Offer::Closed,
        }
    }

    fn close(&self, reason: CloseReason) {
        let refusal = match self.session.upgrade() {
            Some(session) => Refusal::for_session(&session, reason, Transport::SocketIo),
            None => Refusal::for_close(reason, Transport::SocketIo),
        };
        if let Some(r) = refusal {
            self.emit_error(&self.socket, &r);
        }
        if matches!(reason, CloseReason::AuthExpired | CloseReason::Kicked) {
            // A namespace disconnect: no recovery with an expired token,
            // nor after a backend ended the session (the official client
            // does not reconnect by itself).
            self.socket.disconnect();
        } else {
            // Closing the transport (not the namespace) lets the client
            // reconnect and recover what it missed.
            self.socket.close_transport();
        }
    }
}

/// The hub's Socket.IO handler.
pub(crate) struct HubSio {
    shared: Weak<Shared>,
    conns: Mutex<HashMap<String, Arc<Conn>>>,
    /// Every socket's deadlines; its task starts with the first socket.
    timers: OnceLock<Arc<Timers>>,
}

impl HubSio {
    pub(crate) fn new(shared: Weak<Shared>) -> Self {
        Self {
            shared,
            conns: Mutex::new(HashMap::new()),
            timers: OnceLock::new(),
        }
    }

    fn timers(&self, shared: &Shared) -> &Arc<Timers> {
        self.timers.get_or_init(|| {
            let timers = Arc::new(Timers::default());
            let stop = shared.shutdown.clone().cancelled_owned();
            shared.tracker.spawn(Arc::clone(&timers).run(stop));
            timers
        })
    }

    fn conn(&self, socket: &Socket) -> Option<Arc<Conn>> {
        self.conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(socket.id())
            .cloned()
    }
}

/// A room's name as a socket of namespace `nsp` knows it: without the
/// namespace prefix.
fn local<'a>(nsp: &str, room: &'a str) -> &'a str {
    if nsp == ROOT_NAMESPACE {
        return room;
    }
    room.strip_prefix(nsp)
        .and_then(|r| r.strip_prefix(':'))
        .unwrap_or(room)
}

/// A message's event (`message`, or its own name) whose resume offset is
/// the message's own seq, or the socket's newest when the message is
/// ephemeral (live fan-out and recovery replay, where seqs only grow).
fn message_packet(nsp: &str, m: &Message, newest: u64) -> EncodedPacket {
    let seq = if m.seq == 0 { newest } else { m.seq };
    message_packet_at(nsp, m, seq)
}

/// A message's event with a given resume offset. A join replay sends older
/// messages; they carry the socket's newest seq so the client's resume
/// offset never moves back. A chat message is `message(msg, offset)`
/// (`roomId` in the socket's namespace); any other event is emitted under
/// its own name with its own arguments.
fn message_packet_at(nsp: &str, m: &Message, offset: u64) -> EncodedPacket {
    if !m.is_chat() {
        return EncodedPacket::event(nsp, &m.event, &Payload::new(encode::event(m, offset)));
    }
    let args = if nsp == ROOT_NAMESPACE {
        encode::message(m, offset)
    } else {
        let mut shown = m.clone();
        shown.room_id = local(nsp, &m.room_id).to_owned();
        encode::message(&shown, offset)
    };
    EncodedPacket::event(nsp, names::MESSAGE, &Payload::new(args))
}

/// A `presenceDiff` event with the socket's resume offset.
fn presence_diff_packet(nsp: &str, diff: &Diff, offset: u64) -> EncodedPacket {
    EncodedPacket::event(
        nsp,
        names::PRESENCE_DIFF,
        &Payload::new(encode::presence_diff(diff, offset)),
    )
}

/// Keeps the session's recovery record current while it lives (see
/// [`prise_hub::Hub::checkpoints_sessions`]): rewritten at half the
/// recovery window, so it never expires under a live session.
struct Checkpoints {
    hub: prise_hub::Hub,
    every: std::time::Duration,
}

/// A refused handshake: the documented `connect_error`, with `data`
/// `{code, reason}`.
fn connect_refusal(r: &Refusal) -> ConnectRefusal {
    let message = if r.code.starts_with("AUTH_") {
        "Authentication failed"
    } else {
        r.message.as_str()
    };
    ConnectRefusal::new(message).with_data(json!({"code": r.code, "reason": r.message}))
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
        let text = |key: &str| auth.get(key).and_then(Value::as_str).map(str::to_owned);
        let mut credentials = Credentials {
            token: text("token"),
            name: text("name"),
            namespace: Some(socket.namespace().to_owned()),
            remote: socket.remote_addr(),
            ..Credentials::default()
        };
        if shared.hooks.is_active() {
            credentials.headers = socket.headers().clone();
            credentials.query = socket.query().to_owned();
            credentials.auth = auth;
        }
        let (mut client, rx) = Client::connect(
            shared.ctx(),
            Transport::SocketIo,
            credentials,
            Handshake::Now,
        )
        .await
        .map_err(|r| connect_refusal(&r))?;
        let session = Arc::clone(client.session());
        // The socket is the session's outbox; until the recovery replay and
        // the auto-joins are queued, live events wait in it.
        let out = Arc::new(SioOutbox {
            socket: socket.clone(),
            session: Arc::downgrade(&session),
            last_seq: AtomicU64::new(hub.delivered_seq()),
            handoff: Handoff::new(hub.config().limits.queue_depth, true),
        });
        session.attach(Arc::clone(&out) as Arc<dyn Outbox>);
        // The hub's queue goes with its receiver (the session is in no room
        // yet: nothing was queued in it).
        drop(rx);
        let mut outcome = ConnectOutcome::Fresh;
        if let Some(req) = recovery
            && let Ok(after) = req.offset.parse::<u64>()
        {
            match hub.resume(&session, &req.pid, after).await {
                Ok(Some(resumed)) => {
                    for m in &resumed.replay {
                        let packet = message_packet(socket.namespace(), m, out.seq());
                        let _ = socket.emit_encoded(&packet);
                        out.last_seq.fetch_max(m.seq, Ordering::AcqRel);
                    }
                    client.set_current_room(resumed.rooms.first().cloned());
                    // Resuming took the record: write it again under the
                    // pid the client keeps.
                    checkpoint(hub, &session, &req.pid).await;
                    outcome = ConnectOutcome::Recovered;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "socket.io recovery failed"),
            }
        }
        auto_join(&shared, &mut client, socket.namespace()).await;
        if !client.session().rooms().is_empty() {
            checkpoint(hub, &session, &socket.pid()).await;
        }
        let expiry = client.deadline();
        let checkpoints = hub.checkpoints_sessions().then(|| Checkpoints {
            hub: hub.clone(),
            every: (hub.config().recovery_window / 2).max(std::time::Duration::from_secs(1)),
        });
        let conn = Arc::new(Conn {
            session,
            client: tokio::sync::Mutex::new(client),
            out,
            error_first: AtomicBool::new(false),
            checkpoints,
            shared: Weak::clone(&self.shared),
        });
        let timers = self.timers(&shared);
        let weak = Arc::downgrade(&conn) as Weak<dyn Timed>;
        if let Some(at) = expiry {
            timers.at(at, EXPIRY, Weak::clone(&weak));
        }
        if let Some(c) = &conn.checkpoints {
            timers.at(tokio::time::Instant::now() + c.every, CHECKPOINT, weak);
        }
        self.conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(socket.id().to_owned(), Arc::clone(&conn));
        conn.out.release();
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

    async fn do_event(
        &self,
        socket: Socket,
        event_name: String,
        payload: Payload,
        ack: Option<Ack>,
    ) {
        let (Some(conn), Some(shared)) = (self.conn(&socket), self.shared.upgrade()) else {
            return;
        };
        let mut args = payload.args;
        let decoded = if payload.attachments.is_empty() {
            ClientEvent::decode(&event_name, &mut args)
                .map_err(|e| Refusal::new(e.code(), e.to_string()))
        } else {
            Err(Refusal::bad_request(
                "binary attachments are not supported by the hub; send JSON",
            ))
        };
        let (event, req) = match decoded {
            Ok(e) => (Some(e.kind()), Request::from(e)),
            Err(_) if payload.attachments.is_empty() => (
                None,
                Request::Relay {
                    event: event_name,
                    args,
                    wants_answer: ack.is_some(),
                },
            ),
            Err(r) => (None, Request::Malformed(r)),
        };
        let is_relay = matches!(req, Request::Relay { .. });
        if ack.is_some() && event.is_some_and(|e| !e.has_ack()) {
            // The contract defines no ack for this event: a client asking
            // for one is the official client's retry queue, which reads the
            // first ack argument as an error. Answer it error-first.
            conn.error_first.store(true, Ordering::Release);
        }
        let is_join = matches!(req, Request::Join { .. });
        let ctx = shared.ctx();
        let mut client = conn.client.lock().await;
        // A join holds the hub's events back until its replay is queued.
        let held = is_join.then(|| conn.out.hold());
        let reply = client.apply(ctx, req).await;
        drop(client);
        if matches!(reply, Reply::Joined(_) | Reply::Left(_)) {
            checkpoint(&shared.hub, &conn.session, &socket.pid()).await;
        }
        let answer = match reply {
            Reply::Refused(r) | Reply::Ended(r) => {
                // The seed chat's events, and what is not an event of the
                // hub or too many of them, report failures as `error` events;
                // a relayed event does in its ack when it asked for one.
                let in_ack = is_relay && ack.is_some();
                if (event.is_none_or(EventKind::is_chat) && !in_ack) || r.code == "RATE_LIMITED" {
                    conn.emit_error(&socket, &r);
                }
                Err(error_value(&r.code, &r.message))
            }
            Reply::Joined(j) if event == Some(EventKind::Join) => {
                // The ack first, then the replay, then live messages.
                let nsp = socket.namespace();
                let value = encode::join_ack(
                    local(nsp, &j.room),
                    &j.epoch,
                    j.offset,
                    &j.members,
                    j.recovered,
                );
                if let Some(ack) = ack {
                    conn.ack(ack, Ok(Some(value)));
                }
                let newest = conn.seq();
                for m in &j.replay {
                    let _ = socket.emit_encoded(&message_packet_at(socket.namespace(), m, newest));
                }
                drop(held);
                return;
            }
            other => Ok(ack_value(socket.namespace(), event, other)),
        };
        drop(held);
        // Every event that asked for an ack gets one (the official client
        // with `retries` sends its next packet only after the ack).
        if let Some(ack) = ack {
            conn.ack(ack, answer);
        }
    }
}

/// The ack value of a successful request, room names as the socket of
/// namespace `nsp` knows them.
fn ack_value(nsp: &str, event: Option<EventKind>, reply: Reply) -> Option<Value> {
    match reply {
        Reply::Left(room) => Some(encode::leave_ack(local(nsp, &room))),
        Reply::Published(m) => Some(match event {
            Some(EventKind::SendMessage) => encode::send_message_ack(&m.id),
            _ => encode::publish_ack(local(nsp, &m.room_id), m.offset, &m.id),
        }),
        Reply::Relayed(sent) => Some(encode::relay_ack(
            sent.iter().map(|m| (local(nsp, &m.room_id), m.offset)),
        )),
        Reply::History { room, epoch, page } => {
            let shown: Vec<Arc<Message>>;
            let messages = if nsp == ROOT_NAMESPACE {
                &page.messages
            } else {
                shown = page
                    .messages
                    .iter()
                    .map(|m| {
                        let mut m = (**m).clone();
                        m.room_id = local(nsp, &m.room_id).to_owned();
                        Arc::new(m)
                    })
                    .collect();
                &shown
            };
            Some(encode::history(
                local(nsp, &room),
                &epoch,
                messages,
                page.complete,
            ))
        }
        Reply::Presence { room, page } => Some(encode::presence(local(nsp, &room), &page)),
        Reply::RpcResult(result) => Some(result),
        // `joinRoom` and typing answer nothing; the rest are not events of
        // this vocabulary.
        _ => None,
    }
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

    fn unknown_namespace(&self, nsp: &str) -> ConnectRefusal {
        let r = Refusal::unknown_namespace(nsp);
        ConnectRefusal::new("Invalid namespace")
            .with_data(json!({"code": r.code, "reason": r.message}))
    }
}

/// Joins the namespace's `auto_join` rooms (`{user}`: the user's id)
/// through the request layer, like a `join` of the client's. A room that
/// cannot be joined is logged and skipped: the socket is still served.
async fn auto_join(shared: &Shared, client: &mut Client, nsp: &str) {
    let Some(policy) = shared.hub.config().policies.namespace(nsp) else {
        return;
    };
    if policy.auto_join.is_empty() {
        return;
    }
    let id = client.session().user().id;
    for room in &policy.auto_join {
        let room = room.replace(USER_PLACEHOLDER, &id);
        let req = Request::Join {
            room: room.clone(),
            since: None,
            epoch: None,
            name: None,
            switch: false,
        };
        if let Reply::Refused(r) = client.apply(shared.ctx(), req).await {
            tracing::info!(room, code = %r.code, reason = %r.message, "auto_join refused");
        }
    }
}
