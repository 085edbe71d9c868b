//! The handle on one namespace socket that the application keeps: emit
//! (never blocks), emit with an ack, disconnect.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;

use crate::engine::{CloseReason, Frame, SendError, Session};
use crate::handler::DisconnectReason;
use crate::payload::{EncodedPacket, Payload, encode_frames};
use crate::sio::ClientShared;

/// Why an emit was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    /// The outbound queue was full: the client has been disconnected as a
    /// slow consumer.
    #[error("outbound queue full (slow consumer)")]
    QueueFull,
    /// The socket is no longer connected.
    #[error("socket disconnected")]
    Disconnected,
    /// An [`EncodedPacket`] encoded for another namespace.
    #[error("packet encoded for another namespace")]
    WrongNamespace,
}

impl From<SendError> for EmitError {
    fn from(e: SendError) -> Self {
        match e {
            SendError::QueueFull => Self::QueueFull,
            SendError::Closed => Self::Disconnected,
        }
    }
}

/// Why an emit with ack produced no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    /// The emit itself failed.
    #[error("emit failed: {0}")]
    Emit(#[from] EmitError),
    /// No answer within the timeout.
    #[error("no ack within the timeout")]
    Timeout,
    /// The socket disconnected before the answer.
    #[error("socket disconnected before the ack")]
    Disconnected,
    /// The socket already waits for as many acks as allowed.
    #[error("too many acks pending")]
    TooManyPending,
}

#[derive(Debug, Default)]
struct Acks {
    next_id: u64,
    pending: HashMap<u64, oneshot::Sender<Payload>>,
}

#[derive(Debug)]
pub(crate) struct SocketInner {
    sid: Arc<str>,
    pid: Mutex<Arc<str>>,
    nsp: Arc<str>,
    auth: Value,
    session: Arc<Session>,
    client: Weak<ClientShared>,
    acks: Mutex<Acks>,
    /// Frames emitted before the CONNECT answer went out; `None` once it has.
    prebuffer: Mutex<Option<Vec<Frame>>>,
    connected: AtomicBool,
    max_pending_acks: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here is a plain field update: recover from poisoning.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One client's connection to one namespace. Cheap to clone; every clone
/// is the same socket.
#[derive(Debug, Clone)]
pub struct Socket {
    pub(crate) inner: Arc<SocketInner>,
}

impl PartialEq for Socket {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for Socket {}

pub(crate) fn random_id() -> Arc<str> {
    use base64::Engine as _;
    let bytes: [u8; 15] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(bytes)
        .into()
}

impl Socket {
    pub(crate) fn new(
        nsp: &str,
        auth: Value,
        session: Arc<Session>,
        client: Weak<ClientShared>,
        max_pending_acks: usize,
    ) -> Self {
        Self {
            inner: Arc::new(SocketInner {
                sid: random_id(),
                pid: Mutex::new(random_id()),
                nsp: nsp.into(),
                auth,
                session,
                client,
                acks: Mutex::new(Acks::default()),
                prebuffer: Mutex::new(Some(Vec::new())),
                connected: AtomicBool::new(true),
                max_pending_acks,
            }),
        }
    }

    /// The socket id (`socket.id` on the client), distinct per namespace.
    pub fn id(&self) -> &str {
        &self.inner.sid
    }

    /// The private session id used by connection state recovery; final once
    /// [`crate::SioHandler::connect`] has returned.
    pub fn pid(&self) -> Arc<str> {
        lock(&self.inner.pid).clone()
    }

    pub(crate) fn set_pid(&self, pid: &str) {
        *lock(&self.inner.pid) = pid.into();
    }

    /// The namespace (`/`, `/chat`, …).
    pub fn namespace(&self) -> &str {
        &self.inner.nsp
    }

    /// The CONNECT auth payload (`{}` when the client sent none).
    pub fn auth(&self) -> &Value {
        &self.inner.auth
    }

    /// The Engine.IO session id (shared by the namespaces of one client).
    pub fn engine_id(&self) -> &str {
        self.inner.session.sid()
    }

    /// The transport in use now: `"polling"` or `"websocket"`.
    pub fn transport(&self) -> &'static str {
        self.inner.session.transport().as_str()
    }

    /// The peer address, when the server runs with connect info.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.inner.session.remote_addr()
    }

    /// The headers of the request that opened the Engine.IO session.
    pub fn headers(&self) -> &http::HeaderMap {
        self.inner.session.headers()
    }

    /// The query string of the request that opened the Engine.IO session.
    pub fn query(&self) -> &str {
        self.inner.session.query()
    }

    /// True until the socket leaves its namespace or the session closes.
    pub fn is_connected(&self) -> bool {
        self.inner.connected.load(Ordering::Acquire) && !self.inner.session.is_closed()
    }

    fn push(&self, frames: &[Frame]) -> Result<(), EmitError> {
        if !self.inner.connected.load(Ordering::Acquire) {
            return Err(EmitError::Disconnected);
        }
        {
            let mut pre = lock(&self.inner.prebuffer);
            if let Some(buf) = pre.as_mut() {
                if buf.len() + frames.len() > self.inner.session.config.max_queued_packets {
                    return Err(EmitError::QueueFull);
                }
                buf.extend_from_slice(frames);
                return Ok(());
            }
        }
        Ok(self.inner.session.send_all(frames)?)
    }

    /// Sends the CONNECT answer, then what was emitted during `connect`.
    pub(crate) fn finish_connect(&self, reply: Frame) -> Result<(), EmitError> {
        let mut pre = lock(&self.inner.prebuffer);
        let mut frames = vec![reply];
        frames.extend(pre.take().unwrap_or_default());
        Ok(self.inner.session.send_all(&frames)?)
    }

    /// Queues an event without blocking.
    ///
    /// # Errors
    /// [`EmitError::QueueFull`] when the client's queue is full (the client
    /// is then disconnected as a slow consumer), [`EmitError::Disconnected`]
    /// when the socket is gone.
    pub fn emit(&self, event: &str, payload: &Payload) -> Result<(), EmitError> {
        self.push(&encode_frames(&self.inner.nsp, None, Some(event), payload))
    }

    /// Queues an event encoded once for many sockets (see [`EncodedPacket`]).
    ///
    /// # Errors
    /// As [`Socket::emit`], plus [`EmitError::WrongNamespace`].
    pub fn emit_encoded(&self, packet: &EncodedPacket) -> Result<(), EmitError> {
        if packet.namespace() != &*self.inner.nsp {
            return Err(EmitError::WrongNamespace);
        }
        self.push(packet.frames())
    }

    /// Queues an event asking for an ack now, and returns a future of the
    /// client's answer (bounded by `timeout`).
    ///
    /// # Errors
    /// The future yields an [`AckError`] on timeout, disconnect, a failed
    /// emit, or too many pending acks.
    pub fn emit_with_ack(
        &self,
        event: &str,
        payload: &Payload,
        timeout: Duration,
    ) -> impl Future<Output = Result<Payload, AckError>> + Send + 'static {
        let setup = self.start_ack(event, payload);
        let inner = self.inner.clone();
        async move {
            let (id, rx) = setup?;
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(p)) => Ok(p),
                Ok(Err(_)) => Err(AckError::Disconnected),
                Err(_) => {
                    lock(&inner.acks).pending.remove(&id);
                    Err(AckError::Timeout)
                }
            }
        }
    }

    fn start_ack(
        &self,
        event: &str,
        payload: &Payload,
    ) -> Result<(u64, oneshot::Receiver<Payload>), AckError> {
        if !self.is_connected() {
            return Err(AckError::Emit(EmitError::Disconnected));
        }
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut acks = lock(&self.inner.acks);
            if acks.pending.len() >= self.inner.max_pending_acks {
                return Err(AckError::TooManyPending);
            }
            let id = acks.next_id;
            acks.next_id += 1;
            acks.pending.insert(id, tx);
            id
        };
        let frames = encode_frames(&self.inner.nsp, Some(id), Some(event), payload);
        if let Err(e) = self.push(&frames) {
            lock(&self.inner.acks).pending.remove(&id);
            return Err(AckError::Emit(e));
        }
        Ok((id, rx))
    }

    pub(crate) fn resolve_ack(&self, id: u64, payload: Payload) {
        let tx = lock(&self.inner.acks).pending.remove(&id);
        if let Some(tx) = tx {
            let _ = tx.send(payload);
        }
    }

    /// Marks the socket gone (once); true for the caller that did it.
    pub(crate) fn mark_disconnected(&self) -> bool {
        let was = self.inner.connected.swap(false, Ordering::AcqRel);
        if was {
            // Dropping the senders fails every pending ack with `Disconnected`.
            lock(&self.inner.acks).pending.clear();
        }
        was
    }

    /// Makes the socket leave its namespace: the client gets a DISCONNECT
    /// packet (`io server disconnect`, no automatic reconnection) and the
    /// handler's `disconnect` runs with
    /// [`DisconnectReason::ServerNamespaceDisconnect`]. The Engine.IO session
    /// stays open for the client's other namespaces.
    pub fn disconnect(&self) {
        if !self.mark_disconnected() {
            return;
        }
        let mut text = String::from("4");
        prise_proto::socketio::encode_header(
            &mut text,
            prise_proto::socketio::PacketKind::Disconnect,
            &self.inner.nsp,
            None,
            0,
        );
        let _ = self.inner.session.send(Frame::text(text));
        if let Some(client) = self.inner.client.upgrade() {
            client.remove(self);
            let handler = client.handler.clone();
            let socket = self.clone();
            client.tasks.spawn(async move {
                handler
                    .disconnect(socket, DisconnectReason::ServerNamespaceDisconnect)
                    .await;
            });
        }
    }

    /// Closes the whole Engine.IO session (every namespace of this client);
    /// the client sees `transport close` and reconnects by itself.
    pub fn close_transport(&self) {
        self.inner.session.close(CloseReason::ServerClose);
    }
}

/// The answer the client asked for with an event. Send it once, or drop it
/// (the client's own timeout then fires).
#[derive(Debug)]
pub struct Ack {
    socket: Socket,
    id: u64,
}

impl Ack {
    pub(crate) fn new(socket: Socket, id: u64) -> Self {
        Self { socket, id }
    }

    /// The ack id the client chose.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Sends the answer.
    ///
    /// # Errors
    /// As [`Socket::emit`].
    pub fn send(self, payload: &Payload) -> Result<(), EmitError> {
        let frames = encode_frames(&self.socket.inner.nsp, Some(self.id), None, payload);
        self.socket.push(&frames)
    }
}
