//! Engine.IO / Socket.IO server behaviour over real sockets on 127.0.0.1:0:
//! raw HTTP/1.1 for long-polling, `prise-ws` for WebSocket.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use futures_util::SinkExt;
use prise_sio::{
    Ack, AckError, BoxFuture, CloseReason, ConnectOutcome, ConnectRefusal, DisconnectReason,
    EmitError, EncodedPacket, Payload, RecoveryRequest, SioConfig, SioHandler, SioLayer, Socket,
};
use prise_testkit::{HttpRequest, HttpResponse, WsClient};
use prise_ws::Message;
use serde_json::{Value, json};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(5);

#[derive(Debug)]
enum Ev {
    Connect(Socket, Value, Option<RecoveryRequest>),
    Event(Socket, String, Payload, Option<Ack>),
    Disconnect(Socket, DisconnectReason),
}

/// Records every call; refuses `{"token":"bad"}`; recovers pid `known-pid`.
struct Recorder(mpsc::UnboundedSender<Ev>);

impl SioHandler for Recorder {
    fn connect<'a>(
        &'a self,
        socket: Socket,
        auth: Value,
        recovery: Option<RecoveryRequest>,
    ) -> BoxFuture<'a, Result<ConnectOutcome, ConnectRefusal>> {
        Box::pin(async move {
            if auth.get("token") == Some(&json!("bad")) {
                return Err(ConnectRefusal::new("denied").with_data(json!({"why": "token"})));
            }
            let recovered = recovery.as_ref().is_some_and(|r| r.pid == "known-pid");
            let _ = socket.emit("hello", &Payload::one(auth.clone()));
            let _ = self.0.send(Ev::Connect(socket, auth, recovery));
            Ok(if recovered {
                ConnectOutcome::Recovered
            } else {
                ConnectOutcome::Fresh
            })
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
            let _ = self.0.send(Ev::Event(socket, event, payload, ack));
        })
    }

    fn disconnect<'a>(&'a self, socket: Socket, reason: DisconnectReason) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let _ = self.0.send(Ev::Disconnect(socket, reason));
        })
    }
}

struct Server {
    addr: SocketAddr,
    layer: SioLayer,
    events: mpsc::UnboundedReceiver<Ev>,
}

impl Server {
    async fn next(&mut self) -> Result<Ev> {
        tokio::time::timeout(WAIT, self.events.recv())
            .await
            .context("no handler call in time")?
            .context("handler channel closed")
    }

    async fn next_connect(&mut self) -> Result<(Socket, Value, Option<RecoveryRequest>)> {
        match self.next().await? {
            Ev::Connect(s, a, r) => Ok((s, a, r)),
            other => bail!("expected connect, got {other:?}"),
        }
    }
}

fn test_config() -> SioConfig {
    let mut c = SioConfig::default();
    c.engine.path = "/socket.io/".into();
    c.engine.ping_interval = Duration::from_secs(10);
    c.engine.ping_timeout = Duration::from_secs(10);
    c.engine.max_payload = 10_000;
    c.engine.cors.allowed_origins = vec!["http://allowed.example".into()];
    c.engine.cors.credentials = true;
    c.namespaces = vec!["/".into(), "/chat".into()];
    c.connect_timeout = Duration::from_secs(10);
    c
}

/// Starts a server on 127.0.0.1:0 with `config` and a recording handler.
async fn spawn_server(config: SioConfig) -> Result<Server> {
    let (tx, events) = mpsc::unbounded_channel();
    let layer = SioLayer::new(config, Recorder(tx));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = layer.router();
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    Ok(Server {
        addr,
        layer,
        events,
    })
}

/// One HTTP/1.1 request on its own connection (`Connection: close`).
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpResponse> {
    Ok(HttpRequest::new(method, path)
        .headers(headers)
        .body(body)
        .wait(WAIT)
        .send(addr)
        .await)
}

/// Opens a polling session: (its sid, the path of its requests).
async fn polling_handshake(addr: SocketAddr) -> Result<(String, String)> {
    let r = http(addr, "GET", "/socket.io/?EIO=4&transport=polling", &[], b"").await?;
    assert_eq!(r.status, 200);
    let text = r.text().strip_prefix('0').context("open packet")?;
    let v: Value = serde_json::from_str(text)?;
    let sid = v["sid"].as_str().context("sid")?.to_owned();
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    Ok((sid, path))
}

async fn ws_open(addr: SocketAddr, query: &str) -> Result<WsClient> {
    let path = format!("/socket.io/?EIO=4&transport=websocket{query}");
    Ok(WsClient::connect(addr, &path).await.with_wait(WAIT))
}

/// The next frame that is not a heartbeat (Engine.IO ping or a control ping).
async fn ws_next(ws: &mut WsClient) -> Result<Message> {
    loop {
        match ws.message().await {
            Message::Text(ref t) if t.as_str() == "2" => continue, // ping
            Message::Ping(_) | Message::Pong(_) => continue,
            m => return Ok(m),
        }
    }
}

async fn ws_text(ws: &mut WsClient) -> Result<String> {
    match ws_next(ws).await? {
        Message::Text(t) => Ok(t.to_string()),
        other => bail!("expected text, got {other:?}"),
    }
}

/// A WebSocket session with the Engine.IO handshake read.
async fn ws_session(addr: SocketAddr) -> Result<WsClient> {
    let mut ws = ws_open(addr, "").await?;
    let open = ws_text(&mut ws).await?;
    assert!(open.starts_with("0{"), "{open}");
    let v: Value = serde_json::from_str(&open[1..])?;
    assert_eq!(v["upgrades"], json!([]));
    assert_eq!(v["maxPayload"], json!(10_000));
    Ok(ws)
}

/// A server with `config` and one polling session on it: (server, sid, the
/// session's request path).
async fn polling_session(config: SioConfig) -> Result<(Server, String, String)> {
    let srv = spawn_server(config).await?;
    let (sid, path) = polling_handshake(srv.addr).await?;
    Ok((srv, sid, path))
}

/// A server with the test configuration and one WebSocket session on it.
async fn session() -> Result<(Server, WsClient)> {
    let srv = spawn_server(test_config()).await?;
    let ws = ws_session(srv.addr).await?;
    Ok((srv, ws))
}

#[tokio::test]
async fn connect_with_auth_event_and_acks_both_ways() -> Result<()> {
    let (mut srv, mut ws) = session().await?;
    ws.send(Message::text(r#"40{"token":"t1"}"#)).await?;
    let (socket, auth, recovery) = srv.next_connect().await?;
    assert_eq!(auth, json!({"token": "t1"}));
    assert!(recovery.is_none());
    assert_eq!(socket.namespace(), "/");
    assert_eq!(socket.transport(), "websocket");
    assert!(socket.remote_addr().is_some_and(|a| a.ip().is_loopback()));
    // CONNECT answer first (exactly {sid} without recovery), then what
    // `connect` emitted.
    let reply = ws_text(&mut ws).await?;
    assert_eq!(reply, format!(r#"40{{"sid":"{}"}}"#, socket.id()));
    assert_eq!(ws_text(&mut ws).await?, r#"42["hello",{"token":"t1"}]"#);

    // Client event asking for ack 7 → handler → ack.
    ws.send(Message::text(r#"427["ping",1,{"a":"b"}]"#)).await?;
    let Ev::Event(from, name, payload, Some(ack)) = srv.next().await? else {
        bail!("expected an event with ack");
    };
    assert_eq!(from, socket);
    assert_eq!(name, "ping");
    assert_eq!(payload.args, vec![json!(1), json!({"a": "b"})]);
    assert_eq!(ack.id(), 7);
    ack.send(&Payload::one(json!("pong")))?;
    assert_eq!(ws_text(&mut ws).await?, r#"437["pong"]"#);

    // Server emit with ack: answered, then one that times out.
    let answer = socket.emit_with_ack("q", &Payload::one(json!(2)), WAIT);
    assert_eq!(ws_text(&mut ws).await?, r#"420["q",2]"#);
    ws.send(Message::text(r#"430[4]"#)).await?;
    assert_eq!(answer.await?.args, vec![json!(4)]);
    let late = socket.emit_with_ack("q", &Payload::one(json!(3)), Duration::from_millis(50));
    assert_eq!(ws_text(&mut ws).await?, r#"421["q",3]"#);
    assert_eq!(late.await, Err(AckError::Timeout));

    // Client leaves the namespace.
    ws.send(Message::text("41")).await?;
    match srv.next().await? {
        Ev::Disconnect(s, DisconnectReason::ClientNamespaceDisconnect) => assert_eq!(s, socket),
        other => bail!("expected disconnect, got {other:?}"),
    }
    assert_eq!(
        socket.emit("x", &Payload::default()),
        Err(EmitError::Disconnected)
    );
    Ok(())
}

#[tokio::test]
async fn refusals_and_unknown_namespaces() -> Result<()> {
    let (mut srv, mut ws) = session().await?;
    ws.send(Message::text("40/nope,")).await?;
    assert_eq!(
        ws_text(&mut ws).await?,
        r#"44/nope,{"message":"Invalid namespace"}"#
    );
    ws.send(Message::text(r#"40/chat,{"token":"bad"}"#)).await?;
    assert_eq!(
        ws_text(&mut ws).await?,
        r#"44/chat,{"data":{"why":"token"},"message":"denied"}"#
    );
    // The session is still usable: connect to /chat properly.
    ws.send(Message::text("40/chat,")).await?;
    let (socket, auth, _) = srv.next_connect().await?;
    assert_eq!((socket.namespace(), auth), ("/chat", json!({})));
    assert!(ws_text(&mut ws).await?.starts_with(r#"40/chat,{"sid":"#));
    // Server-side namespace disconnect: DISCONNECT packet to the client.
    assert_eq!(ws_text(&mut ws).await?, r#"42/chat,["hello",{}]"#);
    socket.disconnect();
    assert_eq!(ws_text(&mut ws).await?, "41/chat,");
    match srv.next().await? {
        Ev::Disconnect(_, DisconnectReason::ServerNamespaceDisconnect) => {}
        other => bail!("expected server disconnect, got {other:?}"),
    }
    // A malformed Socket.IO packet closes the whole session.
    ws.send(Message::text("42{}")).await?;
    loop {
        match ws.next_item().await {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
            Some(Ok(_)) => {}
        }
    }
    Ok(())
}

#[tokio::test]
async fn recovery_hands_pid_and_offset_to_the_application() -> Result<()> {
    let mut config = test_config();
    config.recovery = true;
    let mut srv = spawn_server(config).await?;
    let mut ws = ws_session(srv.addr).await?;
    ws.send(Message::text(
        r#"40{"name":"ann","pid":"known-pid","offset":"41"}"#,
    ))
    .await?;
    let (socket, auth, recovery) = srv.next_connect().await?;
    assert_eq!(auth, json!({"name": "ann"}));
    assert_eq!(
        recovery,
        Some(RecoveryRequest {
            pid: "known-pid".into(),
            offset: "41".into()
        })
    );
    let reply: Value = serde_json::from_str(&ws_text(&mut ws).await?[2..])?;
    assert_eq!(reply, json!({"sid": socket.id(), "pid": "known-pid"}));
    assert_eq!(&*socket.pid(), "known-pid");
    assert_eq!(ws_text(&mut ws).await?, r#"42["hello",{"name":"ann"}]"#);

    // A fresh session gets a new pid.
    ws.send(Message::text(r#"40/chat,{"pid":"stale","offset":"1"}"#))
        .await?;
    let (fresh, _, recovery) = srv.next_connect().await?;
    assert_eq!(recovery.map(|r| r.pid), Some("stale".to_owned()));
    let text = ws_text(&mut ws).await?;
    let reply: Value = serde_json::from_str(text.strip_prefix("40/chat,").context("reply")?)?;
    assert_eq!(reply["pid"].as_str(), Some(&*fresh.pid()));
    assert_ne!(&*fresh.pid(), "stale");
    Ok(())
}

#[tokio::test]
async fn binary_events_are_reassembled_and_acked_with_attachments() -> Result<()> {
    let (mut srv, mut ws) = session().await?;
    ws.send(Message::text("40")).await?;
    let (socket, _, _) = srv.next_connect().await?;
    ws_text(&mut ws).await?; // CONNECT answer
    ws_text(&mut ws).await?; // hello
    ws.send(Message::text(
        r#"451-3["up",{"f":{"_placeholder":true,"num":0}}]"#,
    ))
    .await?;
    ws.send(Message::binary(Bytes::from_static(&[0, 1, 255])))
        .await?;
    let Ev::Event(_, name, payload, Some(ack)) = srv.next().await? else {
        bail!("expected binary event with ack");
    };
    assert_eq!(name, "up");
    assert_eq!(
        payload.binary(&payload.args[0]["f"]).map(|b| b.to_vec()),
        Some(vec![0, 1, 255])
    );
    ack.send(&payload)?;
    assert_eq!(
        ws_text(&mut ws).await?,
        r#"461-3[{"f":{"_placeholder":true,"num":0}}]"#
    );
    assert_eq!(
        ws_next(&mut ws).await?,
        Message::binary(Bytes::from_static(&[0, 1, 255]))
    );
    // One encoded packet, queued on a socket as is.
    let packet = EncodedPacket::event("/", "news", &Payload::one(json!({"n": 1})));
    socket.emit_encoded(&packet)?;
    assert_eq!(ws_text(&mut ws).await?, r#"42["news",{"n":1}]"#);
    let other = EncodedPacket::event("/chat", "news", &Payload::default());
    assert_eq!(socket.emit_encoded(&other), Err(EmitError::WrongNamespace));
    Ok(())
}

#[tokio::test]
async fn polling_session_with_cors_and_payload_cap() -> Result<()> {
    let (mut srv, _, path) = polling_session(test_config()).await?;
    let addr = srv.addr;
    let origin = [("Origin", "http://allowed.example")];
    let r = http(
        addr,
        "POST",
        &path,
        &origin,
        b"40{\"n\":1}\x1e42[\"e\",\"x\"]",
    )
    .await?;
    assert_eq!((r.status, r.text()), (200, "ok"));
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://allowed.example")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    let (socket, _, _) = srv.next_connect().await?;
    assert_eq!(socket.transport(), "polling");
    let Ev::Event(_, name, _, None) = srv.next().await? else {
        bail!("expected event");
    };
    assert_eq!(name, "e");
    let r = http(
        addr,
        "GET",
        &path,
        &[("Origin", "http://other.example")],
        b"",
    )
    .await?;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text(),
        format!(
            "40{{\"sid\":\"{}\"}}\x1e42[\"hello\",{{\"n\":1}}]",
            socket.id()
        )
    );
    assert_eq!(r.header("access-control-allow-origin"), None);
    // Binary goes out base64-encoded with a `b` prefix.
    let mut p = Payload::default();
    let ph = p.push_binary(Bytes::from_static(&[1, 2, 3, 4]));
    p.args.push(ph);
    socket.emit("b", &p)?;
    let r = http(addr, "GET", &path, &[], b"").await?;
    assert_eq!(
        r.text(),
        "451-[\"b\",{\"_placeholder\":true,\"num\":0}]\x1ebAQIDBA=="
    );
    // Preflight.
    let r = http(
        addr,
        "OPTIONS",
        &path,
        &[
            ("Origin", "http://allowed.example"),
            ("Access-Control-Request-Headers", "content-type"),
        ],
        b"",
    )
    .await?;
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("content-type")
    );
    // A body over maxPayload is refused and ends the session.
    let big = vec![b'4'; 20_000];
    let r = http(addr, "POST", &path, &[], &big).await?;
    assert_eq!(r.status, 413);
    match srv.next().await? {
        Ev::Disconnect(_, DisconnectReason::Transport(CloseReason::TransportError)) => {}
        other => bail!("expected transport error, got {other:?}"),
    }
    let r = http(addr, "GET", &path, &[], b"").await?;
    assert_eq!(r.status, 400);
    Ok(())
}

#[tokio::test]
async fn full_queue_disconnects_a_slow_consumer() -> Result<()> {
    let mut config = test_config();
    config.engine.max_queued_packets = 8;
    let (mut srv, _, path) = polling_session(config).await?;
    http(srv.addr, "POST", &path, &[], b"40").await?;
    let (socket, _, _) = srv.next_connect().await?;
    let r = http(srv.addr, "GET", &path, &[], b"").await?;
    assert!(r.text().starts_with("40{"), "{}", r.text());
    // Nobody polls any more: the queue fills up.
    let mut results = Vec::new();
    for i in 0..10 {
        results.push(socket.emit("n", &Payload::one(json!(i))));
    }
    assert!(results.iter().take(8).all(Result::is_ok));
    assert_eq!(results[8], Err(EmitError::QueueFull));
    assert_eq!(results[9], Err(EmitError::Disconnected));
    match srv.next().await? {
        Ev::Disconnect(s, DisconnectReason::Transport(CloseReason::SlowConsumer)) => {
            assert_eq!(s, socket)
        }
        other => bail!("expected slow consumer, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn upgrade_from_polling_to_websocket() -> Result<()> {
    let (mut srv, sid, path) = polling_session(test_config()).await?;
    let addr = srv.addr;
    http(addr, "POST", &path, &[], b"40").await?;
    let (socket, _, _) = srv.next_connect().await?;
    let r = http(addr, "GET", &path, &[], b"").await?;
    assert!(r.text().starts_with("40{"), "{}", r.text());
    // A poll waiting when the probe arrives ends with a noop; one that comes
    // in during the upgrade waits for its outcome (400 once upgraded).
    let poll = {
        let path = path.clone();
        tokio::spawn(async move { http(addr, "GET", &path, &[], b"").await })
    };
    let mut ws = ws_open(addr, &format!("&sid={sid}")).await?;
    ws.send(Message::text("2probe")).await?;
    assert_eq!(ws_text(&mut ws).await?, "3probe");
    ws.send(Message::text("5")).await?;
    let r = poll.await??;
    assert!(
        (r.status, r.text()) == (200, "6") || r.status == 400,
        "{} {}",
        r.status,
        r.text()
    );
    // Once upgraded, the WebSocket carries the session: an event sent over it
    // reaches the handler only after "5" was processed.
    ws.send(Message::text(r#"42["after"]"#)).await?;
    let Ev::Event(_, name, _, None) = srv.next().await? else {
        bail!("expected event");
    };
    assert_eq!(name, "after");
    assert_eq!(socket.transport(), "websocket");
    socket.emit("over-ws", &Payload::default())?;
    assert_eq!(ws_text(&mut ws).await?, r#"42["over-ws"]"#);
    // Polling is refused after the upgrade.
    let r = http(addr, "GET", &path, &[], b"").await?;
    assert_eq!(r.status, 400);
    Ok(())
}

#[tokio::test]
async fn connect_timeout_closes_a_silent_session() -> Result<()> {
    let mut config = test_config();
    config.connect_timeout = Duration::from_millis(100);
    let srv = spawn_server(config).await?;
    let mut ws = ws_session(srv.addr).await?;
    match ws.next_item().await {
        None | Some(Err(_)) => {}
        Some(Ok(Message::Close(frame))) => {
            assert_eq!(frame.map(|f| u16::from(f.code)), Some(1000));
        }
        Some(Ok(other)) => bail!("unexpected {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn shutdown_closes_websockets_and_answers_polls() -> Result<()> {
    let mut srv = spawn_server(test_config()).await?;
    let addr = srv.addr;
    let mut ws = ws_session(addr).await?;
    ws.send(Message::text("40")).await?;
    srv.next_connect().await?;
    ws_text(&mut ws).await?;
    ws_text(&mut ws).await?;
    let (_, path) = polling_handshake(addr).await?;
    let poll = tokio::spawn(async move { http(addr, "GET", &path, &[], b"").await });
    let layer = Arc::new(srv.layer);
    layer.shutdown(Duration::from_secs(2)).await;
    let Message::Close(frame) = ws_next(&mut ws).await? else {
        bail!("expected a close frame");
    };
    assert_eq!(frame.map(|f| u16::from(f.code)), Some(1001));
    let r = poll.await??;
    assert_eq!(r.status, 200);
    assert!(r.text().ends_with('1'), "{}", r.text());
    Ok(())
}

#[tokio::test]
async fn heartbeat_keeps_answering_clients_and_closes_silent_ones() -> Result<()> {
    let mut config = test_config();
    config.engine.ping_interval = Duration::from_millis(50);
    config.engine.ping_timeout = Duration::from_millis(50);
    let mut srv = spawn_server(config).await?;
    let mut ws = ws_open(srv.addr, "").await?;
    ws.send(Message::text("40")).await?;
    let (socket, _, _) = srv.next_connect().await?;
    // Answer three pings; the session stays up.
    let mut pings = 0;
    while pings < 3 {
        match ws.next_item().await.context("ended")?? {
            Message::Text(t) if t.as_str() == "2" => {
                pings += 1;
                ws.send(Message::text("3")).await?;
            }
            Message::Text(_) => {}
            other => bail!("unexpected {other:?}"),
        }
    }
    assert!(socket.is_connected());
    // Stop answering: closed with a ping timeout.
    match srv.next().await? {
        Ev::Disconnect(s, DisconnectReason::Transport(CloseReason::PingTimeout)) => {
            assert_eq!(s, socket)
        }
        other => bail!("expected ping timeout, got {other:?}"),
    }
    Ok(())
}
