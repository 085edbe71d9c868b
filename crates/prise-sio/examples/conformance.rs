//! The server the Engine.IO / Socket.IO conformance suites and scenario
//! checks drive (see `docs/socketio.md`):
//!
//! - `/engine.io/`: a raw Engine.IO server that echoes every message;
//! - `/socket.io/`: Socket.IO with namespaces `/`, `/custom`, `/secure`
//!   (auth token must be `secret`) and the scenario events
//!   (`message`, `message-with-ack`, `echo`, `join`, `leave`, `say`,
//!   `binary`, `whoami`, `ask`, `drop`, `kick`);
//! - `/recovery.io/`: Socket.IO with connection state recovery on, for the
//!   recovery interop check: `publish(msg)` appends to a small log and
//!   broadcasts `news(msg, offset)` to every socket (the offset last, as the
//!   official client expects); a client coming back with `{pid, offset}`
//!   gets what it missed and `socket.recovered === true`;
//! - `/health`: `ok`.
//!
//! ```text
//! cargo run -p prise-sio --example conformance -- --port 0
//! ```
//! prints `listening on http://127.0.0.1:PORT` once bound.

use std::collections::{BTreeSet, HashMap};
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prise_sio::{
    Ack, BoxFuture, CloseReason, ConnectOutcome, ConnectRefusal, DisconnectReason, EncodedPacket,
    Engine, EngineConfig, EngineConn, EngineHandler, EngineMessage, Frame, Payload,
    RecoveryRequest, Session, SioConfig, SioHandler, SioLayer, Socket,
};
use serde_json::{Value, json};

/// Raw Engine.IO echo.
struct Echo;

struct EchoConn(Arc<Session>);

impl EngineHandler for Echo {
    type Conn = EchoConn;
    fn on_open(&self, session: &Arc<Session>) -> EchoConn {
        EchoConn(session.clone())
    }
}

impl EngineConn for EchoConn {
    async fn on_message(&mut self, message: EngineMessage) {
        let frame = match message {
            EngineMessage::Text(t) => Frame::text(format!("4{t}")),
            EngineMessage::Binary(b) => Frame::Binary(b),
        };
        let _ = self.0.send(frame);
    }
    async fn on_close(&mut self, _reason: CloseReason) {}
}

/// Rooms: (namespace, room) → members, and each socket's rooms.
#[derive(Default)]
struct Rooms {
    members: HashMap<(String, String), Vec<Socket>>,
    of_socket: HashMap<String, BTreeSet<String>>,
}

#[derive(Default)]
struct App {
    rooms: Mutex<Rooms>,
}

impl App {
    fn rooms(&self) -> std::sync::MutexGuard<'_, Rooms> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn room_list(&self, socket: &Socket) -> Value {
        let rooms = self.rooms();
        let mut list = vec![json!(socket.id())];
        if let Some(set) = rooms.of_socket.get(socket.id()) {
            list.extend(set.iter().map(|r| json!(r)));
        }
        Value::Array(list)
    }

    fn join(&self, socket: &Socket, room: &str) {
        let mut rooms = self.rooms();
        let key = (socket.namespace().to_owned(), room.to_owned());
        let members = rooms.members.entry(key).or_default();
        if !members.contains(socket) {
            members.push(socket.clone());
        }
        rooms
            .of_socket
            .entry(socket.id().to_owned())
            .or_default()
            .insert(room.to_owned());
    }

    fn leave(&self, socket: &Socket, room: &str) {
        let mut rooms = self.rooms();
        let key = (socket.namespace().to_owned(), room.to_owned());
        if let Some(m) = rooms.members.get_mut(&key) {
            m.retain(|s| s != socket);
            if m.is_empty() {
                rooms.members.remove(&key);
            }
        }
        if let Some(set) = rooms.of_socket.get_mut(socket.id()) {
            set.remove(room);
        }
    }

    fn leave_all(&self, socket: &Socket) {
        let joined: Vec<String> = self
            .rooms()
            .of_socket
            .remove(socket.id())
            .map(|s| s.into_iter().collect())
            .unwrap_or_default();
        for room in joined {
            self.leave(socket, &room);
        }
    }

    fn others_in(&self, socket: &Socket, room: &str) -> Vec<Socket> {
        let key = (socket.namespace().to_owned(), room.to_owned());
        self.rooms()
            .members
            .get(&key)
            .map(|m| m.iter().filter(|s| *s != socket).cloned().collect())
            .unwrap_or_default()
    }
}

fn reply(ack: Option<Ack>, payload: Payload) {
    if let Some(ack) = ack {
        let _ = ack.send(&payload);
    }
}

impl SioHandler for App {
    fn connect<'a>(
        &'a self,
        socket: Socket,
        auth: Value,
        _recovery: Option<RecoveryRequest>,
    ) -> BoxFuture<'a, Result<ConnectOutcome, ConnectRefusal>> {
        Box::pin(async move {
            if socket.namespace() == "/secure" && auth.get("token") != Some(&json!("secret")) {
                return Err(
                    ConnectRefusal::new("unauthorized").with_data(json!({"reason": "bad token"}))
                );
            }
            let _ = socket.emit("auth", &Payload::one(auth));
            Ok(ConnectOutcome::Fresh)
        })
    }

    fn event<'a>(
        &'a self,
        socket: Socket,
        event: String,
        payload: Payload,
        ack: Option<Ack>,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let first = payload.args.first().cloned().unwrap_or(Value::Null);
            match event.as_str() {
                "message" => {
                    let _ = socket.emit("message-back", &payload);
                }
                "message-with-ack" | "echo" => reply(ack, payload),
                "join" | "leave" => {
                    let room = first
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| first.to_string());
                    if event == "join" {
                        self.join(&socket, &room);
                    } else {
                        self.leave(&socket, &room);
                    }
                    let rooms = self.room_list(&socket);
                    reply(ack, Payload::one(json!({"room": room, "rooms": rooms})));
                }
                "say" => {
                    let room = first["room"].as_str().unwrap_or_default().to_owned();
                    let msg = first["msg"].clone();
                    let others = self.others_in(&socket, &room);
                    let packet = EncodedPacket::event(
                        socket.namespace(),
                        "said",
                        &Payload::one(json!({"room": room, "msg": msg, "from": socket.id()})),
                    );
                    for s in &others {
                        let _ = s.emit_encoded(&packet);
                    }
                    reply(ack, Payload::one(json!(others.len())));
                }
                "binary" => {
                    let data = payload.binary(&first).cloned().unwrap_or_default();
                    let mut back = Payload::default();
                    let ph = back.push_binary(data.clone());
                    back.args
                        .push(json!({"len": data.len(), "data": ph, "nested": [ph]}));
                    let _ = socket.emit("binary-back", &back);
                    reply(ack, payload);
                }
                "whoami" => reply(
                    ack,
                    Payload::one(json!({
                        "id": socket.id(),
                        "nsp": socket.namespace(),
                        "auth": socket.auth(),
                        "transport": socket.transport(),
                        "engineId": socket.engine_id(),
                    })),
                ),
                "ask" => {
                    // Awaiting the client's answer in its own task keeps this
                    // client's next events flowing meanwhile.
                    let answer = socket.emit_with_ack("question", &payload, Duration::from_secs(2));
                    tokio::spawn(async move {
                        let out = match answer.await {
                            Ok(p) => Payload {
                                args: vec![json!({
                                    "ok": true,
                                    "answer": p.args.first().cloned().unwrap_or(Value::Null),
                                })],
                                attachments: p.attachments,
                            },
                            Err(e) => Payload::one(json!({"ok": false, "error": e.to_string()})),
                        };
                        reply(ack, out);
                    });
                }
                "drop" => socket.close_transport(),
                "kick" => socket.disconnect(),
                _ => {}
            }
        })
    }

    fn disconnect<'a>(&'a self, socket: Socket, _reason: DisconnectReason) -> BoxFuture<'a, ()> {
        Box::pin(async move { self.leave_all(&socket) })
    }
}

/// Most messages the recovery log keeps.
const RECOVERY_LOG: usize = 1_000;

/// Connection state recovery on top of an in-memory log with a global offset.
#[derive(Default)]
struct RecoveryApp {
    state: Mutex<RecoveryState>,
}

#[derive(Default)]
struct RecoveryState {
    next_offset: u64,
    log: std::collections::VecDeque<(u64, Value)>,
    known_pids: BTreeSet<String>,
    members: Vec<Socket>,
}

impl RecoveryApp {
    fn state(&self) -> std::sync::MutexGuard<'_, RecoveryState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn news(msg: &Value, offset: u64) -> Payload {
    Payload::new(vec![msg.clone(), json!(offset.to_string())])
}

impl SioHandler for RecoveryApp {
    fn connect<'a>(
        &'a self,
        socket: Socket,
        _auth: Value,
        recovery: Option<RecoveryRequest>,
    ) -> BoxFuture<'a, Result<ConnectOutcome, ConnectRefusal>> {
        Box::pin(async move {
            let mut st = self.state();
            let resume = recovery.and_then(|r| {
                let offset: u64 = r.offset.parse().ok()?;
                let covered = st.log.front().is_none_or(|(first, _)| *first <= offset + 1);
                (st.known_pids.contains(&r.pid) && covered).then_some((r.pid, offset))
            });
            let outcome = match &resume {
                Some((_, offset)) => {
                    // Emitted now, sent right after the CONNECT answer.
                    for (o, msg) in st.log.iter().filter(|(o, _)| o > offset) {
                        let _ = socket.emit("news", &news(msg, *o));
                    }
                    ConnectOutcome::Recovered
                }
                None => ConnectOutcome::Fresh,
            };
            let pid = resume.map_or_else(|| socket.pid().to_string(), |(pid, _)| pid);
            st.known_pids.insert(pid);
            st.members.push(socket);
            Ok(outcome)
        })
    }

    fn event<'a>(
        &'a self,
        socket: Socket,
        event: String,
        payload: Payload,
        ack: Option<Ack>,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            match event.as_str() {
                "publish" => {
                    let msg = payload.args.first().cloned().unwrap_or(Value::Null);
                    let (offset, packet, members) = {
                        let mut st = self.state();
                        st.next_offset += 1;
                        let offset = st.next_offset;
                        st.log.push_back((offset, msg.clone()));
                        if st.log.len() > RECOVERY_LOG {
                            st.log.pop_front();
                        }
                        // Encoded once for every member.
                        let packet = EncodedPacket::event("/", "news", &news(&msg, offset));
                        (offset, packet, st.members.clone())
                    };
                    for m in &members {
                        let _ = m.emit_encoded(&packet);
                    }
                    reply(ack, Payload::one(json!(offset.to_string())));
                }
                "drop" => socket.close_transport(),
                _ => {}
            }
        })
    }

    fn disconnect<'a>(&'a self, socket: Socket, _reason: DisconnectReason) -> BoxFuture<'a, ()> {
        Box::pin(async move { self.state().members.retain(|s| *s != socket) })
    }
}

fn engine_config(path: &str, ping: (Duration, Duration)) -> EngineConfig {
    let mut c = EngineConfig::default();
    c.path = path.to_owned();
    c.ping_interval = ping.0;
    c.ping_timeout = ping.1;
    c.max_payload = 1_000_000;
    c.cors.allowed_origins = vec!["*".to_owned()];
    c.cors.credentials = false;
    c
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let mut port: u16 = 3000;
    let mut host = "127.0.0.1".to_owned();
    // The official suites assert pingInterval 300 and pingTimeout 200 (ms).
    let mut ping = (Duration::from_millis(300), Duration::from_millis(200));
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_default();
        match a.as_str() {
            "--port" => port = value().parse()?,
            "--host" => host = value(),
            "--ping-interval-ms" => ping.0 = Duration::from_millis(value().parse()?),
            "--ping-timeout-ms" => ping.1 = Duration::from_millis(value().parse()?),
            other => anyhow::bail!(
                "unknown argument {other} (use --port N, --host H, --ping-interval-ms N, --ping-timeout-ms N)"
            ),
        }
    }

    let eio = Engine::new(engine_config("/engine.io/", ping), Echo);
    let mut main_config = SioConfig::default();
    main_config.engine = engine_config("/socket.io/", ping);
    main_config.namespaces = vec!["/".into(), "/custom".into(), "/secure".into()];
    main_config.connect_timeout = Duration::from_millis(1000);
    let sio = SioLayer::new(main_config, App::default());
    let mut recovery_config = SioConfig::default();
    recovery_config.engine = engine_config("/recovery.io/", ping);
    recovery_config.recovery = true;
    let recovery = SioLayer::new(recovery_config, RecoveryApp::default());
    let app = axum::Router::new()
        .route("/health", axum::routing::get(|| async { "ok" }))
        .merge(eio.router())
        .merge(sio.router())
        .merge(recovery.router());

    let listener = tokio::net::TcpListener::bind((host.as_str(), port)).await?;
    let addr = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{addr}")?;
        out.flush()?;
    }
    let stop = {
        let sio = sio.clone();
        let eio = eio.clone();
        let recovery = recovery.clone();
        async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler can be installed at startup");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            sio.shutdown(Duration::from_secs(2)).await;
            recovery.shutdown(Duration::from_secs(1)).await;
            eio.shutdown(Duration::from_secs(1)).await;
        }
    };
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(stop)
    .await?;
    Ok(())
}
