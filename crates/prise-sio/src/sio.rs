//! The Socket.IO v5 server on top of the Engine.IO layer.
//!
//! Per Engine.IO session: a [`SioConn`] on the reading side (decodes,
//! reassembles attachments, resolves acks at once) and one client task that
//! runs the application's handler for CONNECT, EVENT and DISCONNECT, in order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use prise_proto::socketio::{Decoded, Decoder, Packet, PacketKind};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use crate::config::SioConfig;
use crate::engine::{
    CloseReason, Engine, EngineConn, EngineHandler, EngineMessage, Frame, Session,
};
use crate::handler::{ConnectOutcome, DisconnectReason, RecoveryRequest, SioHandler};
use crate::payload::Payload;
use crate::socket::{Ack, Socket};

/// What one Engine.IO session shares between its reader and its client task.
#[derive(Debug)]
pub(crate) struct ClientShared {
    pub(crate) session: Arc<Session>,
    sockets: Mutex<HashMap<String, Socket>>,
    pub(crate) handler: Arc<dyn SioHandler>,
    pub(crate) tasks: TaskTracker,
}

impl std::fmt::Debug for dyn SioHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SioHandler")
    }
}

impl ClientShared {
    fn sockets(&self) -> MutexGuard<'_, HashMap<String, Socket>> {
        // Plain map operations: recover from poisoning.
        self.sockets.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn socket(&self, nsp: &str) -> Option<Socket> {
        self.sockets().get(nsp).cloned()
    }

    pub(crate) fn remove(&self, socket: &Socket) {
        let mut map = self.sockets();
        if map.get(socket.namespace()) == Some(socket) {
            map.remove(socket.namespace());
        }
    }

    fn send_packet(&self, packet: &Packet) {
        let _ = self
            .session
            .send(Frame::text(format!("4{}", packet.encode())));
    }
}

enum Inbound {
    /// Boxed: the queue allocates its first block of slots up front for
    /// every client, so a small slot keeps an idle client small.
    Packet(Box<Decoded>),
    Closed(CloseReason),
}

/// The Engine.IO handler that speaks Socket.IO.
pub struct SioEngine {
    config: Arc<SioConfig>,
    handler: Arc<dyn SioHandler>,
    tasks: TaskTracker,
}

impl std::fmt::Debug for SioEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SioEngine")
            .field("namespaces", &self.config.namespaces)
            .finish()
    }
}

/// The reading side of one Engine.IO session.
#[derive(Debug)]
pub struct SioConn {
    decoder: Decoder,
    tx: mpsc::Sender<Inbound>,
    shared: Arc<ClientShared>,
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Packet(d) => write!(f, "Packet({:?})", d.packet.kind),
            Self::Closed(r) => write!(f, "Closed({r:?})"),
        }
    }
}

impl EngineHandler for SioEngine {
    type Conn = SioConn;

    fn on_open(&self, session: &Arc<Session>) -> SioConn {
        let shared = Arc::new(ClientShared {
            session: session.clone(),
            sockets: Mutex::new(HashMap::new()),
            handler: self.handler.clone(),
            tasks: self.tasks.clone(),
        });
        let (tx, rx) = mpsc::channel(self.config.inbound_queue.max(1));
        self.tasks
            .spawn(client_task(shared.clone(), rx, self.config.clone()));
        SioConn {
            decoder: Decoder::new(self.config.limits),
            tx,
            shared,
        }
    }
}

fn payload_of(d: Decoded, skip_name: bool) -> (Option<String>, Payload) {
    let mut args = match d.packet.data {
        Some(Value::Array(a)) => a,
        _ => Vec::new(),
    };
    let name = if skip_name && !args.is_empty() {
        match args.remove(0) {
            Value::String(s) => Some(s),
            _ => None,
        }
    } else {
        None
    };
    (
        name,
        Payload {
            args,
            attachments: d.attachments,
        },
    )
}

impl EngineConn for SioConn {
    async fn on_message(&mut self, message: EngineMessage) {
        let r = match message {
            EngineMessage::Text(t) => self.decoder.feed_text(&t),
            EngineMessage::Binary(b) => self.decoder.feed_binary(b),
        };
        match r {
            Err(e) => {
                tracing::debug!(sid = self.shared.session.sid(), error = %e, "invalid socket.io packet");
                self.shared.session.close(CloseReason::ParseError);
            }
            Ok(None) => {}
            Ok(Some(d)) => match d.packet.kind {
                PacketKind::Ack | PacketKind::BinaryAck => {
                    if let (Some(socket), Some(id)) =
                        (self.shared.socket(&d.packet.nsp), d.packet.id)
                    {
                        let (_, payload) = payload_of(d, false);
                        socket.resolve_ack(id, payload);
                    }
                }
                _ => {
                    let _ = self.tx.send(Inbound::Packet(Box::new(d))).await;
                }
            },
        }
    }

    async fn on_close(&mut self, reason: CloseReason) {
        let _ = self.tx.send(Inbound::Closed(reason)).await;
    }
}

async fn client_task(
    shared: Arc<ClientShared>,
    mut rx: mpsc::Receiver<Inbound>,
    config: Arc<SioConfig>,
) {
    let connect_deadline = tokio::time::sleep(config.connect_timeout);
    tokio::pin!(connect_deadline);
    let mut armed = true;
    loop {
        let msg = tokio::select! {
            m = rx.recv() => m,
            _ = &mut connect_deadline, if armed => {
                armed = false;
                if shared.sockets().is_empty() {
                    shared.session.close(CloseReason::ConnectTimeout);
                }
                continue;
            }
        };
        match msg {
            None => break,
            Some(Inbound::Closed(reason)) => {
                let sockets: Vec<Socket> = shared.sockets().drain().map(|(_, s)| s).collect();
                for s in sockets {
                    if s.mark_disconnected() {
                        shared
                            .handler
                            .disconnect(s, DisconnectReason::Transport(reason))
                            .await;
                    }
                }
                break;
            }
            // Boxed: handling a packet is a large future, and a task keeps
            // room for its largest state for its whole life.
            Some(Inbound::Packet(d)) => Box::pin(handle_packet(&shared, &config, *d)).await,
        }
    }
}

fn split_recovery(auth: &mut Value) -> Option<RecoveryRequest> {
    let obj = auth.as_object_mut()?;
    let pid = obj.remove("pid");
    let offset = obj.remove("offset");
    match (pid, offset) {
        (Some(Value::String(pid)), Some(Value::String(offset))) => {
            Some(RecoveryRequest { pid, offset })
        }
        _ => None,
    }
}

async fn handle_packet(shared: &Arc<ClientShared>, config: &SioConfig, d: Decoded) {
    let nsp = d.packet.nsp.clone();
    match d.packet.kind {
        PacketKind::Connect => {
            if !config.namespaces.contains(&nsp) {
                let refusal = shared.handler.unknown_namespace(&nsp);
                let mut data = json!({"message": refusal.message});
                if let Some(extra) = refusal.data {
                    data["data"] = extra;
                }
                shared.send_packet(&Packet {
                    kind: PacketKind::ConnectError,
                    nsp,
                    id: None,
                    data: Some(data),
                    attachments: 0,
                });
                return;
            }
            if shared.socket(&nsp).is_some() {
                tracing::debug!(nsp, "second CONNECT for a connected namespace ignored");
                return;
            }
            let mut auth = d.packet.data.unwrap_or_else(|| Value::Object(Map::new()));
            let recovery = if config.recovery {
                split_recovery(&mut auth)
            } else {
                None
            };
            let socket = Socket::new(
                &nsp,
                auth.clone(),
                shared.session.clone(),
                Arc::downgrade(shared),
                config.max_pending_acks,
            );
            match shared
                .handler
                .connect(socket.clone(), auth, recovery.clone())
                .await
            {
                Ok(outcome) => {
                    if let (ConnectOutcome::Recovered, Some(r)) = (outcome, &recovery) {
                        socket.set_pid(&r.pid);
                    }
                    if shared.session.is_closed() || !socket.is_connected() {
                        return;
                    }
                    shared.sockets().insert(nsp.clone(), socket.clone());
                    let mut data = json!({"sid": socket.id()});
                    if config.recovery {
                        data["pid"] = Value::String(socket.pid().to_string());
                    }
                    let reply = Packet {
                        kind: PacketKind::Connect,
                        nsp,
                        id: None,
                        data: Some(data),
                        attachments: 0,
                    };
                    let _ = socket.finish_connect(Frame::text(format!("4{}", reply.encode())));
                }
                Err(refusal) => {
                    socket.mark_disconnected();
                    let mut data = json!({"message": refusal.message});
                    if let Some(extra) = refusal.data {
                        data["data"] = extra;
                    }
                    shared.send_packet(&Packet {
                        kind: PacketKind::ConnectError,
                        nsp,
                        id: None,
                        data: Some(data),
                        attachments: 0,
                    });
                }
            }
        }
        PacketKind::Disconnect => {
            if let Some(socket) = shared.socket(&nsp) {
                shared.remove(&socket);
                if socket.mark_disconnected() {
                    shared
                        .handler
                        .disconnect(socket, DisconnectReason::ClientNamespaceDisconnect)
                        .await;
                }
            }
        }
        PacketKind::Event | PacketKind::BinaryEvent => {
            let Some(socket) = shared.socket(&nsp) else {
                return;
            };
            let id = d.packet.id;
            let (name, payload) = payload_of(d, true);
            let Some(name) = name else { return };
            let ack = id.map(|id| Ack::new(socket.clone(), id));
            shared.handler.event(socket, name, payload, ack).await;
        }
        PacketKind::Ack | PacketKind::BinaryAck | PacketKind::ConnectError => {}
    }
}

/// A Socket.IO server ready to be served by axum: build it with
/// [`SioLayer::new`], merge [`SioLayer::router`] into the application, call
/// [`SioLayer::shutdown`] when the server stops. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SioLayer {
    engine: Arc<Engine<SioEngine>>,
}

impl SioLayer {
    /// A server with these settings and this application handler.
    pub fn new(config: SioConfig, handler: impl SioHandler) -> Self {
        Self::with_handler(config, Arc::new(handler))
    }

    /// As [`SioLayer::new`], with a shared handler.
    pub fn with_handler(mut config: SioConfig, handler: Arc<dyn SioHandler>) -> Self {
        if !config.namespaces.iter().any(|n| n == "/") {
            config.namespaces.push("/".to_owned());
        }
        let engine_config = config.engine.clone();
        let sio = SioEngine {
            config: Arc::new(config),
            handler,
            tasks: TaskTracker::new(),
        };
        Self {
            engine: Engine::new(engine_config, sio),
        }
    }

    /// The axum router serving the configured path (default `/socket.io/`).
    pub fn router(&self) -> axum::Router {
        self.engine.router()
    }

    /// Makes this server one of a cluster (see [`crate::SessionCluster`]).
    /// Set it before serving; a second call is ignored (false).
    pub fn set_cluster(&self, cluster: crate::SharedCluster) -> bool {
        self.engine.set_cluster(cluster)
    }

    /// Number of open Engine.IO sessions.
    pub fn session_count(&self) -> usize {
        self.engine.session_count()
    }

    /// Closes every session (WebSockets get a close frame 1001, pending polls
    /// a close packet; handlers see `server shutting down`) and waits up to
    /// `deadline` for the session tasks and handler calls to finish.
    pub async fn shutdown(&self, deadline: Duration) {
        let start = tokio::time::Instant::now();
        self.engine.shutdown(deadline).await;
        let tasks = &self.engine.handler().tasks;
        tasks.close();
        let left = deadline.saturating_sub(start.elapsed());
        let _ = tokio::time::timeout(left, tasks.wait()).await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn inbound_stays_small() {
        // Every client's queue allocates a block of 32 slots up front.
        assert!(std::mem::size_of::<super::Inbound>() <= 16);
    }
}
